//! The trusted-director set (`--toa-from`): which sources the TOA option is
//! believed from. Pure: parsing, validation, and the edit that turns the
//! installed set into the asked one.
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::abi::MAX_TRUSTED;
use super::error::ToaError;

/// One `--toa-from` item: a CIDR, or an address meaning its /32. Host bits
/// are refused rather than dropped: `10.0.0.5/24` is more likely a typo
/// for a /32 than a wish to trust 256 addresses.
pub fn parse_cidr(s: &str) -> Result<Ipv4Net, String> {
    let s = s.trim();
    if let Ok(a) = s.parse::<Ipv4Addr>() {
        return Ok(Ipv4Net::from(a));
    }
    let net: Ipv4Net = s
        .parse()
        .map_err(|_| format!("{s:?} is not an IPv4 address or CIDR"))?;
    if net.trunc() != net {
        return Err(format!(
            "{s} has host bits set (did you mean {}/32 or {}?)",
            net.addr(),
            net.trunc()
        ));
    }
    Ok(net)
}

/// The set to install: not empty (nothing is trusted until the user says
/// which directors), no /0 (a client could claim any address), at most
/// the map's capacity. Sorted, duplicates dropped.
pub fn validate(asked: &[Ipv4Net]) -> Result<BTreeSet<Ipv4Net>, ToaError> {
    if asked.is_empty() {
        return Err(ToaError::NoTrustedDirectors);
    }
    if let Some(all) = asked.iter().find(|n| n.prefix_len() == 0) {
        return Err(ToaError::TrustsEveryone(*all));
    }
    let set: BTreeSet<Ipv4Net> = asked.iter().copied().collect();
    if set.len() > MAX_TRUSTED {
        return Err(ToaError::TooManyTrusted {
            count: set.len(),
            max: MAX_TRUSTED,
        });
    }
    Ok(set)
}

/// What to write to turn `installed` into `wanted`: additions first, so
/// a director present in both is never briefly untrusted.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TrustEdit {
    pub add: Vec<Ipv4Net>,
    pub remove: Vec<Ipv4Net>,
}

pub fn edit(installed: &BTreeSet<Ipv4Net>, wanted: &BTreeSet<Ipv4Net>) -> TrustEdit {
    TrustEdit {
        add: wanted.difference(installed).copied().collect(),
        remove: installed.difference(wanted).copied().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn an_address_is_its_host_route_and_host_bits_are_refused() {
        assert_eq!(parse_cidr("10.0.0.5"), Ok(net("10.0.0.5/32")));
        assert_eq!(parse_cidr(" 10.1.0.0/16"), Ok(net("10.1.0.0/16")));
        let err = parse_cidr("10.0.0.5/24").unwrap_err();
        assert!(
            err.contains("host bits") && err.contains("10.0.0.5/32") && err.contains("10.0.0.0/24"),
            "{err}"
        );
        let err = parse_cidr("fd00::1").unwrap_err();
        assert!(err.contains("not an IPv4"), "{err}");
    }

    #[test]
    fn nothing_is_trusted_until_named_and_never_everyone() {
        assert!(matches!(validate(&[]), Err(ToaError::NoTrustedDirectors)));
        assert!(matches!(
            validate(&[net("10.0.0.1/32"), net("0.0.0.0/0")]),
            Err(ToaError::TrustsEveryone(n)) if n == net("0.0.0.0/0")
        ));
        let many: Vec<Ipv4Net> = (0..=MAX_TRUSTED as u32)
            .map(|i| Ipv4Net::from(Ipv4Addr::from(0x0a00_0000 + i)))
            .collect();
        assert!(matches!(
            validate(&many),
            Err(ToaError::TooManyTrusted { count, max: MAX_TRUSTED }) if count == MAX_TRUSTED + 1
        ));
        let set = validate(&[net("10.0.0.2/32"), net("10.0.0.1/32"), net("10.0.0.2/32")]).unwrap();
        assert_eq!(
            set.into_iter().collect::<Vec<_>>(),
            [net("10.0.0.1/32"), net("10.0.0.2/32")]
        );
    }

    #[test]
    fn the_edit_adds_the_new_and_removes_the_gone_only() {
        let installed: BTreeSet<_> = [net("10.0.0.1/32"), net("10.0.0.2/32")].into();
        let wanted: BTreeSet<_> = [net("10.0.0.2/32"), net("10.9.0.0/16")].into();
        assert_eq!(
            edit(&installed, &wanted),
            TrustEdit {
                add: vec![net("10.9.0.0/16")],
                remove: vec![net("10.0.0.1/32")],
            }
        );
        assert_eq!(edit(&wanted, &wanted), TrustEdit::default());
    }
}

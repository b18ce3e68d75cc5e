//! An `AddressPool` spec parsed into address ranges: membership, size and
//! the order in which addresses are handed out.

use std::net::IpAddr;

use ballast_api::AddressPool;
use ipnet::IpNet;

use crate::selector::{self, Labels};

/// One inclusive range of addresses of a single family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpRange {
    pub first: IpAddr,
    pub last: IpAddr,
}

impl IpRange {
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.first.is_ipv4() && self.first <= ip && ip <= self.last
    }

    fn len(&self) -> u128 {
        // Saturating: `::/0` holds 2^128 addresses, one more than u128 holds.
        (to_u128(self.last) - to_u128(self.first)).saturating_add(1)
    }
}

/// A parsed, usable pool.
#[derive(Clone, Debug)]
pub struct Pool {
    pub name: String,
    pub ranges: Vec<IpRange>,
    pub auto_assign: bool,
    pub avoid_buggy_ips: bool,
    pub share_by_default: bool,
    namespace_selector: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
    /// `spec.addresses[i]: reason` for every entry that did not parse; the
    /// entries that did are still served.
    pub errors: Vec<String>,
}

impl Pool {
    pub fn parse(pool: &AddressPool) -> Pool {
        let mut ranges = Vec::new();
        let mut errors = Vec::new();
        for (i, entry) in pool.spec.addresses.iter().enumerate() {
            match parse_entry(entry) {
                Ok(r) => ranges.push(r),
                Err(reason) => errors.push(format!("spec.addresses[{i}]: {reason}")),
            }
        }
        if let Some(sel) = &pool.spec.namespace_selector
            && let Err(e) = selector::check(sel)
        {
            errors.push(format!("spec.namespaceSelector: {e}"));
        }
        Pool {
            name: pool.metadata.name.clone().unwrap_or_default(),
            ranges,
            auto_assign: pool.spec.auto_assign,
            avoid_buggy_ips: pool.spec.avoid_buggy_ips,
            share_by_default: pool.spec.share_by_default,
            namespace_selector: pool.spec.namespace_selector.clone(),
            errors,
        }
    }

    /// Whether `ip` may be handed out from this pool.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.ranges.iter().any(|r| r.contains(ip)) && !(self.avoid_buggy_ips && is_buggy(ip))
    }

    pub fn admits_namespace(&self, labels: &Labels) -> bool {
        match &self.namespace_selector {
            None => true,
            // An unparsable selector admits nobody rather than everybody.
            Some(sel) => selector::matches(sel, labels).unwrap_or(false),
        }
    }

    pub fn has_family(&self, v4: bool) -> bool {
        self.ranges.iter().any(|r| r.first.is_ipv4() == v4)
    }

    /// Addresses the pool can hand out (saturating; an IPv6 /64 is 2^64).
    pub fn total(&self) -> u128 {
        let mut total: u128 = 0;
        for r in &self.ranges {
            let mut n = r.len();
            if self.avoid_buggy_ips && r.first.is_ipv4() {
                n -= buggy_in(r);
            }
            total = total.saturating_add(n);
        }
        total
    }

    /// Candidates of one family in hand-out order: ranges in spec order,
    /// ascending within each. Lazy, because IPv6 ranges are astronomically
    /// large and the caller stops at the first free one.
    pub fn candidates(&self, v4: bool) -> impl Iterator<Item = IpAddr> + '_ {
        self.ranges
            .iter()
            .filter(move |r| r.first.is_ipv4() == v4)
            .flat_map(|r| {
                let (a, b) = (to_u128(r.first), to_u128(r.last));
                (a..=b).map(move |n| from_u128(n, r.first.is_ipv4()))
            })
            .filter(|ip| !(self.avoid_buggy_ips && is_buggy(*ip)))
    }
}

fn parse_entry(entry: &str) -> Result<IpRange, String> {
    let entry = entry.trim();
    if let Some((a, b)) = entry.split_once('-') {
        let first: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("{:?} is not an IP address", a.trim()))?;
        let last: IpAddr = b
            .trim()
            .parse()
            .map_err(|_| format!("{:?} is not an IP address", b.trim()))?;
        if first.is_ipv4() != last.is_ipv4() {
            return Err(format!("range {entry} mixes IPv4 and IPv6"));
        }
        if first > last {
            return Err(format!("range {entry} ends before it starts"));
        }
        return Ok(IpRange { first, last });
    }
    let net: IpNet = entry
        .parse()
        .map_err(|_| format!("{entry:?} is neither a CIDR nor a range FIRST-LAST"))?;
    if net.trunc() != net {
        return Err(format!(
            "{entry} has host bits set (did you mean {}?)",
            net.trunc()
        ));
    }
    Ok(IpRange {
        first: net.network(),
        last: net.broadcast(),
    })
}

/// `.0` and `.255` IPv4 addresses, which some stacks mishandle.
fn is_buggy(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V4(v4) if matches!(v4.octets()[3], 0 | 255))
}

fn buggy_in(r: &IpRange) -> u128 {
    let (a, b) = (to_u128(r.first), to_u128(r.last));
    // Count n in [a, b] with n % 256 == 0 or 255.
    let count = |rem: u128| {
        let first = a + (rem + 256 - a % 256) % 256;
        if first > b { 0 } else { (b - first) / 256 + 1 }
    };
    count(0) + count(255)
}

pub(crate) fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u32::from(v4) as u128,
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn from_u128(n: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4((n as u32).into())
    } else {
        IpAddr::V6(n.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ballast_api::AddressPoolSpec;

    fn pool(addresses: &[&str], avoid_buggy: bool) -> Pool {
        let mut p = AddressPool::new(
            "p",
            AddressPoolSpec {
                addresses: addresses.iter().map(|s| s.to_string()).collect(),
                auto_assign: true,
                avoid_buggy_ips: avoid_buggy,
                share_by_default: false,
                namespace_selector: None,
            },
        );
        p.metadata.name = Some("p".into());
        Pool::parse(&p)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_cidrs_and_ranges_of_both_families() {
        let p = pool(
            &[
                "203.0.113.0/30",
                "198.51.100.10-198.51.100.12",
                "2001:db8::/126",
            ],
            false,
        );
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        assert_eq!(p.total(), 4 + 3 + 4);
        assert!(p.contains(ip("203.0.113.3")));
        assert!(!p.contains(ip("203.0.113.4")));
        assert!(p.contains(ip("198.51.100.12")));
        assert!(p.contains(ip("2001:db8::3")));
        assert!(!p.contains(ip("2001:db8::4")));
        let v4: Vec<_> = p.candidates(true).map(|i| i.to_string()).collect();
        assert_eq!(
            v4,
            [
                "203.0.113.0",
                "203.0.113.1",
                "203.0.113.2",
                "203.0.113.3",
                "198.51.100.10",
                "198.51.100.11",
                "198.51.100.12"
            ]
        );
        assert_eq!(p.candidates(false).next(), Some(ip("2001:db8::")));
    }

    #[test]
    fn bad_entries_are_reported_and_skipped() {
        let p = pool(
            &[
                "203.0.113.1/24",
                "198.51.100.9-198.51.100.1",
                "198.51.100.1-2001:db8::1",
                "nonsense",
                "192.0.2.0/31",
            ],
            false,
        );
        assert_eq!(p.errors.len(), 4, "{:?}", p.errors);
        assert!(
            p.errors[0].starts_with("spec.addresses[0]: ")
                && p.errors[0].contains("203.0.113.0/24")
        );
        assert!(p.errors[1].contains("ends before it starts"));
        assert!(p.errors[2].contains("mixes"));
        assert!(p.errors[3].contains("neither a CIDR"));
        assert_eq!(p.total(), 2);
    }

    #[test]
    fn avoid_buggy_ips_skips_dot_zero_and_dot_255() {
        let p = pool(&["198.51.100.0/23"], true);
        assert_eq!(p.total(), 512 - 4);
        assert!(!p.contains(ip("198.51.100.0")));
        assert!(!p.contains(ip("198.51.100.255")));
        assert!(!p.contains(ip("198.51.101.0")));
        assert!(p.contains(ip("198.51.100.1")));
        assert_eq!(p.candidates(true).next(), Some(ip("198.51.100.1")));
        let p = pool(&["198.51.100.250-198.51.101.5"], true);
        assert_eq!(p.total(), 12 - 2);
    }

    #[test]
    fn huge_ipv6_pool_saturates_and_stays_lazy() {
        let p = pool(&["2001:db8::/64", "::/0"], false);
        assert_eq!(p.total(), u128::MAX);
        assert_eq!(p.candidates(false).nth(5), Some(ip("2001:db8::5")));
    }
}

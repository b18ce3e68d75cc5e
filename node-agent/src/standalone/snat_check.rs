//! Start-time checks of the SNAT addresses (`--snat-address`): addresses
//! that can never be a packet's source are refused before anything is
//! loaded; one outside every subnet of the interface is only suspicious
//! (a route or proxy-ARP elsewhere may bring its replies back), so it is a
//! warning.
use std::net::Ipv4Addr;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SnatAddressError {
    #[error(
        "--snat-address {0}: the unspecified address cannot be a packet's source; give an address backends can reply to"
    )]
    Unspecified(Ipv4Addr),
    #[error(
        "--snat-address {0}: the broadcast address cannot be a packet's source; give an address backends can reply to"
    )]
    Broadcast(Ipv4Addr),
    #[error(
        "--snat-address {0}: a multicast address cannot be a packet's source; give an address backends can reply to"
    )]
    Multicast(Ipv4Addr),
}

/// Refuses the first address that can never be a source.
pub fn check(addrs: &[Ipv4Addr]) -> Result<(), SnatAddressError> {
    for &a in addrs {
        if a.is_unspecified() {
            return Err(SnatAddressError::Unspecified(a));
        }
        if a.is_broadcast() {
            return Err(SnatAddressError::Broadcast(a));
        }
        if a.is_multicast() {
            return Err(SnatAddressError::Multicast(a));
        }
    }
    Ok(())
}

/// An address configured on an interface, with its prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subnet {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    fn contains(&self, a: Ipv4Addr) -> bool {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix.min(32)))
            .unwrap_or(0);
        u32::from(a) & mask == u32::from(self.addr) & mask
    }
}

/// One warning per SNAT address outside every subnet of `interface`:
/// backends would answer it through their default route, not to us.
pub fn outside_warnings(addrs: &[Ipv4Addr], interface: &str, subnets: &[Subnet]) -> Vec<String> {
    addrs
        .iter()
        .filter(|a| !subnets.iter().any(|s| s.contains(**a)))
        .map(|a| {
            let nets: Vec<String> = subnets
                .iter()
                .map(|s| format!("{}/{}", s.addr, s.prefix))
                .collect();
            let on = if nets.is_empty() {
                format!("{interface} has no IPv4 address")
            } else {
                format!("{interface} has {}", nets.join(", "))
            };
            format!(
                "--snat-address {a} is outside every subnet of {interface} ({on}): replies \
                 to FullNAT flows will not come back unless the backends route {a} to this \
                 director"
            )
        })
        .collect()
}

/// The IPv4 subnets configured on `interface`, in this process's network
/// namespace.
pub fn interface_subnets(interface: &str) -> nix::Result<Vec<Subnet>> {
    let mut out = Vec::new();
    for ifa in nix::ifaddrs::getifaddrs()? {
        if ifa.interface_name != interface {
            continue;
        }
        let addr = ifa.address.as_ref().and_then(|a| a.as_sockaddr_in());
        let mask = ifa.netmask.as_ref().and_then(|m| m.as_sockaddr_in());
        if let (Some(addr), Some(mask)) = (addr, mask) {
            out.push(Subnet {
                addr: addr.ip(),
                prefix: u32::from(mask.ip()).leading_ones() as u8,
            });
        }
    }
    Ok(out)
}

/// Everything checked at start: the error refuses to start; the strings
/// are warnings to log once.
pub fn at_start(addrs: &[Ipv4Addr], interface: &str) -> Result<Vec<String>, SnatAddressError> {
    check(addrs)?;
    Ok(match interface_subnets(interface) {
        Ok(subnets) => outside_warnings(addrs, interface, &subnets),
        Err(e) => vec![format!(
            "cannot read the addresses of {interface} ({e}) to check --snat-address"
        )],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_that_are_never_a_source_are_refused() {
        let ok = Ipv4Addr::new(198, 51, 100, 3);
        let cases = [
            (
                "unspecified",
                Ipv4Addr::UNSPECIFIED,
                SnatAddressError::Unspecified(Ipv4Addr::UNSPECIFIED),
            ),
            (
                "broadcast",
                Ipv4Addr::BROADCAST,
                SnatAddressError::Broadcast(Ipv4Addr::BROADCAST),
            ),
            (
                "multicast",
                Ipv4Addr::new(224, 0, 0, 1),
                SnatAddressError::Multicast(Ipv4Addr::new(224, 0, 0, 1)),
            ),
            (
                "multicast, top",
                Ipv4Addr::new(239, 255, 255, 255),
                SnatAddressError::Multicast(Ipv4Addr::new(239, 255, 255, 255)),
            ),
        ];
        for (desc, bad, expected) in cases {
            assert_eq!(check(&[ok, bad]), Err(expected.clone()), "{desc}");
            assert!(
                expected
                    .to_string()
                    .starts_with(&format!("--snat-address {bad}: ")),
                "{desc}"
            );
        }
        assert_eq!(check(&[ok, Ipv4Addr::new(240, 0, 0, 1)]), Ok(()));
    }

    #[test]
    fn an_address_outside_every_subnet_is_warned_about() {
        let subnets = [
            Subnet {
                addr: Ipv4Addr::new(192, 0, 2, 2),
                prefix: 24,
            },
            Subnet {
                addr: Ipv4Addr::new(198, 51, 100, 2),
                prefix: 25,
            },
            Subnet {
                addr: Ipv4Addr::new(203, 0, 113, 7),
                prefix: 32,
            },
        ];
        let inside = [
            Ipv4Addr::new(198, 51, 100, 3),
            Ipv4Addr::new(198, 51, 100, 127),
            Ipv4Addr::new(192, 0, 2, 200),
            Ipv4Addr::new(203, 0, 113, 7),
        ];
        assert!(outside_warnings(&inside, "eth0", &subnets).is_empty());
        let w = outside_warnings(
            &[
                Ipv4Addr::new(198, 51, 100, 128),
                Ipv4Addr::new(203, 0, 113, 8),
            ],
            "eth0",
            &subnets,
        );
        assert_eq!(w.len(), 2);
        assert!(
            w[0].starts_with(
                "--snat-address 198.51.100.128 is outside every subnet of eth0 (eth0 has \
                 192.0.2.2/24, 198.51.100.2/25, 203.0.113.7/32)"
            ),
            "{w:?}"
        );
        let w = outside_warnings(&[Ipv4Addr::new(198, 51, 100, 3)], "eth1", &[]);
        assert!(w[0].contains("(eth1 has no IPv4 address)"), "{w:?}");
        // A /0 contains everything.
        let any = [Subnet {
            addr: Ipv4Addr::new(10, 0, 0, 1),
            prefix: 0,
        }];
        assert!(outside_warnings(&inside, "eth0", &any).is_empty());
    }

    #[test]
    fn subnets_are_read_from_the_interface_in_this_namespace() {
        assert!(
            unsafe { libc::geteuid() } == 0,
            "needs root: creates a network namespace"
        );
        let run = |args: &str| {
            let out = std::process::Command::new("ip")
                .args(args.split(' '))
                .output()
                .unwrap();
            assert!(out.status.success(), "ip {args}: {out:?}");
        };
        std::thread::spawn(move || {
            // SAFETY: moves only this thread (and what it spawns) into a new
            // network namespace, which dies with it.
            assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
            run("link add blcf0 type veth peer name blcf1");
            run("addr add 198.51.100.2/24 dev blcf0");
            run("addr add 203.0.113.7/32 dev blcf0");
            run("addr add 192.0.2.2/24 dev blcf1");
            let mut got = interface_subnets("blcf0").unwrap();
            got.sort_by_key(|s| s.addr);
            assert_eq!(
                got,
                [
                    Subnet {
                        addr: Ipv4Addr::new(198, 51, 100, 2),
                        prefix: 24
                    },
                    Subnet {
                        addr: Ipv4Addr::new(203, 0, 113, 7),
                        prefix: 32
                    },
                ]
            );
            assert!(interface_subnets("blcf9").unwrap().is_empty());
            let snat = [Ipv4Addr::new(198, 51, 100, 3), Ipv4Addr::new(192, 0, 2, 3)];
            let w = at_start(&snat, "blcf0").unwrap();
            assert_eq!(w.len(), 1, "{w:?}");
            assert!(
                w[0].starts_with("--snat-address 192.0.2.3 is outside"),
                "{w:?}"
            );
            assert!(at_start(&[Ipv4Addr::BROADCAST], "blcf0").is_err());
        })
        .join()
        .unwrap();
    }
}

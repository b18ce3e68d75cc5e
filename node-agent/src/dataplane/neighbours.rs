//! Keeps the next hops of backends resolved. XDP can only forward to a
//! neighbour the kernel has already resolved; for FullNAT/NAT an unresolved
//! one costs a detour through the kernel, for DR a dropped packet. So every
//! backend's next hop gets a kernel-managed neighbour entry (NTF_MANAGED,
//! Linux 5.16+), which the kernel keeps resolved on its own.
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::Command;

use tracing::{debug, warn};

pub struct NeighbourKeeper {
    /// In the caller's network namespace, where `ip` runs.
    interface: String,
    /// Backends already looked at: a reload re-checks only new ones.
    checked: BTreeSet<Ipv4Addr>,
    managed: BTreeSet<Ipv4Addr>,
}

/// The next hop towards `addr` if the route leaves through `interface`:
/// parsed from `ip route get` ("A via G dev IF ..." or "A dev IF ...").
pub fn next_hop(route_get: &str, addr: Ipv4Addr, interface: &str) -> Option<Ipv4Addr> {
    let words: Vec<&str> = route_get.split_whitespace().collect();
    let after = |key: &str| words.windows(2).find(|w| w[0] == key).map(|w| w[1]);
    if after("dev")? != interface {
        return None;
    }
    match after("via") {
        Some(gw) => gw.parse().ok(),
        None => Some(addr),
    }
}

impl NeighbourKeeper {
    pub fn new(interface: String) -> Self {
        Self {
            interface,
            checked: BTreeSet::new(),
            managed: BTreeSet::new(),
        }
    }

    fn ip(&self, args: &[&str]) -> std::io::Result<std::process::Output> {
        Command::new("ip").args(args).output()
    }

    /// Makes sure the next hop of each backend is a managed neighbour.
    /// Failures are logged, not fatal: forwarding still works through the
    /// kernel for FullNAT/NAT.
    pub fn ensure(&mut self, backends: impl IntoIterator<Item = Ipv4Addr>) {
        for addr in backends {
            if !self.checked.insert(addr) {
                continue;
            }
            let route = match self.ip(&["-4", "route", "get", &addr.to_string()]) {
                Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
                Ok(o) => {
                    warn!(backend = %addr, "no route: {}", String::from_utf8_lossy(&o.stderr).trim());
                    continue;
                }
                Err(e) => {
                    warn!("cannot run ip: {e}");
                    return;
                }
            };
            let Some(hop) = next_hop(&route, addr, &self.interface) else {
                debug!(backend = %addr, "route leaves through another interface");
                continue;
            };
            if !self.managed.insert(hop) {
                continue;
            }
            let hop_s = hop.to_string();
            // A permanent entry someone configured stays as it is.
            if let Ok(o) = self.ip(&["neigh", "show", &hop_s, "dev", &self.interface])
                && String::from_utf8_lossy(&o.stdout).contains("PERMANENT")
            {
                continue;
            }
            match self.ip(&[
                "neigh",
                "replace",
                &hop_s,
                "dev",
                &self.interface,
                "managed",
            ]) {
                Ok(o) if o.status.success() => debug!(next_hop = %hop, "managed neighbour"),
                Ok(o) => {
                    warn!(next_hop = %hop, "cannot add managed neighbour: {}", String::from_utf8_lossy(&o.stderr).trim())
                }
                Err(e) => warn!("cannot run ip: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_route_get() {
        let a: Ipv4Addr = "198.51.100.11".parse().unwrap();
        assert_eq!(
            next_hop(
                "198.51.100.11 dev eth0 src 198.51.100.2 uid 0 \n    cache",
                a,
                "eth0"
            ),
            Some(a)
        );
        assert_eq!(
            next_hop(
                "198.51.100.11 via 192.0.2.254 dev eth0 src 192.0.2.2 uid 0",
                a,
                "eth0"
            ),
            Some("192.0.2.254".parse().unwrap())
        );
        assert_eq!(
            next_hop("198.51.100.11 dev eth1 src 10.0.0.1", a, "eth0"),
            None
        );
    }
}

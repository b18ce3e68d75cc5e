//! Keeps the next hops of backends resolved. XDP can only forward to a
//! neighbour the kernel has already resolved; for FullNAT/NAT an unresolved
//! one costs a detour through the kernel, for DR a dropped packet. So every
//! backend's next hop gets a kernel-managed neighbour entry (NTF_MANAGED,
//! Linux 5.16+), which the kernel keeps resolved on its own.
//!
//! New backends are looked up together: one `ip -batch` process for all
//! their routes, one listing of the permanent entries and one batch for the
//! managed entries, so that a cold load of 40,000 backends costs three
//! processes, not two per backend.
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Output, Stdio};

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

/// The routes of `ip -o -batch` with one `route get` per address: each
/// answer is one line naming its destination first, after the route type
/// for some ("local A dev lo ..."); an address without a route has no line.
pub fn batch_routes(out: &str) -> BTreeMap<Ipv4Addr, &str> {
    out.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let first = words.next()?;
            let dst = first
                .parse()
                .ok()
                .or_else(|| words.next().and_then(|w| w.parse().ok()))?;
            Some((dst, line))
        })
        .collect()
}

/// The addresses of `ip neigh show` lines.
pub fn neighbour_addrs(out: &str) -> BTreeSet<Ipv4Addr> {
    out.lines()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

/// Runs `ip -4 -o -force -batch -` with `commands` on its standard input:
/// every command runs even if one fails (those print on stderr).
fn ip_batch(commands: &str) -> std::io::Result<Output> {
    let mut child = Command::new("ip")
        .args(["-4", "-o", "-force", "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().expect("piped");
    // Written from a thread: ip answers while it reads, and a full stdout
    // pipe would otherwise block both ends.
    let commands = commands.to_owned();
    let writer = std::thread::spawn(move || stdin.write_all(commands.as_bytes()));
    let out = child.wait_with_output()?;
    writer.join().expect("writer thread")?;
    Ok(out)
}

impl NeighbourKeeper {
    pub fn new(interface: String) -> Self {
        Self {
            interface,
            checked: BTreeSet::new(),
            managed: BTreeSet::new(),
        }
    }

    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// Forgets what was checked: the next [`Self::ensure`] looks at every
    /// backend it is given again. For after the link went down and came
    /// back: the kernel flushes a link's neighbour entries when it goes
    /// down, managed ones included, and nothing adds them back.
    pub fn forget(&mut self) {
        self.checked.clear();
        self.managed.clear();
    }

    /// Makes sure the next hop of each backend is a managed neighbour.
    /// Failures are logged, not fatal: forwarding still works through the
    /// kernel for FullNAT/NAT.
    pub fn ensure(&mut self, backends: impl IntoIterator<Item = Ipv4Addr>) {
        let new: Vec<Ipv4Addr> = backends
            .into_iter()
            .filter(|a| self.checked.insert(*a))
            .collect();
        if new.is_empty() {
            return;
        }
        let gets: String = new.iter().map(|a| format!("route get {a}\n")).collect();
        let out = match ip_batch(&gets) {
            Ok(o) => o,
            Err(e) => {
                warn!("cannot run ip: {e}");
                return;
            }
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        let routes = batch_routes(&stdout);
        let mut hops = BTreeSet::new();
        for addr in &new {
            let Some(route) = routes.get(addr) else {
                warn!(backend = %addr, "no route to the backend");
                continue;
            };
            match next_hop(route, *addr, &self.interface) {
                Some(hop) if self.managed.insert(hop) => {
                    hops.insert(hop);
                }
                Some(_) => {}
                None => debug!(backend = %addr, "route leaves through another interface"),
            }
        }
        if hops.is_empty() {
            return;
        }
        // A permanent entry someone configured stays as it is.
        let permanent = Command::new("ip")
            .args([
                "-4",
                "neigh",
                "show",
                "dev",
                &self.interface,
                "nud",
                "permanent",
            ])
            .output()
            .map(|o| neighbour_addrs(&String::from_utf8_lossy(&o.stdout)))
            .unwrap_or_default();
        let replaces: String = hops
            .difference(&permanent)
            .map(|h| format!("neigh replace {h} dev {} managed\n", self.interface))
            .collect();
        if replaces.is_empty() {
            return;
        }
        match ip_batch(&replaces) {
            Ok(o) if o.status.success() => debug!(next_hops = ?hops, "managed neighbours"),
            Ok(o) => {
                warn!(next_hops = ?hops, "cannot add every managed neighbour: {}", String::from_utf8_lossy(&o.stderr).trim())
            }
            Err(e) => warn!("cannot run ip: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_answers_are_keyed_by_destination() {
        // What `ip -4 -o -force -batch -` printed for 10.128.0.1, 8.8.8.8
        // (unreachable: no line), 198.51.100.7 and the local 198.51.100.2.
        let out = "10.128.0.1 via 198.51.100.1 dev dp0 src 198.51.100.2 uid 0 \\    cache \n\
                   198.51.100.7 dev dp0 src 198.51.100.2 uid 0 \\    cache \n\
                   local 198.51.100.2 dev lo src 198.51.100.2 uid 0 \\    cache <local> \n";
        let routes = batch_routes(out);
        let a = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert_eq!(
            routes.keys().copied().collect::<Vec<_>>(),
            [a("10.128.0.1"), a("198.51.100.2"), a("198.51.100.7")]
        );
        let hop = |dst: &str| next_hop(routes[&a(dst)], a(dst), "dp0");
        assert_eq!(hop("10.128.0.1"), Some(a("198.51.100.1")));
        assert_eq!(hop("198.51.100.7"), Some(a("198.51.100.7")));
        assert_eq!(hop("198.51.100.2"), None, "local: not through dp0");
    }

    #[test]
    fn neighbour_listing_gives_addresses() {
        let out = "198.51.100.11 lladdr 02:b1:00:00:00:0b PERMANENT\n\
                   198.51.100.12 lladdr 02:b1:00:00:00:0c PERMANENT\n";
        assert_eq!(
            neighbour_addrs(out),
            [
                "198.51.100.11".parse().unwrap(),
                "198.51.100.12".parse().unwrap()
            ]
            .into()
        );
    }

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

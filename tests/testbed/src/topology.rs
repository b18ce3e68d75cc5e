//! A throw-away topology of network namespaces for the demo and the
//! end-to-end tests.
//!
//! ```text
//!   <p>-cl  eth0 192.0.2.1/24 ─┐
//!   <p>-dir eth0 192.0.2.2/24  ├── br0 in <p>-sw (ports <p>-cl, <p>-dir, <p>-b1..)
//!                198.51.100.2/24
//!   <p>-b1  eth0 198.51.100.11/24 ─┤
//!   <p>-bN  eth0 198.51.100.(10+N)/24 ┘
//! ```
//!
//! Everything lives on one L2 segment so the director can XDP_TX frames
//! straight to a backend or, in DR mode, backends can answer the client
//! directly. The client routes the VIP and backend subnets via the
//! director. All namespaces are deleted on drop, including on panic unwind.

#[cfg(test)]
mod tests;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::process::Output;

use anyhow::{Context, Result, bail, ensure};

use crate::netns;
use crate::servers::BackendServer;
use crate::world::*;

/// How backends route replies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BackendRouting {
    /// Default route via the director (FullNAT, NAT).
    #[default]
    ViaDirector,
    /// Additionally an on-link route to the client subnet, so replies from
    /// the VIP bypass the director (DR).
    DirectToClient,
}

#[derive(Clone, Debug)]
pub struct TestbedSpec {
    /// Short alphanumeric prefix; every namespace is `<prefix>-<role>` and
    /// every bridge port `<prefix>-<role>`, which must fit 15 characters.
    pub prefix: String,
    pub backends: usize,
    /// Directors on the segment (1: the classic bed). Director `i` (1-based)
    /// is `<p>-dir` for 1 and `<p>-dir<i>` after, with the addresses
    /// [`director_addrs`] gives.
    pub directors: usize,
}

impl TestbedSpec {
    pub fn new(prefix: impl Into<String>) -> Self {
        TestbedSpec {
            prefix: prefix.into(),
            backends: 3,
            directors: 1,
        }
    }

    pub fn directors(mut self, n: usize) -> Self {
        self.directors = n;
        self
    }

    pub fn backends(mut self, n: usize) -> Self {
        self.backends = n;
        self
    }
}

impl Default for TestbedSpec {
    fn default() -> Self {
        TestbedSpec::new(format!("blt{}", std::process::id() % 100_000))
    }
}

/// One namespace attached to the switch.
#[derive(Debug)]
struct Host {
    ns: String,
    /// Bridge-side veth peer, inside the switch namespace.
    port: String,
}

#[derive(Debug)]
pub struct Testbed {
    prefix: String,
    switch: String,
    client: Host,
    director: Host,
    /// Directors 2.. ([`TestbedSpec::directors`]).
    more_directors: Vec<Host>,
    backends: Vec<Host>,
    /// Namespaces that may exist, in creation order; Drop deletes these.
    created: Vec<String>,
}

impl Testbed {
    /// Builds the whole topology. Leftover namespaces `<prefix>-*` from a
    /// crashed run are removed first, so the prefix must not be shared with
    /// a live testbed. On error everything created so far is removed.
    pub fn build(spec: &TestbedSpec) -> Result<Testbed> {
        validate_spec(spec)?;
        let p = &spec.prefix;
        Self::cleanup_prefix(p);
        let host = |role: &str| Host {
            ns: format!("{p}-{role}"),
            port: format!("{p}-{role}"),
        };
        let mut tb = Testbed {
            prefix: p.clone(),
            switch: format!("{p}-sw"),
            client: host("cl"),
            director: host("dir"),
            more_directors: (2..=spec.directors)
                .map(|i| host(&format!("dir{i}")))
                .collect(),
            backends: (1..=spec.backends)
                .map(|i| host(&format!("b{i}")))
                .collect(),
            created: Vec::new(),
        };
        // Any `?` below drops `tb`, which deletes what was created.
        tb.setup()
            .with_context(|| format!("building testbed {p}"))?;
        Ok(tb)
    }

    fn setup(&mut self) -> Result<()> {
        let all: Vec<String> = std::iter::once(self.switch.clone())
            .chain(self.hosts().map(|h| h.ns.clone()))
            .collect();
        for ns in &all {
            // Recorded before creation: a half-failed `ip netns add` can
            // still leave the name behind.
            self.created.push(ns.clone());
            netns::add_netns(ns)?;
            // Before any interface exists so new devices inherit `default`:
            // no IPv6 chatter (RS, MLD, DAD) in captures, no redirects that
            // would let the client bypass the director after the first
            // forwarded packet (shared_media makes the kernel send them even
            // across subnets on one link).
            netns::sysctls_in(
                ns,
                &[
                    ("net.ipv6.conf.all.disable_ipv6", "1"),
                    ("net.ipv6.conf.default.disable_ipv6", "1"),
                    ("net.ipv4.conf.all.rp_filter", "0"),
                    ("net.ipv4.conf.default.rp_filter", "0"),
                    ("net.ipv4.conf.all.send_redirects", "0"),
                    ("net.ipv4.conf.default.send_redirects", "0"),
                    ("net.ipv4.conf.all.accept_redirects", "0"),
                    ("net.ipv4.conf.default.accept_redirects", "0"),
                ],
            )?;
            netns::ip_in(ns, &["link", "set", "lo", "up"])?;
        }

        let sw = self.switch.clone();
        netns::ip_in(
            &sw,
            &[
                "link",
                "add",
                BRIDGE_IF,
                "type",
                "bridge",
                "forward_delay",
                "0",
                "stp_state",
                "0",
            ],
        )?;
        // Snooping would make the bridge drop multicast we might want to see
        // and adds IGMP queries to captures.
        netns::ip_in(
            &sw,
            &[
                "link",
                "set",
                BRIDGE_IF,
                "type",
                "bridge",
                "mcast_snooping",
                "0",
            ],
        )?;
        netns::ip_in(&sw, &["link", "set", BRIDGE_IF, "up"])?;

        let hosts: Vec<(String, String, [u8; 6])> = self
            .hosts_with_mac()
            .map(|(h, mac)| (h.ns.clone(), h.port.clone(), mac))
            .collect();
        for (ns, port, mac) in &hosts {
            let mac = format_mac(mac);
            netns::ip_in(
                &sw,
                &[
                    "link", "add", port, "type", "veth", "peer", "name", HOST_IF, "netns", ns,
                    "address", &mac,
                ],
            )?;
            netns::ip_in(&sw, &["link", "set", port, "master", BRIDGE_IF])?;
            // Without this the veths leave checksums to "hardware" that
            // never computes them (CHECKSUM_PARTIAL), so XDP incremental
            // checksum updates would be applied to garbage.
            ethtool_tx_off(&sw, port)?;
            ethtool_tx_off(ns, HOST_IF)?;
            netns::sysctls_in(
                ns,
                &[
                    ("net.ipv6.conf.eth0.disable_ipv6", "1"),
                    ("net.ipv4.conf.eth0.rp_filter", "0"),
                    ("net.ipv4.conf.eth0.send_redirects", "0"),
                    ("net.ipv4.conf.eth0.accept_redirects", "0"),
                ],
            )?;
            netns::ip_in(&sw, &["link", "set", port, "up"])?;
        }

        let cl = self.client.ns.clone();
        ip_addr_add(&cl, CLIENT_ADDR, 24, HOST_IF)?;
        netns::ip_in(&cl, &["link", "set", HOST_IF, "up"])?;
        let gw = DIRECTOR_CLIENT_ADDR.to_string();
        netns::ip_in(&cl, &["route", "add", VIP_NET, "via", &gw, "dev", HOST_IF])?;
        // Lets tests reach backends directly through the director's kernel
        // forwarding, e.g. to check a backend before any VIP exists.
        netns::ip_in(
            &cl,
            &["route", "add", BACKEND_NET, "via", &gw, "dev", HOST_IF],
        )?;

        for i in 1..=self.director_count() {
            let dir = self.director_ns_at(i).to_string();
            let (client_side, backend_side) = director_addrs(i);
            ip_addr_add(&dir, client_side, 24, HOST_IF)?;
            ip_addr_add(&dir, backend_side, 24, HOST_IF)?;
            netns::sysctls_in(&dir, &[("net.ipv4.ip_forward", "1")])?;
            netns::ip_in(&dir, &["link", "set", HOST_IF, "up"])?;
        }

        for i in 1..=self.backends.len() {
            let ns = self.backends[i - 1].ns.clone();
            ip_addr_add(&ns, backend_addr(i), 24, HOST_IF)?;
            netns::ip_in(&ns, &["link", "set", HOST_IF, "up"])?;
            let gw = DIRECTOR_BACKEND_ADDR.to_string();
            netns::ip_in(
                &ns,
                &["route", "add", "default", "via", &gw, "dev", HOST_IF],
            )?;
        }
        Ok(())
    }

    fn hosts(&self) -> impl Iterator<Item = &Host> {
        [&self.client, &self.director]
            .into_iter()
            .chain(self.more_directors.iter())
            .chain(self.backends.iter())
    }

    fn hosts_with_mac(&self) -> impl Iterator<Item = (&Host, [u8; 6])> {
        [(&self.client, CLIENT_MAC), (&self.director, DIRECTOR_MAC)]
            .into_iter()
            .chain(
                self.more_directors
                    .iter()
                    .enumerate()
                    .map(|(i, h)| (h, director_mac(i + 2))),
            )
            .chain(
                self.backends
                    .iter()
                    .enumerate()
                    .map(|(i, h)| (h, backend_mac(i + 1))),
            )
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    pub fn client_ns(&self) -> &str {
        &self.client.ns
    }
    pub fn director_ns(&self) -> &str {
        &self.director.ns
    }
    /// Director `i` (1-based; 1 is [`Self::director_ns`]).
    pub fn director_ns_at(&self, i: usize) -> &str {
        match i {
            1 => &self.director.ns,
            _ => &self.more_directors[i - 2].ns,
        }
    }
    pub fn director_count(&self) -> usize {
        1 + self.more_directors.len()
    }
    /// `i` is 1-based, matching the namespace name `<prefix>-b<i>` and
    /// [`backend_addr`]`(i)`.
    pub fn backend_ns(&self, i: usize) -> &str {
        assert!(
            (1..=self.backends.len()).contains(&i),
            "backend index {i} out of range 1..={}",
            self.backends.len()
        );
        &self.backends[i - 1].ns
    }
    pub fn backend_count(&self) -> usize {
        self.backends.len()
    }
    pub fn switch_ns(&self) -> &str {
        &self.switch
    }
    /// Every namespace of this testbed, switch first.
    pub fn namespaces(&self) -> Vec<&str> {
        std::iter::once(self.switch.as_str())
            .chain(self.hosts().map(|h| h.ns.as_str()))
            .collect()
    }

    /// The director's interface (inside [`Self::director_ns`]).
    pub fn director_if(&self) -> &str {
        HOST_IF
    }
    /// Every host namespace names its interface the same.
    pub fn host_if(&self) -> &str {
        HOST_IF
    }
    /// Bridge-side peer of the director's veth (inside [`Self::switch_ns`]).
    pub fn director_peer_if(&self) -> &str {
        &self.director.port
    }

    pub fn client_addr() -> Ipv4Addr {
        CLIENT_ADDR
    }
    pub fn director_addr() -> Ipv4Addr {
        DIRECTOR_CLIENT_ADDR
    }
    pub fn director_backend_addr() -> Ipv4Addr {
        DIRECTOR_BACKEND_ADDR
    }
    pub fn snat_addr() -> Ipv4Addr {
        SNAT_ADDR
    }
    pub fn backend_addr(i: usize) -> Ipv4Addr {
        backend_addr(i)
    }
    pub fn vip() -> Ipv4Addr {
        VIP
    }

    /// A TCP+UDP server on `port` in every backend namespace, named
    /// `b<i>` (what it greets a client with).
    pub fn serve(&self, port: u16) -> Result<Vec<BackendServer>> {
        (1..=self.backend_count())
            .map(|i| {
                BackendServer::start(
                    self.backend_ns(i),
                    &format!("b{i}"),
                    SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port),
                )
            })
            .collect()
    }

    /// `ip netns exec <ns> <args...>`; the error carries stderr.
    pub fn exec(&self, ns: &str, args: &[&str]) -> Result<Output> {
        netns::exec_in(ns, args)
    }

    /// `ip -n <ns> <args...>`; the error carries stderr.
    pub fn ip(&self, ns: &str, args: &[&str]) -> Result<Output> {
        netns::ip_in(ns, args)
    }

    pub fn sysctl(&self, ns: &str, key: &str, value: &str) -> Result<()> {
        netns::sysctls_in(ns, &[(key, value)])
    }

    /// Attaches an XDP program that must return XDP_PASS to the bridge-side
    /// peer of every director's veth, selected by program (function) name.
    ///
    /// Needed because a frame the director sends with XDP_TX is handed to
    /// the peer's XDP receive path and dropped if the peer has none. The
    /// selection is by name rather than section because iproute2 takes the
    /// first program of a section, and a data-plane object usually has
    /// several programs in `xdp`. Native mode is forced: a generic-mode
    /// program would not enable the peer's XDP receive path.
    pub fn attach_xdp_pass(&self, object: &Path, program: &str) -> Result<()> {
        self.attach_peer_xdp(object, "program", program)
    }

    /// [`Self::attach_xdp_pass`] with the test object's `xdp_pass`
    /// ([`crate::objects::TEST_PROGRAMS`]).
    pub fn attach_test_xdp_pass(&self) -> Result<()> {
        let object = crate::objects::write_test_programs(
            &std::env::temp_dir(),
            &format!("ballast-test-{}.bpf.o", self.prefix),
        )?;
        // iproute2 has loaded the program once attached: the file can go.
        let attached = self.attach_xdp_pass(&object, "xdp_pass");
        let _ = std::fs::remove_file(&object);
        attached
    }

    /// Like [`Self::attach_xdp_pass`] but selects the first program in
    /// `section`.
    pub fn attach_xdp_pass_section(&self, object: &Path, section: &str) -> Result<()> {
        self.attach_peer_xdp(object, "sec", section)
    }

    fn attach_peer_xdp(&self, object: &Path, selector: &str, value: &str) -> Result<()> {
        let obj = object
            .to_str()
            .with_context(|| format!("non-UTF-8 object path {}", object.display()))?;
        ensure!(object.is_file(), "XDP object {obj} not found");
        let sw = &self.switch;
        for port in self.director_ports() {
            // A generic-mode program would make the native attach fail with EBUSY.
            let _ = netns::ip_in(sw, &["link", "set", "dev", port, "xdpgeneric", "off"]);
            netns::ip_in(
                sw,
                &[
                    "link", "set", "dev", port, "xdpdrv", "obj", obj, selector, value,
                ],
            )?;
        }
        Ok(())
    }

    fn director_ports(&self) -> impl Iterator<Item = &str> {
        std::iter::once(&self.director)
            .chain(self.more_directors.iter())
            .map(|h| h.port.as_str())
    }

    pub fn detach_xdp_pass(&self) -> Result<()> {
        for port in self.director_ports() {
            netns::ip_in(&self.switch, &["link", "set", "dev", port, "xdpdrv", "off"])?;
        }
        Ok(())
    }

    pub fn set_backend_mode(&self, mode: BackendRouting) -> Result<()> {
        for b in &self.backends {
            match mode {
                BackendRouting::ViaDirector => {
                    // Absent when already in this mode.
                    let _ = netns::ip_in(
                        &b.ns,
                        &["route", "del", CLIENT_NET, "dev", HOST_IF, "scope", "link"],
                    );
                }
                BackendRouting::DirectToClient => {
                    netns::ip_in(
                        &b.ns,
                        &[
                            "route", "replace", CLIENT_NET, "dev", HOST_IF, "scope", "link",
                        ],
                    )?;
                }
            }
            let gw = DIRECTOR_BACKEND_ADDR.to_string();
            netns::ip_in(
                &b.ns,
                &["route", "replace", "default", "via", &gw, "dev", HOST_IF],
            )?;
        }
        Ok(())
    }

    /// DR setup: `vip`/32 on `lo` of every backend, and ARP sysctls so the
    /// backends neither answer ARP for the VIP nor use it as ARP source.
    pub fn add_vip_to_backends(&self, vip: Ipv4Addr) -> Result<()> {
        for b in &self.backends {
            netns::sysctls_in(
                &b.ns,
                &[
                    ("net.ipv4.conf.all.arp_ignore", "1"),
                    ("net.ipv4.conf.all.arp_announce", "2"),
                    ("net.ipv4.conf.eth0.arp_ignore", "1"),
                    ("net.ipv4.conf.eth0.arp_announce", "2"),
                ],
            )?;
            let a = format!("{vip}/32");
            netns::ip_in(&b.ns, &["addr", "replace", &a, "dev", "lo"])?;
        }
        Ok(())
    }

    pub fn remove_vip_from_backends(&self, vip: Ipv4Addr) -> Result<()> {
        for b in &self.backends {
            let a = format!("{vip}/32");
            let _ = netns::ip_in(&b.ns, &["addr", "del", &a, "dev", "lo"]);
        }
        Ok(())
    }

    /// Configures [`SNAT_ADDR`] on the director's interface, for tests that
    /// want the kernel (not the data plane) to own it.
    pub fn add_snat_addr_to_director(&self) -> Result<()> {
        let a = format!("{SNAT_ADDR}/32");
        netns::ip_in(&self.director.ns, &["addr", "replace", &a, "dev", HOST_IF]).map(|_| ())
    }

    /// Deletes every namespace named `<prefix>-*`; returns how many.
    /// Deleting a namespace deletes its veths, whose peers go with them.
    pub fn cleanup_prefix(prefix: &str) -> usize {
        let want = format!("{prefix}-");
        let mut n = 0;
        for ns in netns::list_netns() {
            if ns.starts_with(&want) {
                match netns::delete_netns(&ns) {
                    Ok(()) => n += 1,
                    Err(e) => tracing::warn!("removing leftover netns {ns}: {e:#}"),
                }
            }
        }
        n
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        // Hosts before the switch so no veth briefly dangles on a bridge
        // that is going away; errors are only logged, Drop must not panic.
        for ns in self.created.iter().rev() {
            if netns::netns_exists(ns)
                && let Err(e) = netns::delete_netns(ns)
            {
                tracing::warn!("deleting netns {ns}: {e:#}");
                eprintln!("testbed: deleting netns {ns}: {e:#}");
            }
        }
    }
}

fn validate_spec(spec: &TestbedSpec) -> Result<()> {
    let p = &spec.prefix;
    ensure!(!p.is_empty(), "testbed prefix is empty");
    ensure!(
        p.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
        "testbed prefix {p:?} must be [a-z0-9]+ (it becomes part of netns and interface names)"
    );
    ensure!(spec.backends >= 1, "testbed needs at least one backend");
    ensure!(
        (1..=9).contains(&spec.directors),
        "a testbed has 1 to 9 directors"
    );
    ensure!(spec.backends <= 200, "at most 200 backends");
    let longest = format!("{p}-b{}", spec.backends)
        .len()
        .max(match spec.directors {
            1 => format!("{p}-dir").len(),
            n => format!("{p}-dir{n}").len(),
        });
    if longest > MAX_IFNAME_LEN {
        bail!(
            "testbed prefix {p:?} too long: interface names would be {longest} characters, max {MAX_IFNAME_LEN}"
        );
    }
    Ok(())
}

fn ip_addr_add(ns: &str, addr: Ipv4Addr, len: u8, dev: &str) -> Result<()> {
    let a = format!("{addr}/{len}");
    netns::ip_in(ns, &["addr", "add", &a, "dev", dev]).map(|_| ())
}

fn ethtool_tx_off(ns: &str, dev: &str) -> Result<()> {
    netns::exec_in(ns, &["ethtool", "-K", dev, "tx", "off"]).with_context(|| {
        format!("disabling tx checksum offload on {dev} in {ns} (is ethtool installed?)")
    })?;
    Ok(())
}

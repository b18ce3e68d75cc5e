//! Shared by the packet tests, the sweeper tests, the fuzzer and the
//! benchmark: the director program loaded (not attached) inside a private
//! network namespace whose routes and neighbours make `bpf_fib_lookup`
//! deterministic, and packets run through it with BPF_PROG_TEST_RUN. The
//! namespace holds the test world's director (addresses and MAC), with the
//! client and backends 1-3 as its neighbours.
use std::path::PathBuf;

use aya::programs::{TestRun, TestRunOptions};
use ballast_agent::abi;
use ballast_agent::dataplane::{
    DesiredService, Director, LoadOptions, NodeSettings, XdpAttachMode,
};

use crate::netns;
use crate::world::{
    CLIENT_ADDR, CLIENT_MAC, DIRECTOR_BACKEND_ADDR, DIRECTOR_CLIENT_ADDR, DIRECTOR_MAC, SNAT_ADDR,
    VIP, backend_addr, backend_mac, format_mac,
};

pub const XDP_ABORTED: u32 = 0;
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;
pub const XDP_REDIRECT: u32 = 4;

/// IP protocol numbers, as services and frames spell them.
pub const TCP: u8 = 6;
pub const UDP: u8 = 17;

/// Backends 1..=3 are the director's neighbours; 4 and up have no
/// neighbour entry (NO_NEIGH).
pub const NEIGHBOUR_BACKENDS: usize = 3;

/// Runs `ip <args>` in the calling thread's network namespace; panics with
/// its stderr when it fails.
fn ip(args: &[&str]) {
    netns::run("ip", args).unwrap_or_else(|e| panic!("{e:#}"));
}

/// Runs `f` on a thread in a fresh network namespace prepared for the
/// director: interface `dp0` with the director's addresses and MAC, static
/// neighbours for the client and backends 1-3, forwarding on.
pub fn in_private_netns<T: Send + 'static>(f: impl FnOnce(u32) -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        // SAFETY: affects only this thread's network namespace.
        assert_eq!(
            unsafe { libc::unshare(libc::CLONE_NEWNET) },
            0,
            "unshare(CLONE_NEWNET)"
        );
        ip(&["link", "set", "lo", "up"]);
        ip(&["link", "add", "dp0", "type", "veth", "peer", "name", "dp1"]);
        ip(&["link", "set", "dp0", "address", &format_mac(&DIRECTOR_MAC)]);
        ip(&["link", "set", "dp0", "up"]);
        ip(&["link", "set", "dp1", "up"]);
        for addr in [DIRECTOR_CLIENT_ADDR, DIRECTOR_BACKEND_ADDR] {
            ip(&["addr", "add", &format!("{addr}/24"), "dev", "dp0"]);
        }
        let neighbours = std::iter::once((CLIENT_ADDR, CLIENT_MAC))
            .chain((1..=NEIGHBOUR_BACKENDS).map(|i| (backend_addr(i), backend_mac(i))));
        for (addr, mac) in neighbours {
            ip(&[
                "neigh",
                "replace",
                &addr.to_string(),
                "lladdr",
                &format_mac(&mac),
                "dev",
                "dp0",
                "nud",
                "permanent",
            ]);
        }
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").expect("ip_forward");
        // /sys shows the namespace it was mounted in: ask the kernel.
        let name = std::ffi::CString::new("dp0").unwrap();
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        assert_ne!(ifindex, 0, "dp0 in the private namespace");
        f(ifindex)
    })
    .join()
    .expect("test thread panicked")
}

/// One BPF_PROG_TEST_RUN of `frame`, `repeat` times, as if received on
/// `ifindex`; the result and the frame as it left.
pub fn test_run(
    prog: &aya::programs::Xdp,
    frame: &[u8],
    ifindex: u32,
    repeat: u32,
) -> (aya::programs::TestRunResult, Vec<u8>) {
    let mut out = vec![0u8; frame.len() + 256];
    // struct xdp_md: data, data_end, data_meta, ingress_ifindex, ...
    let mut ctx = [0u8; 24];
    ctx[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
    ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            repeat,
            ..Default::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    out.truncate(r.data_size_out as usize);
    (r, out)
}

pub struct PacketLab {
    pub director: Director,
    pub ifindex: u32,
    pub pin_dir: PathBuf,
}

impl Drop for PacketLab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.pin_dir);
        // The shared parent goes with the last lab (fails while others live).
        if let Some(parent) = self.pin_dir.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

pub fn settings() -> NodeSettings {
    NodeSettings {
        mac: DIRECTOR_MAC,
        snat_addrs: vec![SNAT_ADDR],
        ..Default::default()
    }
}

impl PacketLab {
    /// Loads the program with maps pinned in a directory of its own. Call
    /// inside `in_private_netns`.
    pub fn new(ifindex: u32, settings: NodeSettings, maglev_size: u32, ring_slots: u32) -> Self {
        // Small conntrack: tests create many labs, and the kernel frees
        // preallocated LRU maps lazily.
        Self::with_conntrack(ifindex, settings, maglev_size, ring_slots, 65_536)
    }

    /// The lab most packet tests use: a Maglev table of 251 and ring room
    /// for 64 services.
    pub fn small(ifindex: u32) -> Self {
        Self::new(ifindex, settings(), 251, 64 * 251)
    }

    pub fn with_conntrack(
        ifindex: u32,
        settings: NodeSettings,
        maglev_size: u32,
        ring_slots: u32,
        conntrack: u32,
    ) -> Self {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let pin_dir = PathBuf::from("/sys/fs/bpf/ballast-test").join(format!(
            "{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&pin_dir);
        let opts = LoadOptions {
            interface: None,
            pin_dir: pin_dir.clone(),
            ring_slots,
            backend_slots: None,
            conntrack_entries: Some(conntrack),
            mode: XdpAttachMode::Auto,
        };
        let director = Director::open(&opts, &settings, maglev_size).expect("open director");
        Self {
            director,
            ifindex,
            pin_dir,
        }
    }

    pub fn apply(&mut self, svcs: &[DesiredService]) {
        let errors = self.director.apply(svcs).expect("apply");
        assert!(errors.is_empty(), "{errors:?}");
    }

    /// Runs one frame; returns the verdict and the frame as it left.
    pub fn run(&mut self, frame: &[u8]) -> (u32, Vec<u8>) {
        let ifindex = self.ifindex;
        let prog = self.director.program().expect("program");
        let (r, out) = test_run(prog, frame, ifindex, 1);
        (r.return_value, out)
    }

    /// The refusal rate limit (the lab starts without one, as a fresh map).
    pub fn set_refusal_limit(&mut self, limit: ballast_agent::abi::RefusalLimit) {
        self.director
            .maps_mut()
            .write_refusal_limit(limit)
            .expect("refusal limit");
    }

    /// Where the lab's maps are pinned (for a second writer, as the
    /// announcer is).
    pub fn pin_dir(&self) -> &std::path::Path {
        &self.pin_dir
    }

    pub fn reasons(&self) -> Vec<u64> {
        self.director.maps().reason_counters().expect("reasons")
    }

    /// Entries in the conntrack table (both directions of every flow).
    pub fn conntrack_entries(&self) -> u64 {
        let tables = self.director.maps().flow_tables().expect("flow tables");
        tables
            .iter()
            .find(|t| t.table == "conntrack")
            .expect("conntrack table")
            .entries
    }
}

/// How much the counter of reason `idx` grew between two [`PacketLab::reasons`].
pub fn reason_delta(before: &[u64], after: &[u64], idx: u32) -> u64 {
    after[idx as usize] - before[idx as usize]
}

/// A service on VIP with backends (index, weight) on port `target`.
pub fn svc(
    mode: u8,
    proto: u8,
    port: u16,
    target: u16,
    backends: &[(usize, u32)],
) -> DesiredService {
    DesiredService::new(
        format!("test/svc:{port}"),
        (VIP, port, proto),
        mode,
        target,
        backends.iter().map(|&(i, w)| (backend_addr(i), w)),
    )
}

pub const MODE_FULLNAT: u8 = abi::MODE_FULLNAT;
pub const MODE_DR: u8 = abi::MODE_DR;
pub const MODE_NAT: u8 = abi::MODE_NAT;

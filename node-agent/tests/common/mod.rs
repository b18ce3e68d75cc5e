//! Shared by the packet tests, the fuzzer and the benchmark: the director
//! program loaded (not attached) inside a private network namespace whose
//! routes and neighbours make `bpf_fib_lookup` deterministic, and packets run
//! through it with BPF_PROG_TEST_RUN.
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;

use aya::programs::{TestRun, TestRunOptions};
use ballast_agent::abi;
use ballast_agent::dataplane::{
    DesiredService, Director, LoadOptions, NodeSettings, XdpAttachMode,
};

pub const XDP_ABORTED: u32 = 0;
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;
pub const XDP_REDIRECT: u32 = 4;

pub const IF_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const DIRECTOR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
pub const SNAT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 3);
pub const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
/// Backends 1..=3 have neighbour entries; 4 has none (NO_NEIGH).
pub fn backend(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 51, 100, 10 + i)
}
pub fn backend_mac(i: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 1, 0x10 + i]
}

/// Runs a command; panics with its stderr when it fails.
pub fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn mac_str(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// Runs `f` on a thread in a fresh network namespace prepared for the
/// director: interface `dp0` with the director's addresses, static neighbours
/// for the client and backends 1-3, forwarding on.
pub fn in_private_netns<T: Send + 'static>(f: impl FnOnce(u32) -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        // SAFETY: affects only this thread's network namespace.
        assert_eq!(
            unsafe { libc::unshare(libc::CLONE_NEWNET) },
            0,
            "unshare(CLONE_NEWNET)"
        );
        sh(&["ip", "link", "set", "lo", "up"]);
        sh(&[
            "ip", "link", "add", "dp0", "type", "veth", "peer", "name", "dp1",
        ]);
        sh(&["ip", "link", "set", "dp0", "address", &mac_str(&IF_MAC)]);
        sh(&["ip", "link", "set", "dp0", "up"]);
        sh(&["ip", "link", "set", "dp1", "up"]);
        sh(&["ip", "addr", "add", "192.0.2.2/24", "dev", "dp0"]);
        sh(&["ip", "addr", "add", "198.51.100.2/24", "dev", "dp0"]);
        sh(&[
            "ip",
            "neigh",
            "replace",
            "192.0.2.1",
            "lladdr",
            &mac_str(&CLIENT_MAC),
            "dev",
            "dp0",
            "nud",
            "permanent",
        ]);
        for i in 1..=3u8 {
            sh(&[
                "ip",
                "neigh",
                "replace",
                &backend(i).to_string(),
                "lladdr",
                &mac_str(&backend_mac(i)),
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
        mac: IF_MAC,
        snat_addrs: vec![SNAT],
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
            conntrack_entries: Some(conntrack),
            mode: XdpAttachMode::Auto,
            netns: None,
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
        let prog = self.director.dp.program().expect("program");
        let (r, out) = test_run(prog, frame, ifindex, 1);
        (r.return_value, out)
    }

    pub fn reasons(&self) -> Vec<u64> {
        self.director.dp.maps.reason_counters().expect("reasons")
    }
}

/// A service on VIP with backends (index, weight) on port `target`.
pub fn svc(mode: u8, proto: u8, port: u16, target: u16, backends: &[(u8, u32)]) -> DesiredService {
    DesiredService::new(
        format!("test/svc:{port}"),
        (VIP, port, proto),
        mode,
        target,
        backends.iter().map(|&(i, w)| (backend(i), w)),
    )
}

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// An Ethernet/IPv4/TCP frame with correct checksums. `options` are raw TCP
/// option bytes (padded to 4 by the caller).
pub fn tcp_frame(
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    flags: u8,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    use etherparse::{EtherType, Ethernet2Header, IpNumber, Ipv4Header, TcpHeader};
    let mut tcp = TcpHeader::new(src.1, dst.1, 1000, 64240);
    tcp.fin = flags & TCP_FIN != 0;
    tcp.syn = flags & TCP_SYN != 0;
    tcp.rst = flags & TCP_RST != 0;
    tcp.ack = flags & TCP_ACK != 0;
    if tcp.ack {
        tcp.acknowledgment_number = 1;
    }
    tcp.set_options_raw(options).expect("options");
    let mut ip = Ipv4Header::new(
        (tcp.header_len() + payload.len()) as u16,
        64,
        IpNumber::TCP,
        src.0.octets(),
        dst.0.octets(),
    )
    .unwrap();
    ip.header_checksum = ip.calc_header_checksum();
    tcp.checksum = tcp.calc_checksum_ipv4(&ip, payload).unwrap();
    let eth = Ethernet2Header {
        source: CLIENT_MAC,
        destination: IF_MAC,
        ether_type: EtherType::IPV4,
    };
    let mut v = Vec::new();
    eth.write(&mut v).unwrap();
    ip.write(&mut v).unwrap();
    tcp.write(&mut v).unwrap();
    v.extend_from_slice(payload);
    v
}

pub fn udp_frame(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), payload: &[u8]) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ethernet2(CLIENT_MAC, IF_MAC)
        .ipv4(src.0.octets(), dst.0.octets(), 64)
        .udp(src.1, dst.1);
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    v
}

/// A parsed frame whose checksums were verified from scratch.
#[derive(Debug, Clone)]
pub struct Seen {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: (Ipv4Addr, u16),
    pub dst: (Ipv4Addr, u16),
    pub ttl: u8,
    pub tcp_options: Vec<u8>,
    pub payload: Vec<u8>,
}

impl Seen {
    /// The TOA option (kind 254, len 8): client port and address.
    pub fn toa(&self) -> Option<(Ipv4Addr, u16)> {
        let o = &self.tcp_options;
        let mut i = 0;
        while i + 1 < o.len() {
            match o[i] {
                0 => break,
                1 => i += 1,
                254 if o[i + 1] == 8 && i + 8 <= o.len() => {
                    return Some((
                        Ipv4Addr::new(o[i + 4], o[i + 5], o[i + 6], o[i + 7]),
                        u16::from_be_bytes([o[i + 2], o[i + 3]]),
                    ));
                }
                _ => i += o[i + 1].max(2) as usize,
            }
        }
        None
    }

    pub fn mss(&self) -> Option<u16> {
        let o = &self.tcp_options;
        let mut i = 0;
        while i + 1 < o.len() {
            match o[i] {
                0 => break,
                1 => i += 1,
                2 if i + 4 <= o.len() => return Some(u16::from_be_bytes([o[i + 2], o[i + 3]])),
                _ => i += o[i + 1].max(2) as usize,
            }
        }
        None
    }
}

/// Parses an output frame and checks the IPv4 and TCP/UDP checksums.
pub fn parse(frame: &[u8]) -> Seen {
    try_parse(frame).unwrap_or_else(|e| panic!("{e}: {frame:02x?}"))
}

/// Like [`parse`], as a Result: Err when unparseable or a checksum is wrong.
pub fn try_parse(frame: &[u8]) -> Result<Seen, String> {
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    let p = SlicedPacket::from_ethernet(frame).map_err(|e| e.to_string())?;
    let Some(etherparse::LinkSlice::Ethernet2(eth)) = &p.link else {
        return Err("not ethernet".into());
    };
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        return Err("not IPv4".into());
    };
    let iph = ip.header().to_header();
    if iph.header_checksum != iph.calc_header_checksum() {
        return Err("IPv4 header checksum".into());
    }
    let (src_port, dst_port, opts, payload) = match &p.transport {
        Some(TransportSlice::Tcp(t)) => {
            let h = t.to_header();
            if h.checksum
                != h.calc_checksum_ipv4(&iph, t.payload())
                    .map_err(|e| e.to_string())?
            {
                return Err("TCP checksum".into());
            }
            (
                t.source_port(),
                t.destination_port(),
                t.options().to_vec(),
                t.payload().to_vec(),
            )
        }
        Some(TransportSlice::Udp(u)) => {
            let h = u.to_header();
            if h.checksum != 0
                && h.checksum
                    != h.calc_checksum_ipv4(&iph, u.payload())
                        .map_err(|e| e.to_string())?
            {
                return Err("UDP checksum".into());
            }
            (
                u.source_port(),
                u.destination_port(),
                Vec::new(),
                u.payload().to_vec(),
            )
        }
        _ => (0, 0, Vec::new(), Vec::new()),
    };
    Ok(Seen {
        src_mac: eth.source(),
        dst_mac: eth.destination(),
        src: (Ipv4Addr::from(iph.source), src_port),
        dst: (Ipv4Addr::from(iph.destination), dst_port),
        ttl: iph.time_to_live,
        tcp_options: opts,
        payload,
    })
}

pub const MODE_FULLNAT: u8 = abi::MODE_FULLNAT;
pub const MODE_DR: u8 = abi::MODE_DR;
pub const MODE_NAT: u8 = abi::MODE_NAT;

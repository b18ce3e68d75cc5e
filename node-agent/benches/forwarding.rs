//! Packets/s through a director namespace, per DESIGN.md's benchmark
//! method: an XDP live-frames generator (BPF_PROG_TEST_RUN with
//! BPF_F_TEST_XDP_LIVE_FRAMES) sends 64-byte UDP frames with a new source
//! port each (20k flows in rotation) and an XDP sink counts what arrives.
//! Each director on its own best path, in the same run:
//!   xdp_frame path: generator veth <-> director veth (frames stay xdp_frames)
//!     - floor: parse + MAC swap + XDP_TX
//!     - Ballast FullNAT
//!   skb path: generator -> bridge -> director -> bridge -> sink
//!     - nftables DNAT + SNAT (the baseline)
//!     - Ballast FullNAT (what veth-only users get)
//! Target: Ballast (xdp path) / nftables (skb path) >= 3.
//! Run as root: `cargo bench -p ballast-agent --bench forwarding`.
#[path = "../tests/common/mod.rs"]
mod common;

use common::{mac_str, sh};
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use aya::maps::PerCpuArray;
use aya::programs::{TestRun, TestRunAttrs, TestRunOptions, Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};
use ballast_agent::abi;
use ballast_agent::dataplane::{
    DesiredService, Director, LoadOptions, NodeSettings, XdpAttachMode,
};
use ballast_agent::testbed::in_netns;

static BENCH_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bench.bpf.o"));

const GEN_MAC: [u8; 6] = [0x02, 0xbe, 0, 0, 0, 0x01];
const DIR_MAC: [u8; 6] = [0x02, 0xbe, 0, 0, 0, 0x02];
const SINK_MAC: [u8; 6] = [0x02, 0xbe, 0, 0, 0, 0x03];
const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const BACKEND: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 11);
const SNAT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 3);
const FRAMES: u32 = 3_000_000;

fn ipn(ns: &str, args: &[&str]) {
    let mut v = vec!["ip", "-n", ns];
    v.extend_from_slice(args);
    sh(&v);
}

/// Namespaces that go away on drop.
struct Namespaces(Vec<String>);

impl Namespaces {
    fn new(names: &[String]) -> Self {
        for n in names {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
            sh(&["ip", "netns", "add", n]);
            ipn(n, &["link", "set", "lo", "up"]);
        }
        Self(names.to_vec())
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
    }
}

/// A veth pair with fixed MACs, one end in each namespace, both up.
fn veth(
    a_ns: &str,
    a: &str,
    a_mac: Option<&[u8; 6]>,
    b_ns: &str,
    b: &str,
    b_mac: Option<&[u8; 6]>,
) {
    ipn(
        a_ns,
        &[
            "link", "add", a, "type", "veth", "peer", "name", b, "netns", b_ns,
        ],
    );
    if let Some(m) = a_mac {
        ipn(a_ns, &["link", "set", a, "address", &mac_str(m)]);
    }
    if let Some(m) = b_mac {
        ipn(b_ns, &["link", "set", b, "address", &mac_str(m)]);
    }
    ipn(a_ns, &["link", "set", a, "up"]);
    ipn(b_ns, &["link", "set", b, "up"]);
}

fn sysctl(ns: &str, key: &str, value: &str) {
    sh(&[
        "ip",
        "netns",
        "exec",
        ns,
        "sysctl",
        "-qw",
        &format!("{key}={value}"),
    ]);
}

fn director_addresses(ns: &str, ifname: &str, backend_mac: &[u8; 6]) {
    ipn(ns, &["addr", "add", "192.0.2.2/24", "dev", ifname]);
    ipn(ns, &["addr", "add", "198.51.100.2/24", "dev", ifname]);
    ipn(
        ns,
        &[
            "neigh",
            "replace",
            &BACKEND.to_string(),
            "lladdr",
            &mac_str(backend_mac),
            "dev",
            ifname,
            "nud",
            "permanent",
        ],
    );
    ipn(
        ns,
        &[
            "neigh",
            "replace",
            "192.0.2.1",
            "lladdr",
            &mac_str(&GEN_MAC),
            "dev",
            ifname,
            "nud",
            "permanent",
        ],
    );
    sysctl(ns, "net.ipv4.ip_forward", "1");
    sysctl(ns, "net.ipv4.conf.all.rp_filter", "0");
    sysctl(ns, &format!("net.ipv4.conf.{ifname}.rp_filter"), "0");
}

/// Loads the bench object and attaches one of its programs natively.
fn attach_bench(ns: &str, ifname: &str, program: &'static str) -> Ebpf {
    let ifname = ifname.to_string();
    in_netns(ns, move || {
        let mut ebpf = EbpfLoader::new().load(BENCH_OBJECT).expect("bench object");
        let p: &mut Xdp = ebpf.program_mut(program).unwrap().try_into().unwrap();
        p.load().unwrap();
        p.attach(&ifname, XdpMode::Driver).unwrap();
        ebpf
    })
    .unwrap()
}

/// The director side, Ballast FullNAT or (floor) the MAC-swap program,
/// kept attached while alive; its pinned state goes on drop.
struct RunningDirector {
    director: Box<Director>,
    pin: std::path::PathBuf,
}

fn start_director(ns: &str, ifname: &str, floor: bool) -> RunningDirector {
    let pin = std::path::PathBuf::from(format!("/sys/fs/bpf/ballast-bench/{ns}"));
    let _ = std::fs::remove_dir_all(&pin);
    let (ns_s, if_s, pin_c) = (ns.to_string(), ifname.to_string(), pin.clone());
    let d = in_netns(ns, move || {
        let opts = LoadOptions {
            interface: if floor { None } else { Some(if_s.clone()) },
            pin_dir: pin_c,
            ring_slots: 4 * 65537,
            conntrack_entries: None,
            mode: XdpAttachMode::Native,
            netns: Some(ns_s),
        };
        let settings = NodeSettings {
            mac: DIR_MAC,
            snat_addrs: vec![SNAT],
            ..Default::default()
        };
        let mut d = Director::open(&opts, &settings, 65537).expect("director");
        if floor {
            d.dp.aux_program("xdp_floor")
                .unwrap()
                .attach(&if_s, XdpMode::Driver)
                .unwrap();
        }
        d
    })
    .unwrap();
    let mut d = Box::new(d);
    if !floor {
        let svc = DesiredService::new(
            "bench/udp:53",
            (VIP, 53, 17),
            abi::MODE_FULLNAT,
            5353,
            [(BACKEND, 1)],
        );
        let errors = d.apply(&[svc]).unwrap();
        assert!(errors.is_empty(), "{errors:?}");
    }
    RunningDirector { director: d, pin }
}

impl Drop for RunningDirector {
    fn drop(&mut self) {
        // Where the frames went, for the record.
        if let Ok(r) = self.director.dp.maps.reason_counters() {
            let nonzero: Vec<_> = abi::REASONS
                .iter()
                .zip(r)
                .filter(|(_, c)| *c > 0)
                .map(|((n, _), c)| (*n, c))
                .collect();
            eprintln!("    director verdicts: {nonzero:?}");
        }
        let _ = std::fs::remove_dir_all(&self.pin);
        if let Some(parent) = self.pin.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

fn frame() -> Vec<u8> {
    let b = etherparse::PacketBuilder::ethernet2(GEN_MAC, DIR_MAC)
        .ipv4(Ipv4Addr::new(192, 0, 2, 1).octets(), VIP.octets(), 64)
        .udp(10000, 53);
    let mut v = Vec::new();
    b.write(&mut v, &[0u8; 18]).unwrap();
    v
}

fn sink_total(sink: &Ebpf) -> u64 {
    let m: PerCpuArray<_, u64> = PerCpuArray::try_from(sink.map("sink_count").unwrap()).unwrap();
    m.get(&0, 0).unwrap().iter().sum()
}

/// Sends FRAMES live frames out of `gen_if` and returns packets/s at the sink.
fn generate(gen_ns: &str, gen_if: &str, sink: &Ebpf) -> f64 {
    let gen_if = gen_if.to_string();
    let before = sink_total(sink);
    let elapsed = in_netns(gen_ns, move || {
        let mut ebpf = EbpfLoader::new().load(BENCH_OBJECT).expect("bench object");
        let p: &mut Xdp = ebpf.program_mut("xdp_gen").unwrap().try_into().unwrap();
        p.load().unwrap();
        let f = frame();
        let mut template: aya::maps::Array<_, [u8; 48]> =
            aya::maps::Array::try_from(ebpf.map_mut("gen_template").unwrap()).unwrap();
        let mut hdr = [0u8; 48];
        hdr[..42].copy_from_slice(&f[..42]);
        template.set(0, hdr, 0).unwrap();
        let p: &mut Xdp = ebpf.program_mut("xdp_gen").unwrap().try_into().unwrap();
        let name = std::ffi::CString::new(gen_if).unwrap();
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        let mut ctx = [0u8; 24];
        ctx[4..8].copy_from_slice(&(f.len() as u32).to_ne_bytes());
        ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
        let t = Instant::now();
        p.test_run(TestRunOptions {
            data_in: Some(&f),
            ctx_in: Some(&ctx),
            repeat: FRAMES,
            attrs: TestRunAttrs::new().xdp_live_frames(64),
            ..Default::default()
        })
        .expect("live frames");
        t.elapsed()
    })
    .unwrap();
    // Let in-flight frames land.
    std::thread::sleep(Duration::from_millis(200));
    let got = sink_total(sink) - before;
    eprintln!("    {got} of {FRAMES} frames reached the sink in {elapsed:?}");
    got as f64 / elapsed.as_secs_f64()
}

/// generator veth <-> director veth; the sink is the generator's own veth.
fn xdp_path(p: &str, floor: bool) -> f64 {
    let (g, d) = (format!("{p}-g"), format!("{p}-d"));
    let _ns = Namespaces::new(&[g.clone(), d.clone()]);
    veth(&g, "g0", Some(&GEN_MAC), &d, "d0", Some(&DIR_MAC));
    director_addresses(&d, "d0", &GEN_MAC);
    let sink = attach_bench(&g, "g0", "xdp_sink");
    let _dir = start_director(&d, "d0", floor);
    generate(&g, "g0", &sink)
}

/// generator -> bridge -> director -> bridge -> sink.
fn skb_path(p: &str, ballast: bool) -> f64 {
    let (g, b, d, s) = (
        format!("{p}-g"),
        format!("{p}-b"),
        format!("{p}-d"),
        format!("{p}-s"),
    );
    let _ns = Namespaces::new(&[g.clone(), b.clone(), d.clone(), s.clone()]);
    ipn(&b, &["link", "add", "br0", "type", "bridge"]);
    ipn(&b, &["link", "set", "br0", "up"]);
    veth(&g, "g0", Some(&GEN_MAC), &b, "bg", None);
    veth(&d, "d0", Some(&DIR_MAC), &b, "bd", None);
    veth(&s, "s0", Some(&SINK_MAC), &b, "bs", None);
    for port in ["bg", "bd", "bs"] {
        ipn(&b, &["link", "set", port, "master", "br0"]);
    }
    // XDP_TX'd frames need an XDP program on the receiving peer.
    let _pass_g = attach_bench(&b, "bg", "xdp_sink_pass");
    let _pass_d = if ballast {
        Some(attach_bench(&b, "bd", "xdp_sink_pass"))
    } else {
        None
    };
    director_addresses(&d, "d0", &SINK_MAC);
    ipn(&s, &["addr", "add", "198.51.100.11/24", "dev", "s0"]);
    let sink = attach_bench(&s, "s0", "xdp_sink");
    let _dir = if ballast {
        Some(start_director(&d, "d0", false))
    } else {
        let rules = format!(
            "table ip lb {{\n chain pre {{\n  type nat hook prerouting priority dstnat;\n  ip daddr {VIP} udp dport 53 dnat to {BACKEND}:5353\n }}\n chain post {{\n  type nat hook postrouting priority srcnat;\n  ip daddr {BACKEND} snat to {SNAT}\n }}\n}}\n"
        );
        let path = std::env::temp_dir().join(format!("{p}.nft"));
        std::fs::write(&path, rules).unwrap();
        sh(&[
            "ip",
            "netns",
            "exec",
            &d,
            "nft",
            "-f",
            path.to_str().unwrap(),
        ]);
        let _ = std::fs::remove_file(path);
        None
    };
    generate(&g, "g0", &sink)
}

fn main() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("the forwarding benchmark needs root");
        return;
    }
    let p = format!("bfw{}", std::process::id() % 1000);
    println!("{FRAMES} live 64-byte UDP frames per run, 20k flows in rotation");
    let floor = xdp_path(&p, true);
    println!(
        "  xdp path, floor (MAC swap + XDP_TX)   {:6.3} Mpps",
        floor / 1e6
    );
    let ballast = xdp_path(&p, false);
    println!(
        "  xdp path, Ballast FullNAT             {:6.3} Mpps",
        ballast / 1e6
    );
    let nft = skb_path(&p, false);
    println!(
        "  skb path, nftables DNAT+SNAT          {:6.3} Mpps",
        nft / 1e6
    );
    let ballast_skb = skb_path(&p, true);
    println!(
        "  skb path, Ballast FullNAT             {:6.3} Mpps",
        ballast_skb / 1e6
    );
    println!("ratios:");
    println!(
        "  Ballast (xdp) / floor (xdp)      = {:.2}",
        ballast / floor
    );
    println!(
        "  Ballast (xdp) / nftables (skb)   = {:.2}  (target >= 3)",
        ballast / nft
    );
    println!(
        "  Ballast (skb) / nftables (skb)   = {:.2}",
        ballast_skb / nft
    );
}

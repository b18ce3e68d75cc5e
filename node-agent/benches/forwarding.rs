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
//!
//! The generator runs on CPU 0 and the director's receive processing (its
//! veth's NAPI instance, in a kernel thread) on CPU 1, both at real-time
//! priority. Sharing one CPU, the two would take turns: a paced generator
//! would never overload the director, only slow down with it, and an
//! unpaced one would starve it (receive livelock).
//!
//! Two figures per director:
//!   - capacity: the highest offered rate at which the director delivers
//!     at least 99% of the frames, found with paced probes (a ramp from
//!     the blast's delivered rate, then a bisection); what it sustains.
//!     The director's input is a 256-frame veth ring, which holds ~100 us
//!     at 2.5 Mpps, so for fast directors this also measures how rarely
//!     the CPU stalls (a VM here): a conservative figure;
//!   - blast: offered and delivered rates while the generator sends as
//!     fast as it can; what an overloaded node gets, and the director's
//!     throughput when it never waits for work.
//!
//! Target: Ballast (xdp path) / nftables (skb path) >= 3, on capacity.
//! Run as root: `cargo bench -p ballast-agent --bench forwarding`.
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use aya::maps::{Array, PerCpuArray};
use aya::programs::{TestRun, TestRunAttrs, TestRunOptions, Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};
use ballast_agent::abi;
use ballast_agent::dataplane::{
    DesiredService, Director, LoadOptions, NodeSettings, XdpAttachMode,
};
use ballast_testbed::world::{
    CLIENT_ADDR, DIRECTOR_BACKEND_ADDR, DIRECTOR_CLIENT_ADDR, SNAT_ADDR, VIP,
};
use ballast_testbed::{format_mac, in_netns, netns, objects, require_root};

const GEN_MAC: [u8; 6] = [0x02, 0xbe, 0, 0, 0, 0x01];
const DIR_MAC: [u8; 6] = [0x02, 0xbe, 0, 0, 0, 0x02];
const SINK_MAC: [u8; 6] = [0x02, 0xbe, 0, 0, 0, 0x03];
/// The test world's backend 1 (`ballast_testbed::backend_addr(1)`).
const BACKEND: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 11);

const GEN_CPU: usize = 0;
const DIR_CPU: usize = 1;
/// Frames of the unpaced run; it also creates every flow's state before
/// the probes, so that they measure the steady state.
const BLAST_FRAMES: u32 = 1_000_000;
/// Traffic per paced probe.
const PROBE_SECS: f64 = 0.3;
/// A probe passes when at least this share of its frames reaches the sink.
const DELIVERED_OK: f64 = 0.99;
/// The ramp's step and the bisection's stopping width (ratios of rates).
const RAMP: f64 = 1.25;
const RESOLUTION: f64 = 1.02;
/// Below this rate a director that still loses frames is broken.
const MIN_RATE: f64 = 10_000.0;
/// A capacity within this share of the generator's top rate is the
/// generator's limit as much as the director's.
const GEN_LIMITED: f64 = 0.95;
/// Each director is measured this many times, in turn; its figures are
/// its best round's, as other processes' load can only cost frames and
/// comes and goes (a build, another test) for seconds at a time.
const ROUNDS: usize = 2;
/// Frames per kernel batch (the kernel's default): the director's ring
/// gets them a batch at a time, and each batch wakes its NAPI thread;
/// smaller batches cost the director more wake-ups (at 4, the floor's
/// blast delivered half as much).
const LIVE_BATCH: u32 = 64;

/// Runs a command; panics with its stderr when it fails.
fn sh(args: &[&str]) {
    netns::run(args[0], &args[1..]).unwrap_or_else(|e| panic!("{e:#}"));
}

fn ipn(ns: &str, args: &[&str]) {
    netns::ip_in(ns, args).unwrap_or_else(|e| panic!("{e:#}"));
}

/// Namespaces that go away on drop.
struct Namespaces(Vec<String>);

impl Namespaces {
    fn new(names: &[String]) -> Self {
        for n in names {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
            sh(&["ip", "netns", "add", n]);
            ipn(n, &["link", "set", "lo", "up"]);
            // The sink counts every frame: no IPv6 chatter (DAD, MLD).
            sysctl(n, "net.ipv6.conf.all.disable_ipv6", "1");
            sysctl(n, "net.ipv6.conf.default.disable_ipv6", "1");
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
        ipn(a_ns, &["link", "set", a, "address", &format_mac(m)]);
    }
    if let Some(m) = b_mac {
        ipn(b_ns, &["link", "set", b, "address", &format_mac(m)]);
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
    for addr in [DIRECTOR_CLIENT_ADDR, DIRECTOR_BACKEND_ADDR] {
        ipn(ns, &["addr", "add", &format!("{addr}/24"), "dev", ifname]);
    }
    ipn(
        ns,
        &[
            "neigh",
            "replace",
            &BACKEND.to_string(),
            "lladdr",
            &format_mac(backend_mac),
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
            &format_mac(&GEN_MAC),
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

/// The director's interface: named after the run, because its NAPI
/// thread is found by name (`napi/<ifname>-<id>`) among all the host's.
fn director_if(p: &str) -> String {
    format!("{p}d")
}

/// Moves the director's receive processing to DIR_CPU: its veth's NAPI
/// instance gets a kernel thread of its own. veth has a NAPI instance with
/// XDP or with GRO on, and passes it skbs only from a peer without TSO
/// (attaching XDP turns the peer's off; nftables needs it done here);
/// otherwise the sender's CPU processes them, as it does its own softirqs.
fn director_on_own_cpu(ns: &str, ifname: &str, peer_ns: &str, peer: &str) {
    ethtool(ns, ifname, "gro", "on");
    ethtool(peer_ns, peer, "tso", "off");
    sh(&[
        "ip",
        "netns",
        "exec",
        ns,
        "sh",
        "-c",
        &format!("echo 1 > /sys/class/net/{ifname}/threaded"),
    ]);
    let threads = napi_threads(ifname);
    assert_eq!(threads.len(), 1, "NAPI threads of {ifname}: {threads:?}");
    dedicate(threads[0], DIR_CPU);
}

fn ethtool(ns: &str, ifname: &str, feature: &str, value: &str) {
    sh(&[
        "ip", "netns", "exec", ns, "ethtool", "-K", ifname, feature, value,
    ]);
}

fn napi_threads(ifname: &str) -> Vec<i32> {
    let prefix = format!("napi/{ifname}-");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.starts_with(&prefix))
        })
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// Pins thread `tid` (0: the calling thread) to `cpu` at real-time
/// priority. Other work on this shared machine (builds, tests) would
/// otherwise take the CPU for a scheduler slice of milliseconds: the
/// director's 256-frame veth ring overflows in far less, and a preempted
/// generator catches up with a burst. The kernel still leaves 5% of each
/// CPU to everyone else (sched_rt_runtime_us).
fn dedicate(tid: i32, cpu: usize) {
    // SAFETY: an all-zero cpu_set_t is an empty set; CPU_SET writes within it.
    let set = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        set
    };
    // SAFETY: reads only the set we pass.
    let rc = unsafe { libc::sched_setaffinity(tid, std::mem::size_of_val(&set), &set) };
    assert_eq!(
        rc,
        0,
        "pin thread {tid} to CPU {cpu}: {}",
        std::io::Error::last_os_error()
    );
    let param = libc::sched_param { sched_priority: 50 };
    // SAFETY: reads only the parameters we pass.
    let rc = unsafe { libc::sched_setscheduler(tid, libc::SCHED_FIFO, &param) };
    assert_eq!(
        rc,
        0,
        "SCHED_FIFO for thread {tid}: {}",
        std::io::Error::last_os_error()
    );
}

/// Loads the traffic object and attaches one of its programs natively.
fn attach_bench(ns: &str, ifname: &str, program: &'static str) -> Ebpf {
    attach(ns, ifname, objects::TRAFFIC, program)
}

/// Loads `object` and attaches its `program` natively to `ifname` in `ns`.
fn attach(ns: &str, ifname: &str, object: &'static [u8], program: &'static str) -> Ebpf {
    let ifname = ifname.to_string();
    in_netns(ns, move || {
        let mut ebpf = EbpfLoader::new().load(object).expect("bench object");
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
    /// The floor program (test object), attached while this lives.
    _floor: Option<Ebpf>,
}

fn start_director(ns: &str, ifname: &str, floor: bool) -> RunningDirector {
    let pin = std::path::PathBuf::from(format!("/sys/fs/bpf/ballast-bench/{ns}"));
    let _ = std::fs::remove_dir_all(&pin);
    let (if_s, pin_c) = (ifname.to_string(), pin.clone());
    // Opened and programmed in the director's namespace, as an agent there
    // would be (it keeps the backend's next hop resolved with `ip`).
    let d = in_netns(ns, move || {
        let opts = LoadOptions {
            interface: if floor { None } else { Some(if_s) },
            pin_dir: pin_c,
            ring_slots: 4 * 65537,
            conntrack_entries: None,
            mode: XdpAttachMode::Native,
        };
        let settings = NodeSettings {
            mac: DIR_MAC,
            snat_addrs: vec![SNAT_ADDR],
            ..Default::default()
        };
        let mut d = Director::open(&opts, &settings, 65537).expect("director");
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
        Box::new(d)
    })
    .unwrap();
    let floor = floor.then(|| attach(ns, ifname, objects::TEST_PROGRAMS, "xdp_floor"));
    RunningDirector {
        director: d,
        pin,
        _floor: floor,
    }
}

impl Drop for RunningDirector {
    fn drop(&mut self) {
        // Where the frames went, for the record.
        if let Ok(r) = self.director.maps().reason_counters() {
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
        .ipv4(CLIENT_ADDR.octets(), VIP.octets(), 64)
        .udp(10000, 53);
    let mut v = Vec::new();
    b.write(&mut v, &[0u8; 18]).unwrap();
    v
}

/// traffic.c's `struct gen_pace`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct GenPace {
    interval_ns: u64,
    frames: u64,
    sent: u64,
    first_ns: u64,
    last_ns: u64,
}

// SAFETY: plain integers, no padding.
unsafe impl aya::Pod for GenPace {}

/// One run of the generator.
struct Probe {
    sent: u64,
    /// From the first frame's departure to the last's.
    secs: f64,
    got: u64,
}

impl Probe {
    fn offered(&self) -> f64 {
        self.sent as f64 / self.secs
    }

    fn delivered(&self) -> f64 {
        self.got as f64 / self.secs
    }

    fn share(&self) -> f64 {
        self.got as f64 / self.sent as f64
    }

    fn ok(&self) -> bool {
        self.share() >= DELIVERED_OK
    }

    fn log(&self, what: &str) {
        eprintln!(
            "    {what}: offered {:.3} Mpps, delivered {:.3} Mpps ({:.1}% of {} frames)",
            self.offered() / 1e6,
            self.delivered() / 1e6,
            100.0 * self.share(),
            self.sent
        );
    }
}

/// The live-frames generator and the sink it is measured by. Its runs
/// must happen in the generator's namespace: the kernel resolves the
/// sending interface there.
struct Generator {
    ebpf: Ebpf,
    frame: Vec<u8>,
    /// `struct xdp_md`: data_end = frame length, ingress_ifindex = the veth.
    ctx: [u8; 24],
    sink: Ebpf,
}

impl Generator {
    fn load(gen_if: &str, sink: Ebpf) -> Self {
        let mut ebpf = EbpfLoader::new()
            .load(objects::TRAFFIC)
            .expect("traffic object");
        let p: &mut Xdp = ebpf.program_mut("xdp_gen").unwrap().try_into().unwrap();
        p.load().unwrap();
        let frame = frame();
        let mut template: Array<_, [u8; 48]> =
            Array::try_from(ebpf.map_mut("gen_template").unwrap()).unwrap();
        let mut hdr = [0u8; 48];
        hdr[..42].copy_from_slice(&frame[..42]);
        template.set(0, hdr, 0).unwrap();
        let name = std::ffi::CString::new(gen_if).unwrap();
        // SAFETY: `name` is a valid C string.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        assert_ne!(ifindex, 0, "no interface {gen_if}");
        let mut ctx = [0u8; 24];
        ctx[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
        ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
        Self {
            ebpf,
            frame,
            ctx,
            sink,
        }
    }

    /// Sends `frames` frames, evenly spaced at `rate` frames/s or (None)
    /// as fast as it can, in one syscall: see traffic.c's `gen_pace`.
    fn run(&mut self, frames: u32, rate: Option<f64>) -> Probe {
        self.set_pace(GenPace {
            interval_ns: rate.map_or(0, |r| (1e9 / r).round() as u64),
            frames: frames.into(),
            ..Default::default()
        });
        let before = self.settled_sink_count();
        let p: &mut Xdp = self
            .ebpf
            .program_mut("xdp_gen")
            .unwrap()
            .try_into()
            .unwrap();
        p.test_run(TestRunOptions {
            data_in: Some(&self.frame),
            ctx_in: Some(&self.ctx),
            repeat: frames,
            attrs: TestRunAttrs::new().xdp_live_frames(LIVE_BATCH),
            ..Default::default()
        })
        .expect("live frames");
        let got = self.settled_sink_count() - before;
        let pace = self.pace();
        assert_eq!(pace.sent, u64::from(frames));
        Probe {
            sent: pace.sent,
            secs: (pace.last_ns - pace.first_ns) as f64 / 1e9,
            got,
        }
    }

    /// A paced run of PROBE_SECS at `rate`.
    fn probe(&mut self, rate: f64) -> Probe {
        self.run((rate * PROBE_SECS) as u32, Some(rate))
    }

    fn set_pace(&mut self, pace: GenPace) {
        let mut m: Array<_, GenPace> =
            Array::try_from(self.ebpf.map_mut("gen_pace").unwrap()).unwrap();
        m.set(0, pace, 0).unwrap();
    }

    fn pace(&self) -> GenPace {
        let m: Array<_, GenPace> = Array::try_from(self.ebpf.map("gen_pace").unwrap()).unwrap();
        m.get(&0, 0).unwrap()
    }

    /// The sink's count once frames in flight have landed.
    fn settled_sink_count(&self) -> u64 {
        let mut last = self.sink_count();
        loop {
            std::thread::sleep(Duration::from_millis(20));
            let now = self.sink_count();
            if now == last {
                return now;
            }
            last = now;
        }
    }

    fn sink_count(&self) -> u64 {
        let m: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.sink.map("sink_count").unwrap()).unwrap();
        m.get(&0, 0).unwrap().iter().sum()
    }
}

/// A director's rate in frames/s; only a lower bound when it delivered
/// (nearly) all the generator could offer: then the generator may be what
/// limits it.
#[derive(Clone, Copy)]
struct Figure {
    rate: f64,
    lower_bound: bool,
}

impl Figure {
    fn show(&self) -> String {
        let bound = if self.lower_bound { ">=" } else { "" };
        format!("{bound:>2} {:6.3}", self.rate / 1e6)
    }
}

/// What the director delivered under overload.
fn blast_figure(blast: &Probe) -> Figure {
    Figure {
        rate: blast.delivered(),
        lower_bound: blast.ok(),
    }
}

/// The highest offered rate at which the director delivers DELIVERED_OK,
/// by paced probes. The blast's delivered rate is the first guess (close,
/// with the director on its own CPU); a ramp by RAMP brackets the
/// capacity, a bisection narrows the bracket to RESOLUTION.
fn capacity(g: &mut Generator, blast: &Probe) -> Figure {
    let top = blast.offered();
    if blast.ok() {
        return blast_figure(blast);
    }
    let mut best = 0.0f64;
    let mut passes = |g: &mut Generator, rate: f64| match sustained(g, rate) {
        Some(offered) => {
            best = best.max(offered);
            true
        }
        None => false,
    };
    // Target rates: `lo` passed, `hi` failed (the blast did).
    let (mut lo, mut hi) = (None, top);
    let mut rate = blast.delivered().min(top / RAMP);
    loop {
        assert!(
            rate >= MIN_RATE,
            "the director loses frames even at {rate:.0} fps"
        );
        if passes(g, rate) {
            lo = Some(rate);
            if rate * RAMP >= hi {
                break;
            }
            rate *= RAMP;
        } else {
            hi = rate;
            if lo.is_some() {
                break;
            }
            rate /= RAMP;
        }
    }
    let mut lo = lo.unwrap();
    while hi / lo > RESOLUTION {
        let mid = (lo * hi).sqrt();
        if passes(g, mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Figure {
        rate: best,
        lower_bound: best >= GEN_LIMITED * top,
    }
}

/// Probes at `rate` and returns the offered rate if the director delivered
/// enough. A failure is tried once more: load from other processes can
/// only cost frames, so a pass is the better evidence.
fn sustained(g: &mut Generator, rate: f64) -> Option<f64> {
    for _ in 0..2 {
        let p = g.probe(rate);
        p.log(&format!("paced at {:.3} Mpps", rate / 1e6));
        if p.ok() {
            return Some(p.offered());
        }
    }
    None
}

struct Measurement {
    blast: Probe,
    capacity: Figure,
}

/// The blast, then the capacity search, from a thread in the generator's
/// namespace pinned to GEN_CPU.
fn measure(gen_ns: &str, gen_if: &str, sink: Ebpf) -> Measurement {
    let gen_if = gen_if.to_string();
    in_netns(gen_ns, move || {
        dedicate(0, GEN_CPU);
        let mut g = Generator::load(&gen_if, sink);
        let blast = g.run(BLAST_FRAMES, None);
        blast.log("blast");
        let capacity = capacity(&mut g, &blast);
        Measurement { blast, capacity }
    })
    .unwrap()
}

/// generator veth <-> director veth; the sink is the generator's own veth.
fn xdp_path(p: &str, floor: bool) -> Measurement {
    let (g, d, dif) = (format!("{p}-g"), format!("{p}-d"), director_if(p));
    let _ns = Namespaces::new(&[g.clone(), d.clone()]);
    veth(&g, "g0", Some(&GEN_MAC), &d, &dif, Some(&DIR_MAC));
    director_addresses(&d, &dif, &GEN_MAC);
    let sink = attach_bench(&g, "g0", "xdp_sink");
    let _dir = start_director(&d, &dif, floor);
    director_on_own_cpu(&d, &dif, &g, "g0");
    measure(&g, "g0", sink)
}

/// generator -> bridge -> director -> bridge -> sink.
fn skb_path(p: &str, ballast: bool) -> Measurement {
    let (g, b, d, s) = (
        format!("{p}-g"),
        format!("{p}-b"),
        format!("{p}-d"),
        format!("{p}-s"),
    );
    let dif = director_if(p);
    let _ns = Namespaces::new(&[g.clone(), b.clone(), d.clone(), s.clone()]);
    ipn(&b, &["link", "add", "br0", "type", "bridge"]);
    ipn(&b, &["link", "set", "br0", "up"]);
    veth(&g, "g0", Some(&GEN_MAC), &b, "bg", None);
    veth(&d, &dif, Some(&DIR_MAC), &b, "bd", None);
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
    director_addresses(&d, &dif, &SINK_MAC);
    ipn(&s, &["addr", "add", "198.51.100.11/24", "dev", "s0"]);
    let sink = attach_bench(&s, "s0", "xdp_sink");
    let _dir = if ballast {
        Some(start_director(&d, &dif, false))
    } else {
        nftables_director(p, &d);
        None
    };
    director_on_own_cpu(&d, &dif, &b, "bd");
    measure(&g, "g0", sink)
}

fn nftables_director(p: &str, ns: &str) {
    let rules = format!(
        "table ip lb {{\n chain pre {{\n  type nat hook prerouting priority dstnat;\n  ip daddr {VIP} udp dport 53 dnat to {BACKEND}:5353\n }}\n chain post {{\n  type nat hook postrouting priority srcnat;\n  ip daddr {BACKEND} snat to {SNAT_ADDR}\n }}\n}}\n"
    );
    let path = std::env::temp_dir().join(format!("{p}.nft"));
    std::fs::write(&path, rules).unwrap();
    sh(&[
        "ip",
        "netns",
        "exec",
        ns,
        "nft",
        "-f",
        path.to_str().unwrap(),
    ]);
    let _ = std::fs::remove_file(path);
}

/// Builds one director's topology (namespaces named after the prefix it
/// takes), measures it and tears it down.
type Setup = fn(&str) -> Measurement;

/// A director's rounds.
struct Rounds(Vec<Measurement>);

impl Rounds {
    fn capacity(&self) -> Figure {
        self.0
            .iter()
            .map(|m| m.capacity)
            .max_by(|a, b| a.rate.total_cmp(&b.rate))
            .unwrap()
    }

    fn blast(&self) -> &Probe {
        self.0
            .iter()
            .map(|m| &m.blast)
            .max_by(|a, b| a.delivered().total_cmp(&b.delivered()))
            .unwrap()
    }

    fn row(&self, name: &str) {
        let each: Vec<_> = self
            .0
            .iter()
            .map(|m| format!("{:.3}", m.capacity.rate / 1e6))
            .collect();
        let blast = self.blast();
        println!(
            "  {name:<30} {} {:<16} {:6.3} / {}",
            self.capacity().show(),
            format!("({})", each.join(", ")),
            blast.offered() / 1e6,
            blast_figure(blast).show()
        );
    }
}

/// `a / b`, marked as a bound when one side is only a lower bound.
fn ratio(a: Figure, b: Figure) -> String {
    let r = a.rate / b.rate;
    match (a.lower_bound, b.lower_bound) {
        (false, false) => format!("   {r:5.2}"),
        (true, false) => format!(">= {r:5.2}"),
        (false, true) => format!("<= {r:5.2}"),
        (true, true) => format!(" ? {r:5.2}"),
    }
}

fn ratio_row(name: &str, a: &Rounds, b: &Rounds, note: &str) {
    println!(
        "  {name:<32} {:<14} {:<8}   {note}",
        ratio(a.capacity(), b.capacity()),
        ratio(blast_figure(a.blast()), blast_figure(b.blast()))
    );
}

fn main() {
    require_root("the forwarding benchmark builds namespaces and attaches XDP");
    let p = format!("bfw{}", std::process::id() % 1000);
    let directors: [(&str, Setup); 4] = [
        ("xdp path, floor (MAC swap)", |p| xdp_path(p, true)),
        ("xdp path, Ballast FullNAT", |p| xdp_path(p, false)),
        ("skb path, nftables DNAT+SNAT", |p| skb_path(p, false)),
        ("skb path, Ballast FullNAT", |p| skb_path(p, true)),
    ];
    let mut rounds: Vec<_> = directors.iter().map(|_| Rounds(Vec::new())).collect();
    for round in 1..=ROUNDS {
        for ((name, measure), r) in directors.iter().zip(&mut rounds) {
            eprintln!("{name}, round {round}");
            r.0.push(measure(&p));
        }
    }

    println!(
        "64-byte UDP frames, 20k flows in rotation; generator on CPU {GEN_CPU}, director on CPU {DIR_CPU}"
    );
    println!(
        "capacity: highest offered rate with >= {:.0}% delivered ({PROBE_SECS} s paced probes)",
        DELIVERED_OK * 100.0
    );
    println!("blast: {BLAST_FRAMES} frames as fast as the generator goes, offered / delivered");
    println!(
        "  {:<30} {:<26} blast Mpps",
        format!("best of {ROUNDS} rounds"),
        "capacity Mpps (rounds)"
    );
    for ((name, _), r) in directors.iter().zip(&rounds) {
        r.row(name);
    }
    println!("  >=: delivered (nearly) all the generator offered, a lower bound");
    let [floor, ballast, nft, ballast_skb] = &rounds[..] else {
        unreachable!()
    };
    println!("  {:<32} {:<14} blast", "ratios", "capacity");
    ratio_row(
        "Ballast (xdp) / nftables (skb)",
        ballast,
        nft,
        "target >= 3 on capacity",
    );
    ratio_row("Ballast (skb) / nftables (skb)", ballast_skb, nft, "");
    ratio_row("Ballast (xdp) / floor (xdp)", ballast, floor, "");
    println!("  ?: both sides are lower bounds, no bound on the ratio");
}

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

mod generator;
mod search;
mod topology;

use generator::*;
use search::*;
use topology::*;

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

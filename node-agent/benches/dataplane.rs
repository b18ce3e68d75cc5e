//! ns/packet of the director under BPF_PROG_TEST_RUN, as ratios against a
//! floor program measured in the same run (parse + MAC swap + XDP_TX):
//!   (a) floor, (b) FullNAT established flow, (c) FullNAT new flow (SYN),
//!   (d) (b) with 100k services and 1M conntrack entries loaded.
//! Targets: (b)/(a) <= 1.8, (c)/(a) <= 3, (d)/(b) <= 1.1.
//! Run as root: `cargo bench -p ballast-agent --bench dataplane`.
//!
//! Steady state is timed in the kernel's own loop (`repeat`). That loop
//! reruns a program on the frame its previous run rewrote, so each program
//! runs behind a wrapper (ballast.c, built with -DBALLAST_BENCH) that first
//! restores the frame from a copy appended to it; the wrappers share the
//! director's pinned maps, so they see what the agent programmed. Every
//! figure pays the same restore, which `bench_pass` (restore + XDP_PASS)
//! measures and the "net" column subtracts. The cold figures (one packet
//! per syscall, so the director's maps are out of cache) come last.
//! Packets/s against nftables: the `forwarding` bench.
#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use std::net::Ipv4Addr;

use aya::programs::Xdp;
use aya::{Ebpf, EbpfLoader};
use ballast_agent::abi::{self, CtValue, FlowKey};

static BENCH_DIRECTOR: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ballast-bench.bpf.o"));

/// Bytes the wrappers restore (ballast.c's BENCH_HDR).
const BENCH_HDR: usize = 64;
const REPEAT: u32 = 2_000_000;
/// New flows per figure: enough to overflow the lab's 64k-entry conntrack,
/// so the figure includes LRU eviction, as under a real SYN flood.
const NEW_FLOWS: u32 = 200_000;
const SINGLE_SHOTS: u16 = 20_000;

/// The benchmark wrappers, sharing the lab's pinned, programmed maps.
struct Wrappers(Ebpf);

impl Wrappers {
    fn load(lab: &PacketLab, ring_slots: u32, conntrack: u32) -> Self {
        let mut loader = EbpfLoader::new();
        loader
            .default_map_pin_directory(&lab.pin_dir)
            .map_max_entries("ring", ring_slots)
            .map_max_entries("conntrack", conntrack)
            .map_max_entries("nat_reverse", conntrack);
        let mut ebpf = loader.load(BENCH_DIRECTOR).expect("load the bench object");
        for name in [
            "bench_pass",
            "bench_floor",
            "bench_director",
            "bench_director_new_flow",
        ] {
            let p: &mut Xdp = ebpf.program_mut(name).unwrap().try_into().unwrap();
            p.load().unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        Wrappers(ebpf)
    }

    fn prog(&self, name: &str) -> &Xdp {
        self.0.program(name).unwrap().try_into().unwrap()
    }

    /// Mean ns per run of `name` on `frame`, timed in the kernel's loop.
    fn ns(&self, name: &str, frame: &[u8], ifindex: u32, repeat: u32) -> f64 {
        let framed = with_saved_header(frame);
        let (r, _) = test_run(self.prog(name), &framed, ifindex, repeat);
        assert_ne!(r.return_value, XDP_ABORTED, "{name}: the wrapper failed");
        r.duration.as_nanos() as f64
    }
}

/// `frame` with a copy of its first BENCH_HDR bytes appended, which the
/// wrappers copy back before every run (trailing bytes past the IP length
/// are Ethernet padding to the director).
fn with_saved_header(frame: &[u8]) -> Vec<u8> {
    assert!(
        frame.len() >= BENCH_HDR,
        "frame shorter than the saved header"
    );
    let mut f = frame.to_vec();
    f.extend_from_slice(&frame[..BENCH_HDR]);
    f
}

/// Mean kernel-measured ns over one run each of many frames.
fn single_shot_ns(prog: &Xdp, frames: &[Vec<u8>], ifindex: u32) -> f64 {
    let total: u128 = frames
        .iter()
        .map(|f| test_run(prog, f, ifindex, 1).0.duration.as_nanos())
        .sum();
    total as f64 / frames.len() as f64
}

fn syns(base: u16, n: u16, src: Ipv4Addr) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| tcp_frame((src, base.wrapping_add(i)), (VIP, 80), TCP_SYN, &[], b""))
        .collect()
}

fn new_flows(lab: &PacketLab) -> u64 {
    lab.director
        .dp
        .maps
        .service_counters([0u32].into_iter())
        .unwrap()[&0]
        .new_flows
}

fn main() {
    if !is_root() {
        eprintln!("the data plane benchmark needs root (BPF_PROG_TEST_RUN)");
        return;
    }
    in_private_netns(|ifindex| {
        let established = tcp_frame((CLIENT, 40000), (VIP, 80), TCP_ACK, &[], &[0u8; 64]);
        // A SYN long enough to carry the saved header (a SYN may carry data).
        let syn = tcp_frame(
            (Ipv4Addr::new(10, 0, 0, 0), 40000),
            (VIP, 80),
            TCP_SYN,
            &[],
            &[0u8; 16],
        );
        let n = SINGLE_SHOTS as usize;

        let (ring_slots, conntrack) = (4 * 65537, 65_536);
        let mut l = PacketLab::with_conntrack(ifindex, settings(), 65537, ring_slots, conntrack);
        l.apply(&[svc(MODE_FULLNAT, 6, 80, 8080, &[(1, 1), (2, 1), (3, 1)])]);
        let (v, _) = l.run(&tcp_frame((CLIENT, 40000), (VIP, 80), TCP_SYN, &[], b""));
        assert_eq!(v, XDP_TX);
        let w = Wrappers::load(&l, ring_slots, conntrack);

        let pass = w.ns("bench_pass", &established, ifindex, REPEAT);
        let floor = w.ns("bench_floor", &established, ifindex, REPEAT);
        let flows_before = new_flows(&l);
        let est = w.ns("bench_director", &established, ifindex, REPEAT);
        assert_eq!(
            new_flows(&l),
            flows_before,
            "(b) stayed on the established path"
        );
        let new = w.ns("bench_director_new_flow", &syn, ifindex, NEW_FLOWS);
        assert_eq!(
            new_flows(&l),
            flows_before + u64::from(NEW_FLOWS),
            "(c): every run took the new-flow path"
        );

        // Cold: one packet per syscall.
        let cold_pass = single_shot_ns(
            l.director.dp.aux_program("xdp_pass").unwrap(),
            &vec![established.clone(); n],
            ifindex,
        );
        let cold_floor = single_shot_ns(
            l.director.dp.aux_program("xdp_floor").unwrap(),
            &vec![established.clone(); n],
            ifindex,
        );
        let prog = l.director.dp.program().unwrap();
        let cold_est = single_shot_ns(prog, &vec![established.clone(); n], ifindex);
        let cold_new = single_shot_ns(
            prog,
            &syns(1024, SINGLE_SHOTS, Ipv4Addr::new(192, 0, 2, 77)),
            ifindex,
        );
        drop(w);
        drop(l);

        // (d): 100k services (Maglev 13 slots each) and a full conntrack.
        let (big_ring, big_ct) = (100_001 * 13, 1 << 20);
        let mut big = PacketLab::with_conntrack(ifindex, settings(), 13, big_ring, big_ct);
        let mut svcs = vec![svc(MODE_FULLNAT, 6, 80, 8080, &[(1, 1), (2, 1), (3, 1)])];
        for i in 1..100_000u32 {
            let mut s = svc(
                MODE_FULLNAT,
                6,
                1 + (i % 60_000) as u16,
                8080,
                &[(1, 1), (2, 1)],
            );
            s.vip = Ipv4Addr::new(203, 0, 113, 100 + (i / 60_000) as u8);
            s.name = format!("bench/svc{i}");
            svcs.push(s);
        }
        let t = std::time::Instant::now();
        big.apply(&svcs);
        let programmed = t.elapsed();
        svcs[1].backends[0].weight = 0;
        let t = std::time::Instant::now();
        big.apply(&svcs);
        let replanned = t.elapsed();
        let t = std::time::Instant::now();
        {
            let mut ct = big.director.dp.maps.conntrack().unwrap();
            for i in 0..1_000_000u32 {
                let k = FlowKey {
                    saddr: abi::be_addr(Ipv4Addr::from(0x0a00_0000 + i)),
                    daddr: abi::be_addr(VIP),
                    sport: 1234u16.to_be(),
                    dport: 80u16.to_be(),
                    proto: 6,
                    pad: [0; 3],
                };
                let v = CtValue {
                    last_seen_ns: u64::MAX / 2,
                    ..Default::default()
                };
                let _ = ct.insert(k, v, 0);
            }
        }
        let filled = t.elapsed();
        // Opened after the fill so that the LRU keeps it.
        big.run(&tcp_frame((CLIENT, 40000), (VIP, 80), TCP_SYN, &[], b""));
        let big_w = Wrappers::load(&big, big_ring, big_ct);
        let loaded = big_w.ns("bench_director", &established, ifindex, REPEAT);
        let cold_loaded = single_shot_ns(
            big.director.dp.program().unwrap(),
            &vec![established.clone(); n],
            ifindex,
        );

        let net = |x: f64| x - pass;
        println!(
            "setup: programmed 100k services in {programmed:?}, re-planned with one backend drained in {replanned:?}, inserted 1M conntrack entries in {filled:?}"
        );
        println!(
            "steady state: kernel-timed mean ns/packet over {REPEAT} runs ((c): {NEW_FLOWS} new flows)"
        );
        println!("                                        with restore     net");
        println!("  restore + XDP_PASS (subtracted)        {pass:8.1}");
        println!(
            "  (a) floor (parse + MAC swap + TX)      {floor:8.1}  {:8.1}",
            net(floor)
        );
        println!(
            "  (b) FullNAT established               {est:8.1}  {:8.1}",
            net(est)
        );
        println!(
            "  (c) FullNAT new flow (SYN)            {new:8.1}  {:8.1}",
            net(new)
        );
        println!(
            "  (d) (b), 100k services + 1M flows     {loaded:8.1}  {:8.1}",
            net(loaded)
        );
        println!(
            "  ratios, net:   (b)/(a) = {:.2} (target <= 1.8)   (c)/(a) = {:.2} (target <= 3)   (d)/(b) = {:.2} (target <= 1.1)",
            net(est) / net(floor),
            net(new) / net(floor),
            net(loaded) / net(est)
        );
        println!(
            "  ratios, gross: (b)/(a) = {:.2}   (c)/(a) = {:.2}   (d)/(b) = {:.2}",
            est / floor,
            new / floor,
            loaded / est
        );
        let cnet = |x: f64| x - cold_pass;
        println!(
            "cold: one packet per syscall, mean of {n}, net of an XDP_PASS run ({cold_pass:.1})"
        );
        println!(
            "  (a) {:7.1}   (b) {:7.1}   (c) {:7.1}   (d) {:7.1}",
            cnet(cold_floor),
            cnet(cold_est),
            cnet(cold_new),
            cnet(cold_loaded)
        );
        println!(
            "  ratios: (b)/(a) = {:.2}   (c)/(a) = {:.2}   (d)/(b) = {:.2}",
            cnet(cold_est) / cnet(cold_floor),
            cnet(cold_new) / cnet(cold_floor),
            cnet(cold_loaded) / cnet(cold_est)
        );
    });
}

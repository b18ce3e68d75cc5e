//! ns/packet of the director under BPF_PROG_TEST_RUN, as ratios against a
//! floor program measured in the same run (parse + MAC swap + XDP_TX):
//!   (a) floor, (b) FullNAT established flow, (c) FullNAT new flow (SYN),
//!   (d) (b) with 100k services and 1M conntrack entries loaded.
//! Targets: (b)/(a) <= 1.8, (c)/(a) <= 3, (d)/(b) <= 1.1.
//! Run as root: `cargo bench -p ballast-agent --bench dataplane`.
//! (The packets/s comparison against nftables in a namespace topology is
//! not here yet.)
#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use std::net::Ipv4Addr;

use aya::programs::Xdp;
use ballast_agent::abi::{self, CtValue, FlowKey};

const REPEAT: u32 = 2_000_000;
const SINGLE_SHOTS: u16 = 20_000;

/// Mean ns per run of `frame`, repeated in the kernel (no syscall cost).
fn batch_ns(prog: &Xdp, frame: &[u8], ifindex: u32) -> f64 {
    test_run(prog, frame, ifindex, REPEAT).0.duration.as_nanos() as f64
}

/// Mean kernel-measured ns over one run each of many frames (new flows
/// need a new tuple every time, so repeat cannot be used for them).
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

fn main() {
    if !is_root() {
        eprintln!("the data plane benchmark needs root (BPF_PROG_TEST_RUN)");
        return;
    }
    in_private_netns(|ifindex| {
        let established = tcp_frame((CLIENT, 40000), (VIP, 80), TCP_ACK, &[], &[0u8; 64]);
        let n = SINGLE_SHOTS as usize;

        let mut l = PacketLab::new(ifindex, settings(), 65537, 4 * 65537);
        l.apply(&[
            svc(MODE_FULLNAT, 6, 80, 8080, &[(1, 1), (2, 1), (3, 1)]),
            svc(MODE_DR, 6, 81, 81, &[(1, 1), (2, 1), (3, 1)]),
        ]);
        let (v, _) = l.run(&tcp_frame((CLIENT, 40000), (VIP, 80), TCP_SYN, &[], b""));
        assert_eq!(v, XDP_TX);
        // DR only rewrites MACs, so a repeated run stays on the established
        // path: the one director figure that can be batched (steady state).
        let dr_established = tcp_frame((CLIENT, 40000), (VIP, 81), TCP_ACK, &[], &[0u8; 64]);
        let (v, _) = l.run(&tcp_frame((CLIENT, 40000), (VIP, 81), TCP_SYN, &[], b""));
        assert_eq!(v, XDP_TX);

        let pass = single_shot_ns(
            l.director.dp.aux_program("xdp_pass").unwrap(),
            &vec![established.clone(); n],
            ifindex,
        );
        let floor = single_shot_ns(
            l.director.dp.aux_program("xdp_floor").unwrap(),
            &vec![established.clone(); n],
            ifindex,
        );
        let floor_batch = batch_ns(
            l.director.dp.aux_program("xdp_floor").unwrap(),
            &established,
            ifindex,
        );
        let prog = l.director.dp.program().unwrap();
        let dr_batch = batch_ns(prog, &dr_established, ifindex);
        let est = single_shot_ns(prog, &vec![established.clone(); n], ifindex);
        let new = single_shot_ns(
            prog,
            &syns(1024, SINGLE_SHOTS, Ipv4Addr::new(192, 0, 2, 77)),
            ifindex,
        );
        let flows = l
            .director
            .dp
            .maps
            .service_counters([0u32].into_iter())
            .unwrap()[&0]
            .new_flows;
        assert_eq!(
            flows,
            1 + SINGLE_SHOTS as u64,
            "every SYN took the new-flow path"
        );
        drop(l);

        // (d): 100k services (Maglev 13 slots each) and a full conntrack.
        let mut big = PacketLab::with_conntrack(ifindex, settings(), 13, 100_001 * 13, 1 << 20);
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
        eprintln!("programmed {} services in {:?}", svcs.len(), t.elapsed());
        svcs[1].backends[0].weight = 0;
        let t = std::time::Instant::now();
        big.apply(&svcs);
        eprintln!(
            "re-planned them with one backend drained in {:?}",
            t.elapsed()
        );
        {
            let mut ct = big.director.dp.maps.conntrack().unwrap();
            let t = std::time::Instant::now();
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
            eprintln!("inserted 1M conntrack entries in {:?}", t.elapsed());
        }
        // Opened after the fill so that the LRU keeps it.
        big.run(&tcp_frame((CLIENT, 40000), (VIP, 80), TCP_SYN, &[], b""));
        let loaded = single_shot_ns(
            big.director.dp.program().unwrap(),
            &vec![established.clone(); n],
            ifindex,
        );

        // BPF_PROG_TEST_RUN's repeat runs the program again on the packet it
        // already rewrote, so only idempotent programs can be batched. Every
        // figure is therefore the kernel-timed mean of one run per syscall;
        // `net` subtracts the same measurement of an XDP_PASS-only program
        // (timer reads, context setup), which is in every figure alike.
        let net = |x: f64| x - pass;
        println!("BPF_PROG_TEST_RUN, kernel-timed ns/packet, mean of {n} runs of one packet each");
        println!("  XDP_PASS only (overhead)             {pass:7.1}");
        println!(
            "  (a) floor (parse + MAC swap + TX)     {floor:7.1}   net {:7.1}   (batched floor: {floor_batch:.1})",
            net(floor)
        );
        println!(
            "  (b) FullNAT established              {est:7.1}   net {:7.1}",
            net(est)
        );
        println!(
            "  (c) FullNAT new flow (SYN)           {new:7.1}   net {:7.1}",
            net(new)
        );
        println!(
            "  (d) (b), 100k services + 1M flows    {loaded:7.1}   net {:7.1}",
            net(loaded)
        );
        println!("steady state (repeat {REPEAT}, idempotent programs only):");
        println!(
            "  (a) floor {floor_batch:7.1}   DR established {dr_batch:7.1}   ratio {:.2}",
            dr_batch / floor_batch
        );
        println!("ratios (net, one run per syscall: caches cold for the director's maps):");
        println!("  (b)/(a) = {:.2}  (target <= 1.8)", net(est) / net(floor));
        println!("  (c)/(a) = {:.2}  (target <= 3)", net(new) / net(floor));
        println!("  (d)/(b) = {:.2}  (target <= 1.1)", net(loaded) / net(est));
    });
}

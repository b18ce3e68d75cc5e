//! The conntrack sweeper against real flows: flows created by the director
//! program under BPF_PROG_TEST_RUN (PacketLab), some of them aged from user
//! space, plus entries written from user space; a sweep must delete exactly
//! the expired entries of conntrack (both directions) and persist, and the
//! live flows must keep forwarding as before; and the race-checked delete,
//! with the data plane changing entries between the sweep's read and its
//! delete.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ballast_agent::abi::{self, CtValue, FlowKey, PersistKey, PersistValue, SvcKey};
use ballast_agent::dataplane::sweeper::{
    self, Pacer, SweepOptions, SweepReport, TableSweep, Verdict,
};
use ballast_testbed::frames::*;
use ballast_testbed::packet::*;
use ballast_testbed::require_root;
use ballast_testbed::world::*;

// Short timeouts, so that "old" stays well within the machine's uptime.
const SYN_S: u32 = 20;
const ESTABLISHED_S: u32 = 30;
const CLOSING_S: u32 = 5;
const UDP_S: u32 = 10;
const PERSIST_S: u32 = 30;

const NEEDS_ROOT: &str = "the sweeper tests load BPF programs and make network namespaces";

fn lab_settings() -> ballast_agent::dataplane::NodeSettings {
    let mut s = settings();
    s.tcp_syn_timeout_s = SYN_S;
    s.tcp_established_timeout_s = ESTABLISHED_S;
    s.tcp_closing_timeout_s = CLOSING_S;
    s.udp_timeout_s = UDP_S;
    s
}

fn key(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), proto: u8) -> FlowKey {
    FlowKey {
        saddr: abi::be_addr(src.0),
        daddr: abi::be_addr(dst.0),
        sport: abi::be_port(src.1),
        dport: abi::be_port(dst.1),
        proto,
        pad: [0; 3],
    }
}

fn pkey(svc_id: u32, client: Ipv4Addr) -> PersistKey {
    PersistKey {
        svc_id,
        client_addr: abi::be_addr(client),
    }
}

fn ct(l: &mut PacketLab, k: &FlowKey) -> Option<CtValue> {
    l.director.maps_mut().conntrack().unwrap().get(k, 0).ok()
}

/// A reply entry (the conntrack entry at a reply-direction key).
fn rev(l: &mut PacketLab, k: &FlowKey) -> Option<CtValue> {
    let v = ct(l, k)?;
    assert_eq!(v.dir, abi::CT_REPLY, "{k:?} is a reply entry");
    Some(v)
}

/// The data plane's clock (jiffies) and one second of it. Jiffies start
/// near 2^32 at boot, so "a minute ago" never goes below zero.
fn now(l: &PacketLab) -> u64 {
    l.director.clock().unwrap().now().unwrap()
}

fn second(l: &PacketLab) -> u64 {
    u64::from(l.director.maps().read_config().unwrap().hz)
}

fn persist(l: &mut PacketLab, k: &PersistKey) -> Option<PersistValue> {
    l.director.maps_mut().persist().unwrap().get(k, 0).ok()
}

/// Rewrites an entry's last_seen to `now - age_s`, as if idle that long.
fn age_ct(l: &mut PacketLab, k: &FlowKey, age_s: u64) {
    let mut v = ct(l, k).expect("conntrack entry to age");
    v.last_seen = now(l) - age_s * second(l);
    l.director
        .maps_mut()
        .conntrack()
        .unwrap()
        .insert(k, v, 0)
        .unwrap();
}

fn age_rev(l: &mut PacketLab, k: &FlowKey, age_s: u64) {
    rev(l, k).expect("reply entry to age");
    age_ct(l, k, age_s);
}

fn sweep(l: &mut PacketLab) -> SweepReport {
    let clock = l.director.clock().unwrap();
    let r = sweeper::sweep(l.director.maps_mut(), &clock, &SweepOptions::unpaced()).expect("sweep");
    assert!(r.complete);
    r
}

fn svc_id(l: &PacketLab, port: u16, proto: u8) -> u32 {
    let k = SvcKey {
        vip: abi::be_addr(VIP),
        port: abi::be_port(port),
        proto,
        pad: 0,
    };
    l.director.programmed().services[&k].id
}

/// Sends a frame that must be forwarded; returns it as it left.
fn forward(l: &mut PacketLab, frame: &[u8]) -> Seen {
    let (v, out) = l.run(frame);
    assert_eq!(v, XDP_TX, "forwarded: {:?}", l.reasons());
    parse(&out)
}

/// The reply-direction key of a forwarded frame: the backend answering to
/// the frame's source (SNAT address for FullNAT, the client for NAT).
fn reply_key(fwd: &Seen, proto: u8) -> FlowKey {
    key(fwd.dst, fwd.src, proto)
}

#[test]
fn sweep_deletes_exactly_the_expired_entries() {
    require_root(NEEDS_ROOT);
    in_private_netns(|ifindex| {
        let mut l = PacketLab::new(ifindex, lab_settings(), 251, 64 * 251);
        let mut dr = svc(MODE_DR, TCP, 82, 82, &[(1, 1), (2, 1), (3, 1)]);
        dr.persist_timeout_s = PERSIST_S;
        l.apply(&[
            svc(MODE_FULLNAT, TCP, 80, 8080, &[(1, 1), (2, 1)]),
            svc(MODE_FULLNAT, UDP, 53, 5353, &[(1, 1)]),
            svc(MODE_NAT, TCP, 81, 8081, &[(3, 1)]),
            dr,
        ]);
        let c = |port| (CLIENT_ADDR, port);

        // --- Real flows through the program.
        // a1: FullNAT TCP, established, live. Its stamp is the program's
        // clock: the sweeper's reading of it must agree.
        let before = now(&l);
        let a1 = forward(&mut l, &tcp_frame(c(40000), (VIP, 80), TCP_SYN, &[], b""));
        let after = now(&l);
        let a1_ct = key(c(40000), (VIP, 80), TCP);
        let stamp = ct(&mut l, &a1_ct).unwrap().last_seen;
        assert!(
            before <= stamp && stamp <= after,
            "program stamp {stamp} outside the sweeper's clock readings {before}..{after}"
        );
        let a1b = forward(&mut l, &tcp_frame(c(40000), (VIP, 80), TCP_ACK, &[], b"x"));
        assert_eq!((a1b.src, a1b.dst), (a1.src, a1.dst));
        // a2: FullNAT TCP, closed (FIN) 8 s ago: past the closing timeout,
        // within the established one. Expired, with its reply entry (the
        // FIN set that one CLOSING too).
        forward(&mut l, &tcp_frame(c(40001), (VIP, 80), TCP_SYN, &[], b""));
        let a2 = forward(
            &mut l,
            &tcp_frame(c(40001), (VIP, 80), TCP_ACK | TCP_FIN, &[], b""),
        );
        let a2_ct = key(c(40001), (VIP, 80), TCP);
        assert_eq!(ct(&mut l, &a2_ct).unwrap().state, abi::CT_CLOSING);
        assert_eq!(
            rev(&mut l, &reply_key(&a2, TCP)).unwrap().state,
            abi::CT_CLOSING
        );
        age_ct(&mut l, &a2_ct, 8);
        age_rev(&mut l, &reply_key(&a2, TCP), 8);
        // a3: FullNAT TCP, established and idle for the same 8 s: live.
        forward(&mut l, &tcp_frame(c(40002), (VIP, 80), TCP_SYN, &[], b""));
        let a3 = forward(&mut l, &tcp_frame(c(40002), (VIP, 80), TCP_ACK, &[], b""));
        let a3_ct = key(c(40002), (VIP, 80), TCP);
        assert_eq!(ct(&mut l, &a3_ct).unwrap().state, abi::CT_ESTABLISHED);
        // The backend's ACK makes the reply entry ESTABLISHED too.
        forward(&mut l, &tcp_frame(a3.dst, a3.src, TCP_ACK, &[], b""));
        assert_eq!(
            rev(&mut l, &reply_key(&a3, TCP)).unwrap().state,
            abi::CT_ESTABLISHED
        );
        age_ct(&mut l, &a3_ct, 8);
        age_rev(&mut l, &reply_key(&a3, TCP), 8);
        // u1: FullNAT UDP idle past its timeout: expired. u2: fresh.
        let u1 = forward(&mut l, &udp_frame(c(5000), (VIP, 53), b"q"));
        let u1_ct = key(c(5000), (VIP, 53), UDP);
        age_ct(&mut l, &u1_ct, u64::from(UDP_S) + 3);
        age_rev(&mut l, &reply_key(&u1, UDP), u64::from(UDP_S) + 3);
        let u2 = forward(&mut l, &udp_frame(c(5001), (VIP, 53), b"q"));
        let u2_ct = key(c(5001), (VIP, 53), UDP);
        // n1: NAT TCP; the client keeps talking but the backend has been
        // silent for 40 s: the reply entry is stale by its own stamp but held
        // by the live flow (the forward direction refreshes it only once a
        // second, and not at all when its own touch is skipped).
        forward(&mut l, &tcp_frame(c(40010), (VIP, 81), TCP_SYN, &[], b""));
        let n1 = forward(&mut l, &tcp_frame(c(40010), (VIP, 81), TCP_ACK, &[], b""));
        assert_eq!((n1.src, n1.dst), (c(40010), (backend_addr(3), 8081)));
        let n1_ct = key(c(40010), (VIP, 81), TCP);
        age_rev(&mut l, &reply_key(&n1, TCP), 40);
        // n2: NAT TCP, both directions idle past every timeout: expired.
        let n2 = forward(&mut l, &tcp_frame(c(40011), (VIP, 81), TCP_SYN, &[], b""));
        let n2_ct = key(c(40011), (VIP, 81), TCP);
        age_ct(&mut l, &n2_ct, 40);
        age_rev(&mut l, &reply_key(&n2, TCP), 40);
        // p1: DR with persistence: a conntrack and a persist entry, live.
        let dr_id = svc_id(&l, 82, TCP);
        let p1 = forward(&mut l, &tcp_frame(c(40020), (VIP, 82), TCP_SYN, &[], b""));
        let p1_ct = key(c(40020), (VIP, 82), TCP);
        assert!(persist(&mut l, &pkey(dr_id, CLIENT_ADDR)).is_some());

        // --- Entries written from user space.
        let (now, s) = (now(&l), second(&l));
        let x_future = key((Ipv4Addr::new(192, 0, 2, 60), 1000), (VIP, 80), TCP);
        let x_old = key((Ipv4Addr::new(192, 0, 2, 61), 1000), (VIP, 80), TCP);
        {
            let mut m = l.director.maps_mut().conntrack().unwrap();
            // Stamped after the sweep's clock reading: never expired.
            let v = CtValue {
                last_seen: now + 60 * s,
                state: abi::CT_OPEN,
                ..Default::default()
            };
            m.insert(x_future, v, 0).unwrap();
            // A SYN that never went further, a minute ago.
            let v = CtValue {
                last_seen: now - 60 * s,
                state: abi::CT_OPEN,
                ..Default::default()
            };
            m.insert(x_old, v, 0).unwrap();
        }
        let (p_old, p_orphan, p_recent) = (
            pkey(dr_id, Ipv4Addr::new(192, 0, 2, 50)),
            pkey(dr_id + 1000, Ipv4Addr::new(192, 0, 2, 51)),
            pkey(dr_id, Ipv4Addr::new(192, 0, 2, 52)),
        );
        {
            let mut m = l.director.maps_mut().persist().unwrap();
            let pv = |age: u64| PersistValue {
                last_seen: now - age * s,
                backend_id: 0,
                backend_gen: 0,
            };
            m.insert(p_old, pv(u64::from(PERSIST_S) + 5), 0).unwrap();
            // No service has that id: never read, so dead however fresh.
            m.insert(p_orphan, pv(1), 0).unwrap();
            m.insert(p_recent, pv(u64::from(PERSIST_S) - 5), 0).unwrap();
        }

        let r = sweep(&mut l);
        eprintln!("{r:#?}");

        // --- Exactly the expired entries are gone.
        let ct_gone = [a2_ct, u1_ct, n2_ct, x_old];
        let ct_kept = [a1_ct, a3_ct, u2_ct, n1_ct, p1_ct, x_future];
        for k in &ct_gone {
            assert_eq!(ct(&mut l, k), None, "conntrack {k:?} should be swept");
        }
        for k in &ct_kept {
            assert!(ct(&mut l, k).is_some(), "conntrack {k:?} should stay");
        }
        let rev_gone = [
            reply_key(&a2, TCP),
            reply_key(&u1, UDP),
            reply_key(&n2, TCP),
        ];
        let rev_kept = [
            reply_key(&a1, TCP),
            reply_key(&a3, TCP),
            reply_key(&u2, UDP),
            reply_key(&n1, TCP),
        ];
        for k in &rev_gone {
            assert_eq!(ct(&mut l, k), None, "reply entry {k:?} should be swept");
        }
        for k in &rev_kept {
            assert!(rev(&mut l, k).is_some(), "reply entry {k:?} should stay");
        }
        assert_eq!(persist(&mut l, &p_old), None, "expired persist entry");
        assert_eq!(persist(&mut l, &p_orphan), None, "orphaned persist entry");
        assert!(persist(&mut l, &p_recent).is_some());
        assert!(persist(&mut l, &pkey(dr_id, CLIENT_ADDR)).is_some());

        // The report says the same (both directions share the table).
        let all = ct_gone.len() + ct_kept.len() + rev_gone.len() + rev_kept.len();
        let gone = (ct_gone.len() + rev_gone.len()) as u64;
        assert_eq!(r.conntrack.scanned, all as u64);
        assert_eq!(r.conntrack.expired, gone);
        assert_eq!(r.conntrack.deleted, gone);
        assert_eq!(r.conntrack.held, 1, "n1's reply entry");
        assert_eq!((r.persist.scanned, r.persist.deleted), (4, 2));
        let changed = r.conntrack.changed + r.persist.changed;
        assert_eq!(changed, 0);
        assert!(r.elapsed >= r.busy);
        // SNAT ports held: the reply entries of the live FullNAT flows (a1
        // and a3 over TCP, u2 over UDP; a2's and u1's were swept), per SNAT
        // address its busiest destination (backend, port, protocol).
        let mut per_destination = BTreeMap::new();
        for (f, proto) in [(&a1, TCP), (&a3, TCP), (&u2, UDP)] {
            *per_destination.entry((f.src.0, f.dst, proto)).or_insert(0) += 1;
        }
        let mut snat_in_use = BTreeMap::new();
        for ((snat, ..), n) in per_destination {
            let busiest = snat_in_use.entry(snat).or_insert(0);
            *busiest = n.max(*busiest);
        }
        assert_eq!(r.snat_in_use, snat_in_use);

        // --- Live flows forward as before: same backend, same SNAT port.
        let again = forward(&mut l, &tcp_frame(c(40000), (VIP, 80), TCP_ACK, &[], b"y"));
        assert_eq!((again.src, again.dst), (a1.src, a1.dst));
        let back = forward(&mut l, &tcp_frame(a1.dst, a1.src, TCP_ACK, &[], b"z"));
        assert_eq!((back.src, back.dst), ((VIP, 80), c(40000)));
        let again = forward(&mut l, &tcp_frame(c(40002), (VIP, 80), TCP_ACK, &[], b""));
        assert_eq!((again.src, again.dst), (a3.src, a3.dst));
        let again = forward(&mut l, &udp_frame(c(5001), (VIP, 53), b"q"));
        assert_eq!((again.src, again.dst), (u2.src, u2.dst));
        // n1's held reply entry still reverses the backend's answer.
        let back = forward(
            &mut l,
            &tcp_frame((backend_addr(3), 8081), c(40010), TCP_ACK, &[], b"late"),
        );
        assert_eq!((back.src, back.dst), ((VIP, 81), c(40010)));
        // Persistence: another connection of the client, same backend.
        let p2 = forward(&mut l, &tcp_frame(c(40021), (VIP, 82), TCP_SYN, &[], b""));
        assert_eq!(p2.dst_mac, p1.dst_mac);

        // A second sweep finds nothing more to delete.
        let r2 = sweep(&mut l);
        assert_eq!(
            (r2.conntrack.deleted, r2.persist.deleted),
            (0, 0),
            "{r2:#?}"
        );
        // n1's reply entry was refreshed by the backend's late answer.
        assert_eq!(r2.conntrack.held, 0);

        // The occupancy the agent reports is what is left.
        let tables = l.director.maps().flow_tables().unwrap();
        let entries: Vec<_> = tables.iter().map(|t| (t.table, t.entries)).collect();
        // +1 conntrack: p2's connection (DR: no reply entry).
        assert_eq!(
            entries,
            [
                ("conntrack", (ct_kept.len() + rev_kept.len()) as u64 + 1),
                ("persist", 2)
            ]
        );
        assert_eq!(tables[0].capacity, 65_536);
    });
}

#[test]
fn a_swept_snat_port_goes_to_the_next_flow() {
    require_root(NEEDS_ROOT);
    in_private_netns(|ifindex| {
        // One SNAT port: the first flow holds it, the second finds none.
        let mut s = lab_settings();
        s.snat_ports = (20000, 20000);
        let mut l = PacketLab::new(ifindex, s, 251, 64 * 251);
        l.apply(&[svc(MODE_FULLNAT, TCP, 80, 8080, &[(1, 1)])]);
        let x = forward(
            &mut l,
            &tcp_frame((CLIENT_ADDR, 47000), (VIP, 80), TCP_SYN, &[], b""),
        );
        assert_eq!(x.src, (SNAT_ADDR, 20000));
        let y_syn = tcp_frame((CLIENT_ADDR, 47001), (VIP, 80), TCP_SYN, &[], b"");
        assert_eq!(l.run(&y_syn).0, XDP_DROP);
        assert_eq!(l.reasons()[abi::REASON_SNAT_EXHAUSTED as usize], 1);

        // While x is live the sweep leaves its port alone.
        let r = sweep(&mut l);
        assert_eq!(r.conntrack.deleted, 0);
        let port_key = key((backend_addr(1), 8080), (SNAT_ADDR, 20000), TCP);
        assert!(rev(&mut l, &port_key).is_some());

        // x goes quiet past the SYN timeout: both its entries are swept and
        // the port's reservation (its reply key) is free.
        let x_ct = key((CLIENT_ADDR, 47000), (VIP, 80), TCP);
        age_ct(&mut l, &x_ct, u64::from(SYN_S) + 5);
        age_rev(&mut l, &port_key, u64::from(SYN_S) + 5);
        let r = sweep(&mut l);
        assert_eq!(r.conntrack.deleted, 2, "x's forward and reply entries");
        assert_eq!(ct(&mut l, &x_ct), None);
        assert_eq!(ct(&mut l, &port_key), None, "port reservation released");

        // y now gets the port, and replies to it reach y's client.
        let y = forward(&mut l, &y_syn);
        assert_eq!(y.src, (SNAT_ADDR, 20000));
        let owner = rev(&mut l, &port_key).expect("y's reservation");
        assert_eq!(owner.to_dport, abi::be_port(47001));
        let back = forward(
            &mut l,
            &tcp_frame(
                (backend_addr(1), 8080),
                (SNAT_ADDR, 20000),
                TCP_SYN | TCP_ACK,
                &[],
                b"",
            ),
        );
        assert_eq!(back.dst, (CLIENT_ADDR, 47001));
        // x coming back finds the port taken by a live flow.
        let x_again = tcp_frame((CLIENT_ADDR, 47000), (VIP, 80), TCP_ACK, &[], b"");
        assert_eq!(l.run(&x_again).0, XDP_DROP);
        assert_eq!(l.reasons()[abi::REASON_SNAT_EXHAUSTED as usize], 2);
    });
}

/// A million conntrack entries, half of them expired: the sweep deletes
/// exactly those. Prints the time taken, unpaced and paced (timings mean
/// something in release builds). Ignored by default (1M-entry maps, tens of
/// seconds):
/// `cargo test --release -p ballast-agent --test sweeper -- --ignored --nocapture`.
#[test]
#[ignore]
fn sweeps_a_million_entries() {
    require_root(NEEDS_ROOT);
    in_private_netns(|ifindex| {
        // 1M entries in maps of 2^20: the LRU starts evicting before a map
        // is completely full (per-CPU free lists), which would blur the count.
        const N: u32 = 1_000_000;
        // Established flows live 10 minutes, closing ones 5 s: the live
        // half outlasts the paced sweep.
        let mut settings = lab_settings();
        settings.tcp_established_timeout_s = 600;
        let mut l = PacketLab::with_conntrack(ifindex, settings, 251, 64 * 251, 1 << 20);
        let fill = |l: &mut PacketLab| {
            let (now, s) = (now(l), second(l));
            let t = std::time::Instant::now();
            let mut ct = l.director.maps_mut().conntrack().unwrap();
            for i in 0..N {
                let k = FlowKey {
                    saddr: abi::be_addr(Ipv4Addr::from(0x0a00_0000 + i)),
                    daddr: abi::be_addr(VIP),
                    sport: 1234u16.to_be(),
                    dport: 80u16.to_be(),
                    proto: TCP,
                    pad: [0; 3],
                };
                // Even: closed, idle past the closing timeout; odd: fresh.
                let (state, age) = if i % 2 == 0 {
                    (abi::CT_CLOSING, u64::from(CLOSING_S) + 5)
                } else {
                    (abi::CT_ESTABLISHED, 0)
                };
                let v = CtValue {
                    last_seen: now - age * s,
                    state,
                    ..Default::default()
                };
                ct.insert(k, v, 0).unwrap();
            }
            eprintln!("filled {N} conntrack entries in {:?}", t.elapsed());
        };
        fill(&mut l);
        let count = |l: &PacketLab| {
            let t = std::time::Instant::now();
            let n = l.director.maps().flow_tables().unwrap()[0].entries;
            (n, t.elapsed())
        };
        let (n, took) = count(&l);
        assert_eq!(n, u64::from(N));
        eprintln!("counted {n} entries in {took:?}");

        let r = sweep(&mut l);
        eprintln!(
            "unpaced: scanned {} deleted {} in {:?}",
            r.conntrack.scanned, r.conntrack.deleted, r.elapsed
        );
        assert_eq!(r.conntrack.scanned, u64::from(N));
        assert_eq!(r.conntrack.deleted, u64::from(N / 2));
        assert_eq!(count(&l).0, u64::from(N / 2));

        // Again with the agent's default pacing, from a full table.
        fill(&mut l);
        let clock = l.director.clock().unwrap();
        let r = sweeper::sweep(l.director.maps_mut(), &clock, &SweepOptions::default()).unwrap();
        eprintln!(
            "paced (max_cpu {}): scanned {} deleted {} in {:?}, busy {:?}",
            SweepOptions::default().max_cpu,
            r.conntrack.scanned,
            r.conntrack.deleted,
            r.elapsed,
            r.busy
        );
        assert_eq!(r.conntrack.deleted, u64::from(N / 2));
        // Nothing scanned twice or skipped: every live entry is still there.
        assert_eq!(count(&l).0, u64::from(N / 2));
        // The steady state: a table of live flows is only read.
        let r2 = sweep(&mut l);
        eprintln!(
            "unpaced, nothing expired: scanned {} in {:?}",
            r2.conntrack.scanned, r2.elapsed
        );
        assert_eq!(
            (r2.conntrack.scanned, r2.conntrack.deleted),
            (u64::from(N / 2), 0)
        );
        // Paced: at most ~max_cpu of the wall time was work.
        assert!(
            r.busy.as_secs_f64()
                <= r.elapsed.as_secs_f64() * (SweepOptions::default().max_cpu + 0.05),
            "{r:?}"
        );
    });
}

/// The re-read before the delete: entries the data plane refreshed,
/// replaced or deleted after the sweep read them are left alone.
#[test]
fn entries_changed_after_the_read_are_not_deleted() {
    require_root(NEEDS_ROOT);
    in_private_netns(|ifindex| {
        use aya::maps::{HashMap, Map, MapData};
        let mut l = PacketLab::with_conntrack(ifindex, lab_settings(), 251, 251, 1024);
        let clock = l.director.clock().expect("clock");
        let cfg = l.director.maps().read_config().expect("config");
        let s = u64::from(cfg.hz);
        let now = clock.now().expect("now");
        // Closed 100 s ago: expired (closing timeout CLOSING_S).
        let stale = CtValue {
            last_seen: now - 100 * s,
            state: abi::CT_CLOSING,
            backend_id: 1,
            ..Default::default()
        };
        let k = |port: u16| FlowKey {
            saddr: 1,
            daddr: 2,
            sport: port.to_be(),
            dport: 80u16.to_be(),
            proto: TCP,
            pad: [0; 3],
        };
        let (unchanged, refreshed, gone, replaced) = (k(1), k(2), k(3), k(4));
        {
            let mut m = l.director.maps_mut().conntrack().unwrap();
            for key in [unchanged, refreshed, gone, replaced] {
                m.insert(key, stale, 0).unwrap();
            }
        }
        // Another handle on the map plays the data plane, acting between the
        // sweep's read and its delete.
        let mut dp_map =
            Map::from_map_data(MapData::from_pin(l.pin_dir.join("conntrack")).unwrap()).unwrap();
        let mut dp: HashMap<&mut MapData, FlowKey, CtValue> =
            HashMap::try_from(&mut dp_map).unwrap();
        let mut out = TableSweep::default();
        let complete = sweeper::sweep_table::<FlowKey, CtValue>(
            l.director.maps_mut(),
            &clock,
            "conntrack",
            &SweepOptions::unpaced(),
            &mut Pacer::new(1.0),
            &mut out,
            |_, key, v, now| {
                assert!(sweeper::ct_expired(&cfg, TCP, v.state, v.last_seen, now));
                if *key == refreshed {
                    let fresh = CtValue {
                        last_seen: now,
                        ..stale
                    };
                    dp.insert(key, fresh, 0).unwrap();
                } else if *key == gone {
                    dp.remove(key).unwrap();
                } else if *key == replaced {
                    // A new flow on the same tuple (its stamp from a CPU
                    // whose clock read came a tick earlier).
                    let new = CtValue {
                        backend_id: 2,
                        state: abi::CT_OPEN,
                        ..stale
                    };
                    dp.insert(key, new, 0).unwrap();
                }
                Verdict::Expired
            },
        )
        .unwrap();
        assert!(complete);
        assert_eq!(
            (out.scanned, out.expired, out.deleted, out.changed),
            (4, 4, 1, 3),
            "{out:?}"
        );
        let m = l.director.maps_mut().conntrack().unwrap();
        assert!(
            m.get(&unchanged, 0).is_err(),
            "unchanged expired entry deleted"
        );
        assert!(
            m.get(&refreshed, 0).unwrap().last_seen >= now,
            "refreshed entry kept"
        );
        assert!(m.get(&gone, 0).is_err());
        assert_eq!(m.get(&replaced, 0).unwrap().backend_id, 2);
    });
}

//! Table: two plans of a node in, the exact delta out; then the property
//! that applying a delta to the old state gives the new state, over
//! generated plans.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use ballast_proto::v1::Delta;
use ballast_proto::{apply_delta, content_hash, delta_is_empty};

use super::*;
use crate::fixtures::{scale_endpoint_change, scale_world, tcp80_service_plan};
use crate::link::encode::{node_state, object_ref};
use crate::object_key::{Kind, ObjectKey};
use crate::plan::{NodePlan, PlanOptions, Planner, ServicePlan};

fn key(i: usize) -> ObjectKey {
    ObjectKey::new(Kind::VirtualServer, "default", &format!("vs-{i:05}"))
}

fn vip(i: usize) -> IpAddr {
    IpAddr::from([198, 18, (i / 256) as u8, (i % 256) as u8])
}

/// Object `i`: one VIP, port 80/TCP, `backends` backends of weight 1.
fn service_plan(i: usize, backends: u8) -> ServicePlan {
    tcp80_service_plan(
        vip(i),
        (1..=backends).map(|b| IpAddr::from([10, 0, (i % 256) as u8, b])),
    )
}

/// `n` objects, each announced over L2.
fn many(n: usize) -> NodePlan {
    NodePlan {
        services: (0..n)
            .map(|i| (key(i), Arc::new(service_plan(i, 3))))
            .collect(),
        l2_announce: (0..n).map(vip).collect(),
        bgp_announce: BTreeSet::new(),
    }
}

/// (description, edit of `many(100)`, expected delta).
type Case = (&'static str, fn(&mut NodePlan), fn() -> Delta);

const CASES: &[Case] = &[
    ("no change: an empty delta", |_| {}, Delta::default),
    (
        "same content in a new Arc: still empty",
        |p| {
            let copy = ServicePlan::clone(&p.services[&key(5)]);
            p.services.insert(key(5), Arc::new(copy));
        },
        Delta::default,
    ),
    (
        "one endpoint drained among 100: that service only",
        |p| {
            let mut sp = ServicePlan::clone(&p.services[&key(42)]);
            sp.ports[0].backends[1].weight = 0;
            p.services.insert(key(42), Arc::new(sp));
        },
        || {
            let mut sp = service_plan(42, 3);
            sp.ports[0].backends[1].weight = 0;
            Delta {
                upserted: vec![service(&key(42), &sp)],
                ..Delta::default()
            }
        },
    ),
    (
        "an object removed: its key removed, its VIP withdrawn",
        |p| {
            p.services.remove(&key(7));
            p.l2_announce.remove(&vip(7));
        },
        || Delta {
            removed: vec![object_ref(&key(7))],
            l2_removed: vec![vec![198, 18, 0, 7]],
            ..Delta::default()
        },
    ),
    (
        "an object added, another removed, in object order",
        |p| {
            p.services.remove(&key(99));
            p.services.insert(key(100), Arc::new(service_plan(100, 1)));
        },
        || Delta {
            upserted: vec![service(&key(100), &service_plan(100, 1))],
            removed: vec![object_ref(&key(99))],
            ..Delta::default()
        },
    ),
    (
        "announcements: L2 duty moves away, BGP added for an IPv4 and an IPv6 VIP",
        |p| {
            p.l2_announce.remove(&vip(3));
            p.bgp_announce.insert("2001:db8::1".parse().unwrap());
            p.bgp_announce.insert(vip(3));
        },
        || Delta {
            l2_removed: vec![vec![198, 18, 0, 3]],
            bgp_added: vec![
                vec![198, 18, 0, 3],
                vec![0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            ],
            ..Delta::default()
        },
    ),
];

#[test]
fn deltas_carry_exactly_the_change() {
    let old = many(100);
    for (desc, edit, expected) in CASES {
        let mut new = old.clone();
        edit(&mut new);
        let delta = node_delta(&old, &new);
        assert_eq!(delta, expected(), "{desc}");
        // And it takes the old state to the new one.
        let mut state = node_state(1, &old);
        let stamped = Delta {
            version: 2,
            base_version: 1,
            ..delta
        };
        apply_delta(&mut state, &stamped).unwrap_or_else(|e| panic!("{desc}: {e}"));
        assert_eq!(state, node_state(2, &new), "{desc}");
    }
}

/// The planner's incremental endpoint path feeds deltas: one EndpointSlice
/// change among 300 objects upserts that object only, on every node.
#[test]
fn an_endpoint_slice_change_through_the_planner_upserts_one_service() {
    let world = scale_world(300, 4, 3);
    let mut planner = Planner::new(&world, PlanOptions::default());
    let before = planner.plan().clone();
    planner.apply_endpoint_slice(scale_endpoint_change(123, false));
    let after = planner.plan();
    let changed = ObjectKey::new(Kind::VirtualServer, "bench", "app-123");
    assert_eq!(before.nodes.len(), 3);
    for (node, old) in &before.nodes {
        let delta = node_delta(old, &after.nodes[node]);
        let upserted: Vec<_> = delta.upserted.iter().map(|s| s.object.clone()).collect();
        assert_eq!(upserted, [Some(object_ref(&changed))], "{node}");
        let backends: Vec<(Vec<u8>, u32)> = delta.upserted[0].ports[0]
            .backends
            .iter()
            .map(|b| (b.address.clone(), b.weight))
            .collect();
        assert_eq!(
            backends,
            [(vec![10, 0, 123, 1], 0), (vec![10, 255, 255, 1], 1)],
            "{node}"
        );
        assert!(delta.removed.is_empty() && delta.l2_added.is_empty());
        assert!(delta.l2_removed.is_empty() && delta.bgp_added.is_empty());
    }
}

/// A small deterministic generator (xorshift), so failures reproduce.
struct Gen(u64);

impl Gen {
    fn next(&mut self, below: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % below as u64) as usize
    }
}

/// A random plan over objects 0..20: some present, with random backends,
/// ports, options and announcements (IPv4 and IPv6).
fn generated(g: &mut Gen) -> NodePlan {
    let mut p = NodePlan::default();
    for i in 0..20 {
        if g.next(3) == 0 {
            continue;
        }
        let mut sp = service_plan(i, g.next(4) as u8);
        if g.next(2) == 0 {
            sp.vips.push(format!("2001:db8::{i:x}").parse().unwrap());
        }
        for b in &mut sp.ports[0].backends {
            b.weight = g.next(3) as u32;
        }
        sp.persistence_timeout_s = [0, 60][g.next(2)];
        sp.toa = g.next(2) == 0;
        for v in &sp.vips {
            match g.next(3) {
                0 => {}
                1 => {
                    p.l2_announce.insert(*v);
                }
                _ => {
                    p.bgp_announce.insert(*v);
                }
            }
        }
        p.services.insert(key(i), Arc::new(sp));
    }
    p
}

#[test]
fn applying_the_delta_to_the_old_state_gives_the_new_state() {
    let mut g = Gen(0x9e37_79b9_7f4a_7c15);
    let mut nonempty = 0;
    for round in 0..200u64 {
        let (old, new) = (generated(&mut g), generated(&mut g));
        let delta = node_delta(&old, &new);
        nonempty += usize::from(!delta_is_empty(&delta));
        let mut state = node_state(round + 1, &old);
        let stamped = Delta {
            version: round + 2,
            base_version: round + 1,
            ..delta
        };
        apply_delta(&mut state, &stamped).unwrap_or_else(|e| panic!("round {round}: {e}"));
        let expected = node_state(round + 2, &new);
        assert_eq!(state, expected, "round {round}");
        assert_eq!(content_hash(&state), content_hash(&expected));
    }
    assert!(
        nonempty > 190,
        "the generator made real changes: {nonempty}"
    );
}

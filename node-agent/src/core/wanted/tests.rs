//! [`Wanted`] against the whole-version functions it replaces per key:
//! after any sequence of committed changes it holds what lowering the
//! whole state gives, and each change touches exactly the keys that differ.
use std::net::Ipv4Addr;

use ballast_api::HealthCheckSpec;

use super::*;
use crate::core::desired::{Announcements, NodeDesired, Settings};
use crate::core::held::tests::service;
use crate::health::Health;

const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const VIP2: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 11);
const MSS: u16 = 1452;

fn state() -> NodeDesired {
    let mut checked = service("default/api", VIP, 8080);
    checked.health_check = Some(HealthCheckSpec::tcp_defaults());
    NodeDesired {
        version: 1,
        settings: Settings {
            snat_addrs: vec![Ipv4Addr::new(198, 51, 100, 3)],
            snat_ports: (10_000, 65_000),
        },
        services: vec![
            service("default/web", VIP, 80),
            service("default/web", VIP, 443),
            checked,
            service("default/db", VIP2, 5432),
        ],
        announce: Announcements {
            l2: [VIP].into(),
            bgp: Default::default(),
        },
    }
}

/// Held and wanted at `d`, built by one change from nothing.
fn at(d: &NodeDesired) -> (HeldDesired, Wanted) {
    let (mut held, mut wanted) = (HeldDesired::default(), Wanted::default());
    step(&mut held, &mut wanted, d, &Verdicts::default());
    (held, wanted)
}

/// Moves both to `d`; the keys the change touched.
fn step(
    held: &mut HeldDesired,
    wanted: &mut Wanted,
    d: &NodeDesired,
    verdicts: &Verdicts,
) -> BTreeSet<SvcKey> {
    let c = held.diff(d);
    let w = wanted.change(held, &c, MSS, verdicts);
    let keys = w.keys();
    held.commit(c);
    wanted.commit(w);
    keys
}

fn key(vip: Ipv4Addr, port: u16) -> SvcKey {
    SvcKey {
        vip: abi::be_addr(vip),
        port: abi::be_port(port),
        proto: 6,
        pad: 0,
    }
}

/// What the whole-version functions give for `d`, by key.
fn whole(d: &NodeDesired) -> (BTreeMap<SvcKey, DesiredService>, ServiceChecks) {
    let lowered = lower::lower(d, MSS)
        .into_iter()
        .map(|s| (s.key(), s))
        .collect();
    (lowered, lower::checks(d))
}

fn held_as_whole(w: &Wanted) -> (BTreeMap<SvcKey, DesiredService>, ServiceChecks) {
    (
        w.lowered().map(|s| (s.key(), s.clone())).collect(),
        w.checks().clone(),
    )
}

type Edit = fn(&mut NodeDesired);

#[test]
fn each_change_touches_the_keys_that_differ_and_leaves_the_whole_lowering() {
    let table: Vec<(&str, Edit, Vec<SvcKey>)> = vec![
        ("nothing", |_| {}, vec![]),
        (
            "one backend of one port",
            |d| d.services[1].backends[0].address = Ipv4Addr::new(198, 51, 100, 99),
            // The object is named, so both its keys are looked at again.
            vec![key(VIP, 80), key(VIP, 443)],
        ),
        (
            "an object goes",
            |d| {
                d.services.remove(3);
            },
            vec![key(VIP2, 5432)],
        ),
        (
            "a key moves to another object",
            |d| {
                d.services.remove(3);
                d.services.push(service("default/new", VIP2, 5432));
            },
            vec![key(VIP2, 5432)],
        ),
        (
            "a VIP's announcement starts: every service of that VIP",
            |d| {
                d.announce.l2.insert(VIP2);
            },
            vec![key(VIP2, 5432)],
        ),
        (
            "a VIP's announcement stops",
            |d| {
                d.announce.l2.clear();
            },
            vec![key(VIP, 80), key(VIP, 443), key(VIP, 8080)],
        ),
        (
            "a health check is dropped",
            |d| d.services[2].health_check = None,
            vec![key(VIP, 8080)],
        ),
    ];
    for (desc, edit, keys) in table {
        let (mut held, mut wanted) = at(&state());
        let mut next = state();
        next.version = 2;
        edit(&mut next);
        let touched = step(&mut held, &mut wanted, &next, &Verdicts::default());
        assert_eq!(touched, keys.into_iter().collect(), "{desc}: keys");
        assert_eq!(held_as_whole(&wanted), whole(&next), "{desc}: lowering");
        assert_eq!(
            wanted.targets(),
            health::targets(&lower::lower(&next, MSS), &lower::checks(&next)),
            "{desc}: targets"
        );
    }
}

fn down(verdicts: &mut Verdicts, address: Ipv4Addr) {
    let mut h = Health::new();
    h.record(Err("refused".into()), 1, 1);
    let target = health::target_of(address, 8080, &HealthCheckSpec::tcp_defaults());
    verdicts.insert(target, h);
}

#[test]
fn a_verdict_changes_the_checked_service_it_concerns_and_nothing_else() {
    let (held, mut wanted) = at(&state());
    let mut verdicts = Verdicts::default();
    assert!(
        wanted.health_change(&verdicts).is_empty(),
        "all UP: nothing"
    );
    down(&mut verdicts, Ipv4Addr::new(198, 51, 100, 11));
    let c = wanted.health_change(&verdicts);
    assert_eq!(c.keys(), [key(VIP, 8080)].into());
    let view = wanted.view(&c);
    let weights: Vec<u32> = view
        .get(&key(VIP, 8080))
        .unwrap()
        .backends
        .iter()
        .map(|b| b.weight)
        .collect();
    assert_eq!(weights, [0, 1], "the DOWN backend drained");
    let unchecked: Vec<u32> = view
        .get(&key(VIP, 80))
        .unwrap()
        .backends
        .iter()
        .map(|b| b.weight)
        .collect();
    assert_eq!(
        unchecked,
        [1, 1],
        "the same backend of an unchecked service is not"
    );
    assert!(!wanted.checks_change(&c), "the targets stay");
    wanted.commit(c);
    assert!(
        wanted.health_change(&verdicts).is_empty(),
        "committed: nothing more"
    );

    // A version changing another object keeps the drained backend drained.
    let mut next = state();
    next.version = 2;
    next.services[0].port = 81;
    let c = wanted.change(&held, &held.diff(&next), MSS, &verdicts);
    assert!(!c.keys().contains(&key(VIP, 8080)));
    let view = wanted.view(&c);
    assert_eq!(view.get(&key(VIP, 8080)).unwrap().backends[0].weight, 0);
    assert_eq!(view.get(&key(VIP, 80)), None, "gone in the change");
    assert!(view.get(&key(VIP, 81)).is_some());
    assert!(c.without_backends().is_empty());
}

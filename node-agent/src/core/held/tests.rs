//! [`HeldDesired`], table by table: a held state, the next version as an
//! edit of it, and what the change must carry and find. Every case checks
//! the rule the agent relies on: `problems` of the change is empty exactly
//! when `validate` of the whole next state is.
use std::net::Ipv4Addr;

use ballast_api::{Forwarding, HealthCheckSpec, Protocol};

use super::*;
use crate::core::desired::Backend;
use crate::core::validate;

const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const VIP2: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 11);
const SNAT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 3);

fn backend(last: u8) -> Backend {
    Backend {
        address: Ipv4Addr::new(198, 51, 100, last),
        port: 8080,
        weight: 1,
    }
}

/// A FullNAT TCP service of `object` with two backends (shared with the
/// `wanted` tests).
pub(crate) fn service(object: &str, vip: Ipv4Addr, port: u16) -> Service {
    Service::new(
        object,
        (vip, port, Protocol::Tcp),
        Forwarding::FullNat,
        [backend(11), backend(12)],
    )
}

/// Three objects (web with two ports, api, db on a second VIP), VIP
/// announced over L2.
fn held_state() -> NodeDesired {
    NodeDesired {
        version: 1,
        settings: Settings {
            snat_addrs: vec![SNAT],
            snat_ports: (10_000, 65_000),
        },
        services: vec![
            service("default/web", VIP, 80),
            service("default/web", VIP, 443),
            service("default/api", VIP, 8080),
            service("default/db", VIP2, 5432),
        ],
        announce: Announcements {
            l2: [VIP, VIP2].into(),
            bgp: Default::default(),
        },
    }
}

fn holding(d: &NodeDesired) -> HeldDesired {
    let mut h = HeldDesired::default();
    let c = h.diff(d);
    assert_eq!(h.problems(&c), []);
    h.commit(c);
    h
}

type Edit = fn(&mut NodeDesired);

/// desc, edit of the held state, objects the change names, settings
/// changed, announcements changed, whether it has problems.
type Case = (
    &'static str,
    Edit,
    &'static [&'static str],
    bool,
    bool,
    bool,
);

#[test]
fn a_change_names_what_differs_and_finds_problems_exactly_when_validate_does() {
    let table: Vec<Case> = vec![
        ("nothing", |_| {}, &[], false, false, false),
        (
            "one backend of one port",
            |d| d.services[1].backends[0].address = Ipv4Addr::new(198, 51, 100, 99),
            &["default/web"],
            false,
            false,
            false,
        ),
        (
            "an object's ports reordered (order is the object's)",
            |d| d.services.swap(0, 1),
            &["default/web"],
            false,
            false,
            false,
        ),
        (
            "an object removed",
            |d| {
                d.services.remove(2);
            },
            &["default/api"],
            false,
            false,
            false,
        ),
        (
            "an object added",
            |d| d.services.push(service("default/new", VIP2, 80)),
            &["default/new"],
            false,
            false,
            false,
        ),
        (
            "a key moves from one object to another in one version",
            |d| {
                d.services.remove(2);
                d.services.push(service("default/new", VIP, 8080));
            },
            &["default/api", "default/new"],
            false,
            false,
            false,
        ),
        (
            "a new object takes a key an unchanged object holds",
            |d| d.services.push(service("default/new", VIP, 8080)),
            &["default/new"],
            false,
            false,
            true,
        ),
        (
            "two new objects take one key",
            |d| {
                d.services.push(service("default/a", VIP2, 1));
                d.services.push(service("default/b", VIP2, 1));
            },
            &["default/a", "default/b"],
            false,
            false,
            true,
        ),
        (
            "a changed service is invalid on its own",
            |d| d.services[3].port = 0,
            &["default/db"],
            false,
            false,
            true,
        ),
        (
            "the last service of an announced VIP goes",
            |d| {
                d.services.remove(3);
            },
            &["default/db"],
            false,
            false,
            true,
        ),
        (
            "the last service of an announced VIP goes with its announcement",
            |d| {
                d.services.remove(3);
                d.announce.l2.remove(&VIP2);
            },
            &["default/db"],
            false,
            true,
            false,
        ),
        (
            "an announcement of a VIP nothing serves",
            |d| {
                d.announce.l2.insert(Ipv4Addr::new(203, 0, 113, 99));
            },
            &[],
            false,
            true,
            true,
        ),
        (
            "a BGP announcement",
            |d| {
                d.announce.bgp.insert(VIP);
            },
            &[],
            false,
            true,
            true,
        ),
        (
            "settings that make an unchanged service invalid (its backend becomes a SNAT address)",
            |d| d.settings.snat_addrs = vec![Ipv4Addr::new(198, 51, 100, 11)],
            &[],
            true,
            false,
            true,
        ),
        (
            "settings that make every FullNAT service invalid",
            |d| d.settings.snat_addrs.clear(),
            &[],
            true,
            false,
            true,
        ),
        (
            "settings that are invalid themselves",
            |d| d.settings.snat_ports = (0, 10),
            &[],
            true,
            false,
            true,
        ),
        (
            "settings that change and stay valid",
            |d| d.settings.snat_ports = (20_000, 30_000),
            &[],
            true,
            false,
            false,
        ),
        (
            "a health check with a zero interval",
            |d| {
                let mut h = HealthCheckSpec::tcp_defaults();
                h.interval = std::time::Duration::ZERO;
                d.services[2].health_check = Some(h);
            },
            &["default/api"],
            false,
            false,
            true,
        ),
    ];
    for (desc, edit, objects, settings, announce, has_problems) in table {
        let held = holding(&held_state());
        let mut next = held_state();
        next.version = 2;
        edit(&mut next);
        let change = held.diff(&next);
        let named: Vec<&str> = change.objects.keys().map(String::as_str).collect();
        assert_eq!(named, *objects, "{desc}: objects");
        assert_eq!(change.settings.is_some(), settings, "{desc}: settings");
        assert_eq!(change.announce.is_some(), announce, "{desc}: announce");
        let problems = held.problems(&change);
        assert_eq!(!problems.is_empty(), has_problems, "{desc}: {problems:?}");
        assert_eq!(
            validate(&next).is_empty(),
            problems.is_empty(),
            "{desc}: validate says {:?}",
            validate(&next)
        );
        if problems.is_empty() {
            let mut after = held.clone();
            after.commit(change);
            assert_eq!(
                after,
                holding(&next),
                "{desc}: committed = held from scratch"
            );
            let mut want = next.clone();
            want.services.sort_by(|a, b| a.object.cmp(&b.object));
            assert_eq!(after.to_desired(2), want, "{desc}: whole state");
        }
    }
}

#[test]
fn a_duplicate_names_the_object_that_holds_the_key() {
    let held = holding(&held_state());
    let mut next = held_state();
    next.services.push(service("default/new", VIP, 8080));
    let problems = held.problems(&held.diff(&next));
    assert_eq!(
        problems,
        [ApplyError::Service {
            service: service("default/new", VIP, 8080).id(),
            problem: ServiceProblem::Duplicate {
                first: "default/api".into()
            },
        }]
    );
}

#[test]
fn a_change_of_nothing_but_the_version_is_empty_and_commits_to_the_same_state() {
    let held = holding(&held_state());
    let mut next = held_state();
    next.version = 9;
    let change = held.diff(&next);
    assert_eq!(
        change,
        NodeChange {
            version: 9,
            ..Default::default()
        }
    );
    let mut after = held.clone();
    after.commit(change);
    assert_eq!(after, held);
    assert_eq!(after.len(), 4);
}

#[test]
fn an_object_listed_in_several_places_is_gathered() {
    let held = holding(&held_state());
    let mut next = held_state();
    // web's second port after api: the same services, listed apart.
    next.services.swap(1, 2);
    let change = held.diff(&next);
    assert!(change.objects.is_empty(), "{change:?}");
    next.services[2].port = 444;
    let change = held.diff(&next);
    let named: Vec<&str> = change.objects.keys().map(String::as_str).collect();
    assert_eq!(named, ["default/web"]);
    assert_eq!(change.objects["default/web"].len(), 2);
}

/// A version listed in name order is walked beside the held objects;
/// any other order is gathered first. Both must name the same objects.
#[test]
fn a_version_in_name_order_and_in_any_order_give_the_same_change() {
    let sorted = |d: &NodeDesired| {
        let mut d = d.clone();
        d.services.sort_by(|a, b| a.object.cmp(&b.object)); // stable: ports keep their order
        d
    };
    let edits: Vec<(&str, Edit)> = vec![
        ("nothing", |_| {}),
        ("one backend", |d| {
            d.services[1].backends[0].address = Ipv4Addr::new(198, 51, 100, 99)
        }),
        ("ports reordered", |d| d.services.swap(0, 1)),
        ("the first object by name removed", |d| {
            d.services.remove(2);
        }),
        ("the last object by name removed", |d| {
            d.services.drain(0..2);
        }),
        ("an object added between others", |d| {
            d.services.push(service("default/new", VIP2, 80))
        }),
        ("an object added after every other", |d| {
            d.services.push(service("default/zzz", VIP2, 81))
        }),
        ("every object removed", |d| d.services.clear()),
    ];
    let held_desired = held_state();
    let h = holding(&sorted(&held_desired));
    for (desc, edit) in edits {
        let mut next = held_desired.clone();
        edit(&mut next);
        let in_order = sorted(&next);
        assert!(h.changed_in_order(&in_order).is_some(), "{desc}: walked");
        assert_eq!(h.diff(&in_order), h.diff(&next), "{desc}");
        // held_state lists web before api: never walked as it is.
        if next.services.len() > 2 && next.services != in_order.services {
            assert!(h.changed_in_order(&next).is_none(), "{desc}: gathered");
        }
    }
}

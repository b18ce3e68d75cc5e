use super::*;
use crate::v1::{Backend, ObjectKind, Port, Protocol};

fn object(kind: ObjectKind, namespace: &str, name: &str) -> ObjectRef {
    ObjectRef {
        kind: kind as i32,
        namespace: namespace.into(),
        name: name.into(),
    }
}

pub(crate) fn vs(name: &str) -> ObjectRef {
    object(ObjectKind::VirtualServer, "default", name)
}

/// A service of `o` on 203.0.113.1:80/TCP with one backend of `weight`.
pub(crate) fn service(o: ObjectRef, weight: u32) -> Service {
    Service {
        object: Some(o),
        vips: vec![vec![203, 0, 113, 1]],
        ports: vec![Port {
            port: 80,
            protocol: Protocol::Tcp as i32,
            backends: vec![Backend {
                address: vec![198, 51, 100, 11],
                port: 8080,
                weight,
            }],
        }],
        ..Service::default()
    }
}

pub(crate) fn v6(last: u8) -> Vec<u8> {
    let mut a = vec![0x20, 0x01, 0x0d, 0xb8];
    a.resize(15, 0);
    a.push(last);
    a
}

/// Version 3: VirtualServers a and c, one L2 VIP.
pub(crate) fn state() -> NodeState {
    NodeState {
        version: 3,
        settings: None,
        services: vec![service(vs("a"), 1), service(vs("c"), 1)],
        announcements: Some(Announcements {
            l2: vec![vec![203, 0, 113, 1]],
            bgp: vec![],
        }),
    }
}

fn delta(base: u64, version: u64) -> Delta {
    Delta {
        version,
        base_version: base,
        ..Delta::default()
    }
}

#[test]
fn address_order_puts_ipv4_first_then_numeric() {
    let mut list = vec![v6(1), vec![10, 0, 0, 2], v6(0), vec![9, 255, 255, 255]];
    list.sort_by(|a, b| address_order(a, b));
    assert_eq!(
        list,
        [vec![9, 255, 255, 255], vec![10, 0, 0, 2], v6(0), v6(1)]
    );
}

#[test]
fn object_order_is_kind_then_namespace_then_name() {
    let mut list = vec![
        object(ObjectKind::Service, "a", "a"),
        object(ObjectKind::VirtualServer, "b", "a"),
        object(ObjectKind::VirtualServer, "a", "b"),
    ];
    list.sort_by(object_order);
    assert_eq!(
        list,
        [
            object(ObjectKind::VirtualServer, "a", "b"),
            object(ObjectKind::VirtualServer, "b", "a"),
            object(ObjectKind::Service, "a", "a"),
        ]
    );
}

#[test]
fn canonicalize_sorts_services_and_announcements() {
    let mut s = state();
    s.services.reverse();
    s.services.insert(1, Service::default());
    s.settings = Some(Default::default());
    s.announcements = Some(Announcements {
        l2: vec![v6(0), vec![10, 0, 0, 1]],
        bgp: vec![v6(2), v6(1)],
    });
    canonicalize(&mut s);
    let objects: Vec<Option<ObjectRef>> = s.services.iter().map(|s| s.object.clone()).collect();
    assert_eq!(objects, [None, Some(vs("a")), Some(vs("c"))]);
    assert_eq!(s.settings, None, "empty settings are absent");
    assert_eq!(
        s.announcements,
        Some(Announcements {
            l2: vec![vec![10, 0, 0, 1], v6(0)],
            bgp: vec![v6(1), v6(2)],
        })
    );
}

#[test]
fn delta_upserts_removes_and_announces_in_canonical_order() {
    let mut s = state();
    let d = Delta {
        upserted: vec![service(vs("b"), 1), service(vs("c"), 0)],
        removed: vec![vs("a")],
        l2_added: vec![v6(1), vec![203, 0, 113, 0]],
        l2_removed: vec![vec![203, 0, 113, 1]],
        bgp_added: vec![vec![203, 0, 113, 1]],
        ..delta(3, 4)
    };
    apply_delta(&mut s, &d).unwrap();
    assert_eq!(
        s,
        NodeState {
            version: 4,
            settings: None,
            services: vec![service(vs("b"), 1), service(vs("c"), 0)],
            announcements: Some(Announcements {
                l2: vec![vec![203, 0, 113, 0], v6(1)],
                bgp: vec![vec![203, 0, 113, 1]],
            }),
        }
    );
}

#[test]
fn withdrawing_the_last_vip_leaves_announcements_absent() {
    let mut s = state();
    let d = Delta {
        l2_removed: vec![vec![203, 0, 113, 1]],
        ..delta(3, 4)
    };
    apply_delta(&mut s, &d).unwrap();
    assert_eq!(s.announcements, None);
}

#[test]
fn an_empty_delta_only_moves_the_version() {
    let mut s = state();
    let d = delta(3, 7);
    assert!(delta_is_empty(&d));
    apply_delta(&mut s, &d).unwrap();
    assert_eq!(
        s,
        NodeState {
            version: 7,
            ..state()
        }
    );
}

#[test]
fn a_delta_that_does_not_fit_changes_nothing() {
    let cases: Vec<(&str, Delta, DeltaError)> = vec![
        (
            "base is not the held version",
            delta(2, 4),
            DeltaError::WrongBase { base: 2, held: 3 },
        ),
        (
            "version does not grow",
            delta(3, 3),
            DeltaError::NotNewer {
                version: 3,
                base: 3,
            },
        ),
        (
            "removes an object not held (after a valid upsert)",
            Delta {
                upserted: vec![service(vs("b"), 1)],
                removed: vec![vs("z")],
                ..delta(3, 4)
            },
            DeltaError::RemovesAbsent {
                object: "VirtualServer default/z".into(),
            },
        ),
        (
            "upserts and removes one object",
            Delta {
                upserted: vec![service(vs("a"), 0)],
                removed: vec![vs("a")],
                ..delta(3, 4)
            },
            DeltaError::UpsertedAndRemoved {
                object: "VirtualServer default/a".into(),
            },
        ),
        (
            "upserts a service without an object",
            Delta {
                upserted: vec![Service::default()],
                ..delta(3, 4)
            },
            DeltaError::MissingObject { field: "upserted" },
        ),
        (
            "adds an announced VIP again",
            Delta {
                l2_added: vec![vec![203, 0, 113, 1]],
                ..delta(3, 4)
            },
            DeltaError::AddsPresent {
                field: "l2",
                address: "203.0.113.1".into(),
            },
        ),
        (
            "withdraws a VIP not announced",
            Delta {
                bgp_removed: vec![v6(1)],
                ..delta(3, 4)
            },
            DeltaError::RemovesAbsentAddress {
                field: "bgp",
                address: "2001:db8::1".into(),
            },
        ),
    ];
    for (desc, d, err) in cases {
        let mut s = state();
        assert_eq!(apply_delta(&mut s, &d), Err(err), "{desc}");
        assert_eq!(s, state(), "{desc}: state changed");
    }
}

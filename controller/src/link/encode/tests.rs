//! Table: a node plan in, the exact `NodeState` out.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ballast_api::{Forwarding, HealthCheckSpec, Probe, Protocol};
use ballast_proto::v1::{
    self, Announcements, Backend, HealthCheck, HttpProbe, IpPrefix, NodeState, ObjectKind,
    ObjectRef, Port, TcpProbe, health_check,
};

use super::*;
use crate::object_key::{Kind, ObjectKey};
use crate::plan::{BackendPlan, NodePlan, PortPlan, ServicePlan};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn bytes(s: &str) -> Vec<u8> {
    ip_bytes(ip(s))
}

fn backend_plan(address: &str, port: u16, weight: u32) -> BackendPlan {
    BackendPlan {
        address: ip(address),
        port,
        weight,
    }
}

fn backend(address: &str, port: u32, weight: u32) -> Backend {
    Backend {
        address: bytes(address),
        port,
        weight,
    }
}

fn object(kind: ObjectKind, name: &str) -> Option<ObjectRef> {
    Some(ObjectRef {
        kind: kind as i32,
        namespace: "shop".into(),
        name: name.into(),
    })
}

/// IPv4 FullNAT web: TOA, 10 min persistence, one range, TCP check with the
/// defaults, one backend draining; announced over L2.
fn ipv4_web() -> (ObjectKey, ServicePlan) {
    (
        ObjectKey::new(Kind::VirtualServer, "shop", "web"),
        ServicePlan {
            vips: vec![ip("203.0.113.10")],
            ports: vec![PortPlan {
                port: 443,
                protocol: Protocol::Tcp,
                backends: vec![
                    backend_plan("10.0.0.11", 8443, 1),
                    backend_plan("10.0.0.12", 8443, 0),
                ],
            }],
            forwarding: Forwarding::FullNat,
            toa: true,
            persistence_timeout_s: 600,
            source_ranges: vec!["198.51.100.0/24".parse().unwrap()],
            health_check: Some(HealthCheckSpec::tcp_defaults()),
        },
    )
}

fn ipv4_web_wire() -> v1::Service {
    v1::Service {
        object: object(ObjectKind::VirtualServer, "web"),
        vips: vec![vec![203, 0, 113, 10]],
        ports: vec![Port {
            port: 443,
            protocol: v1::Protocol::Tcp as i32,
            backends: vec![backend("10.0.0.11", 8443, 1), backend("10.0.0.12", 8443, 0)],
        }],
        forwarding: v1::Forwarding::FullNat as i32,
        toa: true,
        persistence_timeout_s: 600,
        source_ranges: vec![IpPrefix {
            address: vec![198, 51, 100, 0],
            prefix_len: 24,
        }],
        health_check: Some(HealthCheck {
            probe: Some(health_check::Probe::Tcp(TcpProbe {})),
            interval_ms: 5000,
            timeout_ms: 2000,
            healthy_threshold: 2,
            unhealthy_threshold: 2,
        }),
    }
}

/// IPv6 NAT DNS over UDP from a Service, HTTP check, IPv6 range; over BGP.
fn ipv6_dns() -> (ObjectKey, ServicePlan) {
    (
        ObjectKey::new(Kind::Service, "shop", "dns"),
        ServicePlan {
            vips: vec![ip("2001:db8::53")],
            ports: vec![PortPlan {
                port: 53,
                protocol: Protocol::Udp,
                backends: vec![backend_plan("fd00::11", 5353, 1)],
            }],
            forwarding: Forwarding::Nat,
            toa: false,
            persistence_timeout_s: 0,
            source_ranges: vec!["2001:db8:1::/48".parse().unwrap()],
            health_check: Some(HealthCheckSpec {
                probe: Probe::Http {
                    path: "/ready".into(),
                    expect_status: 204,
                },
                interval: Duration::from_secs(3),
                timeout: Duration::from_secs(1),
                healthy_threshold: 4,
                unhealthy_threshold: 1,
            }),
        },
    )
}

fn ipv6_dns_wire() -> v1::Service {
    v1::Service {
        object: object(ObjectKind::Service, "dns"),
        vips: vec![bytes("2001:db8::53")],
        ports: vec![Port {
            port: 53,
            protocol: v1::Protocol::Udp as i32,
            backends: vec![backend("fd00::11", 5353, 1)],
        }],
        forwarding: v1::Forwarding::Nat as i32,
        toa: false,
        persistence_timeout_s: 0,
        source_ranges: vec![IpPrefix {
            address: bytes("2001:db8:1::"),
            prefix_len: 48,
        }],
        health_check: Some(HealthCheck {
            probe: Some(health_check::Probe::Http(HttpProbe {
                path: "/ready".into(),
                expect_status: 204,
            })),
            interval_ms: 3000,
            timeout_ms: 1000,
            healthy_threshold: 4,
            unhealthy_threshold: 1,
        }),
    }
}

/// Dual-stack DR with no check, two ports; both VIPs on L2 and BGP.
fn dual_dr() -> (ObjectKey, ServicePlan) {
    (
        ObjectKey::new(Kind::VirtualServer, "shop", "dual"),
        ServicePlan {
            vips: vec![ip("2001:db8::80"), ip("203.0.113.80")],
            ports: vec![
                PortPlan {
                    port: 80,
                    protocol: Protocol::Tcp,
                    backends: vec![backend_plan("10.0.0.21", 80, 3)],
                },
                PortPlan {
                    port: 80,
                    protocol: Protocol::Udp,
                    backends: vec![],
                },
            ],
            forwarding: Forwarding::Dr,
            toa: false,
            persistence_timeout_s: 0,
            source_ranges: vec![],
            health_check: None,
        },
    )
}

fn dual_dr_wire() -> v1::Service {
    v1::Service {
        object: object(ObjectKind::VirtualServer, "dual"),
        // The object's order, not sorted: the VIP list is the object's.
        vips: vec![bytes("2001:db8::80"), vec![203, 0, 113, 80]],
        ports: vec![
            Port {
                port: 80,
                protocol: v1::Protocol::Tcp as i32,
                backends: vec![backend("10.0.0.21", 80, 3)],
            },
            Port {
                port: 80,
                protocol: v1::Protocol::Udp as i32,
                backends: vec![],
            },
        ],
        forwarding: v1::Forwarding::Dr as i32,
        toa: false,
        persistence_timeout_s: 0,
        source_ranges: vec![],
        health_check: None,
    }
}

fn plan(services: &[(ObjectKey, ServicePlan)], l2: &[&str], bgp: &[&str]) -> NodePlan {
    NodePlan {
        services: services
            .iter()
            .map(|(k, s)| (k.clone(), Arc::new(s.clone())))
            .collect::<BTreeMap<_, _>>(),
        l2_announce: l2.iter().map(|s| ip(s)).collect::<BTreeSet<_>>(),
        bgp_announce: bgp.iter().map(|s| ip(s)).collect::<BTreeSet<_>>(),
    }
}

#[test]
fn node_plans_encode_exactly() {
    let cases: Vec<(&str, NodePlan, NodeState)> = vec![
        (
            "nothing planned: no services, announcements absent",
            NodePlan::default(),
            NodeState {
                version: 7,
                ..NodeState::default()
            },
        ),
        (
            "IPv4 FullNAT with TOA, persistence, a range, a TCP check, a drain; L2",
            plan(&[ipv4_web()], &["203.0.113.10"], &[]),
            NodeState {
                version: 7,
                settings: None,
                services: vec![ipv4_web_wire()],
                announcements: Some(Announcements {
                    l2: vec![vec![203, 0, 113, 10]],
                    bgp: vec![],
                }),
            },
        ),
        (
            "IPv6 NAT over UDP from a Service, HTTP check; BGP",
            plan(&[ipv6_dns()], &[], &["2001:db8::53"]),
            NodeState {
                version: 7,
                settings: None,
                services: vec![ipv6_dns_wire()],
                announcements: Some(Announcements {
                    l2: vec![],
                    bgp: vec![bytes("2001:db8::53")],
                }),
            },
        ),
        (
            "three objects: VirtualServers (by name) before Services; IPv4 announced first",
            plan(
                &[ipv6_dns(), ipv4_web(), dual_dr()],
                &["2001:db8::80", "203.0.113.80", "203.0.113.10"],
                &["203.0.113.80", "2001:db8::80", "2001:db8::53"],
            ),
            NodeState {
                version: 7,
                settings: None,
                services: vec![dual_dr_wire(), ipv4_web_wire(), ipv6_dns_wire()],
                announcements: Some(Announcements {
                    l2: vec![
                        vec![203, 0, 113, 10],
                        vec![203, 0, 113, 80],
                        bytes("2001:db8::80"),
                    ],
                    bgp: vec![
                        vec![203, 0, 113, 80],
                        bytes("2001:db8::53"),
                        bytes("2001:db8::80"),
                    ],
                }),
            },
        ),
    ];
    for (desc, plan, expected) in cases {
        let got = node_state(7, &plan);
        assert_eq!(got, expected, "{desc}");
        // What we send is already canonical: the agent's canonical form of
        // it is itself, so both ends hash the same bytes.
        let mut canonical = got.clone();
        ballast_proto::canonicalize(&mut canonical);
        assert_eq!(canonical, got, "{desc}: not canonical");
    }
}

#[test]
fn ipv4_mapped_and_plain_addresses_keep_their_family() {
    assert_eq!(bytes("192.0.2.1"), [192, 0, 2, 1]);
    let mapped = bytes("::ffff:192.0.2.1");
    assert_eq!(mapped.len(), 16);
    assert_eq!(&mapped[10..], [0xff, 0xff, 192, 0, 2, 1]);
}

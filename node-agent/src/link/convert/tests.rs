//! A valid two-object state converted to the exact `NodeDesired`, and back;
//! the agent's defaults; then (submodules) one table row per INVALID rule
//! and the UNSUPPORTED (IPv6) parts that are skipped while the rest applies.
use std::net::Ipv4Addr;
use std::time::Duration;

use ballast_api::{Forwarding, HealthCheckSpec, Probe, Protocol};
use ballast_proto::v1::{self, NodeState, health_check};

use super::*;
use crate::core::{Backend, Service};

mod invalid;
mod unsupported;

pub(super) fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub(super) fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// Network-order bytes, as the wire carries addresses.
pub(super) fn b(s: &str) -> Vec<u8> {
    match ip(s) {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

pub(super) fn object_ref(kind: v1::ObjectKind, name: &str) -> v1::ObjectRef {
    v1::ObjectRef {
        kind: kind as i32,
        namespace: "shop".into(),
        name: name.into(),
    }
}

pub(super) fn backend(address: &str, port: u32, weight: u32) -> v1::Backend {
    v1::Backend {
        address: b(address),
        port,
        weight,
    }
}

pub(super) fn port(port: u32, protocol: v1::Protocol, backends: Vec<v1::Backend>) -> v1::Port {
    v1::Port {
        port,
        protocol: protocol as i32,
        backends,
    }
}

pub(super) fn defaults() -> Defaults {
    Defaults {
        snat_addrs: vec![v4("192.0.2.99")],
        snat_ports: (10_000, 65_000),
    }
}

/// services[0], VirtualServer shop/web: 2 VIPs × 2 TCP ports, FullNAT with
/// TOA, 10 min persistence, an IPv4 and an IPv6 source range, an HTTP check,
/// weights 3 and 0 (draining). services[1], Service shop/api: 2 VIPs × DNS
/// over UDP and TCP, DR, a TCP check. Explicit settings; two VIPs on L2.
pub(super) fn state() -> NodeState {
    let web = v1::Service {
        object: Some(object_ref(v1::ObjectKind::VirtualServer, "web")),
        vips: vec![b("203.0.113.10"), b("203.0.113.11")],
        ports: vec![
            port(
                443,
                v1::Protocol::Tcp,
                vec![
                    backend("198.51.100.11", 8443, 3),
                    backend("198.51.100.12", 8443, 0),
                ],
            ),
            port(
                80,
                v1::Protocol::Tcp,
                vec![backend("198.51.100.11", 8080, 1)],
            ),
        ],
        forwarding: v1::Forwarding::FullNat as i32,
        toa: true,
        persistence_timeout_s: 600,
        source_ranges: vec![
            v1::IpPrefix {
                address: b("10.0.0.0"),
                prefix_len: 8,
            },
            v1::IpPrefix {
                address: b("2001:db8::"),
                prefix_len: 32,
            },
        ],
        health_check: Some(v1::HealthCheck {
            probe: Some(health_check::Probe::Http(v1::HttpProbe {
                path: "/healthz".into(),
                expect_status: 204,
            })),
            interval_ms: 3000,
            timeout_ms: 1500,
            healthy_threshold: 4,
            unhealthy_threshold: 1,
        }),
    };
    let dns = |protocol, backends| port(53, protocol, backends);
    let api = v1::Service {
        object: Some(object_ref(v1::ObjectKind::Service, "api")),
        vips: vec![b("203.0.113.20"), b("203.0.113.21")],
        ports: vec![
            dns(v1::Protocol::Udp, vec![backend("10.1.0.5", 53, 1)]),
            dns(
                v1::Protocol::Tcp,
                vec![backend("10.1.0.5", 53, 1), backend("10.1.0.6", 53, 2)],
            ),
        ],
        forwarding: v1::Forwarding::Dr as i32,
        toa: false,
        persistence_timeout_s: 0,
        source_ranges: vec![],
        health_check: Some(v1::HealthCheck {
            probe: Some(health_check::Probe::Tcp(v1::TcpProbe {})),
            interval_ms: 5000,
            timeout_ms: 2000,
            healthy_threshold: 2,
            unhealthy_threshold: 2,
        }),
    };
    NodeState {
        version: 7,
        settings: Some(v1::NodeSettings {
            snat_addresses: vec![b("192.0.2.1"), b("192.0.2.2")],
            snat_port_min: 20_000,
            snat_port_max: 30_000,
        }),
        services: vec![web, api],
        announcements: Some(v1::Announcements {
            l2: vec![b("203.0.113.10"), b("203.0.113.20")],
            bgp: vec![],
        }),
    }
}

fn core_backend(address: &str, port: u16, weight: u32) -> Backend {
    Backend {
        address: v4(address),
        port,
        weight,
    }
}

/// What `state()` must become: VIP-major, wire order.
fn expected() -> NodeDesired {
    let web = |vip: &str, port: u16, backends: Vec<Backend>| Service {
        object: "shop/web".into(),
        port_name: String::new(),
        vip: v4(vip),
        port,
        protocol: Protocol::Tcp,
        forwarding: Forwarding::FullNat,
        toa: true,
        persistence_timeout_s: 600,
        source_ranges: vec![
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ],
        health_check: Some(HealthCheckSpec {
            probe: Probe::Http {
                path: "/healthz".into(),
                expect_status: 204,
            },
            interval: Duration::from_millis(3000),
            timeout: Duration::from_millis(1500),
            healthy_threshold: 4,
            unhealthy_threshold: 1,
        }),
        backends,
        l2_priority: None,
    };
    let web443 = || {
        vec![
            core_backend("198.51.100.11", 8443, 3),
            core_backend("198.51.100.12", 8443, 0),
        ]
    };
    let web80 = || vec![core_backend("198.51.100.11", 8080, 1)];
    let api = |vip: &str, protocol, backends| Service {
        health_check: Some(HealthCheckSpec {
            probe: Probe::Tcp,
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            healthy_threshold: 2,
            unhealthy_threshold: 2,
        }),
        ..Service::new(
            "Service shop/api",
            (v4(vip), 53, protocol),
            Forwarding::Dr,
            backends,
        )
    };
    let api_udp = || vec![core_backend("10.1.0.5", 53, 1)];
    let api_tcp = || {
        vec![
            core_backend("10.1.0.5", 53, 1),
            core_backend("10.1.0.6", 53, 2),
        ]
    };
    NodeDesired {
        version: 7,
        settings: Settings {
            snat_addrs: vec![v4("192.0.2.1"), v4("192.0.2.2")],
            snat_ports: (20_000, 30_000),
        },
        services: vec![
            web("203.0.113.10", 443, web443()),
            web("203.0.113.10", 80, web80()),
            web("203.0.113.11", 443, web443()),
            web("203.0.113.11", 80, web80()),
            api("203.0.113.20", Protocol::Udp, api_udp()),
            api("203.0.113.20", Protocol::Tcp, api_tcp()),
            api("203.0.113.21", Protocol::Udp, api_udp()),
            api("203.0.113.21", Protocol::Tcp, api_tcp()),
        ],
        announce: Announcements {
            l2: [v4("203.0.113.10"), v4("203.0.113.20")].into(),
            bgp: Default::default(),
        },
    }
}

#[test]
fn valid_state_converts_to_exactly_this_node_desired() {
    let c = node_desired(&state(), &defaults()).unwrap();
    assert_eq!(c.desired, expected());
    assert_eq!(
        c.objects,
        ObjectNames::from([
            (
                "shop/web".into(),
                object_ref(v1::ObjectKind::VirtualServer, "web")
            ),
            (
                "Service shop/api".into(),
                object_ref(v1::ObjectKind::Service, "api")
            ),
        ])
    );
    assert_eq!(c.unsupported, []);
    // Nothing the wire layer let through is refused by the core either.
    assert_eq!(crate::core::validate(&c.desired), []);
}

/// Test-only inverse: a `NodeDesired` back to the wire, one `Service` per
/// object in order of first appearance, its VIPs and ports in order of
/// first appearance, settings always present.
fn encode(d: &NodeDesired, objects: &ObjectNames) -> NodeState {
    let addr = |a: Ipv4Addr| a.octets().to_vec();
    let mut services: Vec<v1::Service> = Vec::new();
    for s in &d.services {
        let object = objects[&s.object].clone();
        let i = match services
            .iter()
            .position(|w| w.object.as_ref() == Some(&object))
        {
            Some(i) => i,
            None => {
                services.push(v1::Service {
                    object: Some(object),
                    forwarding: match s.forwarding {
                        Forwarding::FullNat => v1::Forwarding::FullNat,
                        Forwarding::Dr => v1::Forwarding::Dr,
                        Forwarding::Nat => v1::Forwarding::Nat,
                    } as i32,
                    toa: s.toa,
                    persistence_timeout_s: s.persistence_timeout_s,
                    source_ranges: (s.source_ranges.iter())
                        .map(|n| v1::IpPrefix {
                            address: match n.addr() {
                                IpAddr::V4(a) => a.octets().to_vec(),
                                IpAddr::V6(a) => a.octets().to_vec(),
                            },
                            prefix_len: n.prefix_len().into(),
                        })
                        .collect(),
                    health_check: s.health_check.as_ref().map(|h| v1::HealthCheck {
                        probe: Some(match &h.probe {
                            Probe::Tcp => health_check::Probe::Tcp(v1::TcpProbe {}),
                            Probe::Http {
                                path,
                                expect_status,
                            } => health_check::Probe::Http(v1::HttpProbe {
                                path: path.clone(),
                                expect_status: (*expect_status).into(),
                            }),
                            Probe::Udp { payload, expect } => {
                                health_check::Probe::Udp(v1::UdpProbe {
                                    payload: payload.clone(),
                                    expect: expect.clone().unwrap_or_default(),
                                })
                            }
                        }),
                        interval_ms: h.interval.as_millis() as u32,
                        timeout_ms: h.timeout.as_millis() as u32,
                        healthy_threshold: h.healthy_threshold,
                        unhealthy_threshold: h.unhealthy_threshold,
                    }),
                    ..Default::default()
                });
                services.len() - 1
            }
        };
        let w = &mut services[i];
        if !w.vips.contains(&addr(s.vip)) {
            w.vips.push(addr(s.vip));
        }
        let protocol = match s.protocol {
            Protocol::Tcp => v1::Protocol::Tcp,
            Protocol::Udp => v1::Protocol::Udp,
        } as i32;
        if !(w.ports.iter()).any(|p| (p.port, p.protocol) == (s.port.into(), protocol)) {
            let backends = (s.backends.iter())
                .map(|b| v1::Backend {
                    address: addr(b.address),
                    port: b.port.into(),
                    weight: b.weight,
                })
                .collect();
            w.ports.push(v1::Port {
                port: s.port.into(),
                protocol,
                backends,
            });
        }
    }
    NodeState {
        version: d.version,
        settings: Some(v1::NodeSettings {
            snat_addresses: d.settings.snat_addrs.iter().map(|&a| addr(a)).collect(),
            snat_port_min: d.settings.snat_ports.0.into(),
            snat_port_max: d.settings.snat_ports.1.into(),
        }),
        services,
        announcements: Some(v1::Announcements {
            l2: d.announce.l2.iter().map(|&a| addr(a)).collect(),
            bgp: d.announce.bgp.iter().map(|&a| addr(a)).collect(),
        }),
    }
}

#[test]
fn round_trip_gives_back_the_wire_state() {
    let wire = state();
    let c = node_desired(&wire, &defaults()).unwrap();
    let back = encode(&c.desired, &c.objects);
    assert_eq!(back, wire);
    assert_eq!(
        ballast_proto::content_hash(&back),
        ballast_proto::content_hash(&wire)
    );
    assert_eq!(node_desired(&back, &defaults()).unwrap(), c);
}

/// (description, edit of the valid state, settings expected).
type DefaultCase = (&'static str, fn(&mut NodeState), Settings);

#[test]
fn agent_defaults_fill_what_the_wire_leaves_empty() {
    let ours = |snat: &[&str], ports| Settings {
        snat_addrs: snat.iter().map(|a| v4(a)).collect(),
        snat_ports: ports,
    };
    let cases: [DefaultCase; 4] = [
        (
            "settings absent: both defaults",
            |s| s.settings = None,
            ours(&["192.0.2.99"], (10_000, 65_000)),
        ),
        (
            "no SNAT address: the default address, the wire's ports",
            |s| s.settings.as_mut().unwrap().snat_addresses.clear(),
            ours(&["192.0.2.99"], (20_000, 30_000)),
        ),
        (
            "port range 0-0: the wire's addresses, the default ports",
            |s| {
                let settings = s.settings.as_mut().unwrap();
                (settings.snat_port_min, settings.snat_port_max) = (0, 0);
            },
            ours(&["192.0.2.1", "192.0.2.2"], (10_000, 65_000)),
        ),
        (
            "a one-port range is a range",
            |s| {
                let settings = s.settings.as_mut().unwrap();
                (settings.snat_port_min, settings.snat_port_max) = (65_535, 65_535);
            },
            ours(&["192.0.2.1", "192.0.2.2"], (65_535, 65_535)),
        ),
    ];
    for (desc, edit, want) in cases {
        let mut s = state();
        edit(&mut s);
        let c = node_desired(&s, &defaults()).unwrap_or_else(|e| panic!("{desc}: {e:?}"));
        assert_eq!(c.desired.settings, want, "{desc}");
        assert_eq!(c.unsupported, [], "{desc}");
    }
}

#[test]
fn announcements_absent_announce_nothing() {
    let mut s = state();
    s.announcements = None;
    let c = node_desired(&s, &defaults()).unwrap();
    assert_eq!(c.desired.announce, Announcements::default());
}

#[test]
fn bgp_is_passed_on_for_core_validation_to_refuse() {
    let mut s = state();
    s.announcements.as_mut().unwrap().bgp = vec![b("203.0.113.11")];
    let c = node_desired(&s, &defaults()).unwrap();
    assert_eq!(c.desired.announce.bgp, [v4("203.0.113.11")].into());
    assert_eq!(
        crate::core::validate(&c.desired),
        [crate::core::ApplyError::Announce {
            vip: v4("203.0.113.11"),
            problem: crate::core::AnnounceProblem::BgpUnsupported
        }]
    );
}

#[test]
fn display_names_object_field_and_reason() {
    let mut s = state();
    s.services[0].ports[0].backends[1].address = vec![198, 51, 100, 12, 0];
    let errors = node_desired(&s, &defaults()).unwrap_err();
    assert_eq!(
        errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
        [
            "VirtualServer shop/web: services[0].ports[0].backends[1].address: 5 bytes (4 for IPv4, \
          16 for IPv6)"
        ]
    );
    s.version = 0;
    let errors = node_desired(&s, &defaults()).unwrap_err();
    assert_eq!(errors[0].to_string(), "version: 0: versions start at 1");
}

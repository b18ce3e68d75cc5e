//! [`validate`], table by table: a valid state, one edit, and exactly the
//! typed errors it must produce.
use std::time::Duration;

use ballast_api::Probe;

use super::*;

const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const SNAT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 3);
const B1: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 11);
const B2: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 12);

fn web(port: u16, protocol: Protocol) -> Service {
    let backend = |address, weight| Backend {
        address,
        port: 8080,
        weight,
    };
    Service {
        source_ranges: vec!["192.0.2.0/24".parse().unwrap()],
        health_check: Some(HealthCheckSpec::tcp_defaults()),
        ..Service::new(
            "default/web",
            (VIP, port, protocol),
            Forwarding::FullNat,
            [backend(B1, 1), backend(B2, 0)],
        )
    }
}

/// Two services of one object on one VIP, announced over L2.
fn valid() -> NodeDesired {
    NodeDesired {
        version: 1,
        settings: Settings {
            snat_addrs: vec![SNAT],
            snat_ports: (10_000, 65_000),
        },
        services: vec![web(80, Protocol::Tcp), web(53, Protocol::Udp)],
        announce: Announcements {
            l2: [VIP].into(),
            bgp: Default::default(),
        },
    }
}

fn at(port: u16, protocol: Protocol, problem: ServiceProblem) -> ApplyError {
    ApplyError::Service {
        service: ServiceRef {
            object: "default/web".into(),
            vip: VIP,
            port,
            protocol,
        },
        problem,
    }
}

fn tcp80(problem: ServiceProblem) -> ApplyError {
    at(80, Protocol::Tcp, problem)
}

type Edit = fn(&mut NodeDesired);

#[test]
fn the_valid_state_has_no_error() {
    assert_eq!(validate(&valid()), []);
}

#[test]
fn every_problem_is_refused_with_its_typed_error() {
    let table: Vec<(&str, Edit, Vec<ApplyError>)> = vec![
        (
            "same VIP, port and protocol twice, from another object",
            |d| {
                let mut again = d.services[0].clone();
                again.object = "default/other".into();
                d.services.push(again);
            },
            vec![ApplyError::Service {
                service: ServiceRef {
                    object: "default/other".into(),
                    vip: VIP,
                    port: 80,
                    protocol: Protocol::Tcp,
                },
                problem: ServiceProblem::Duplicate {
                    first: "default/web".into(),
                },
            }],
        ),
        (
            "port 0",
            |d| d.services[1].port = 0,
            vec![at(0, Protocol::Udp, ServiceProblem::PortZero)],
        ),
        (
            "TOA on UDP",
            |d| d.services[1].toa = true,
            vec![at(53, Protocol::Udp, ServiceProblem::ToaNeedsTcp)],
        ),
        (
            "TOA with DR",
            |d| {
                d.services[0].toa = true;
                d.services[0].forwarding = Forwarding::Dr;
            },
            vec![tcp80(ServiceProblem::ToaNeedsFullNat(Forwarding::Dr))],
        ),
        (
            "FullNAT without a SNAT address",
            |d| {
                d.settings.snat_addrs.clear();
                d.services[1].forwarding = Forwarding::Dr;
            },
            vec![tcp80(ServiceProblem::NoSnatAddress)],
        ),
        (
            "a VIP that is a SNAT address",
            |d| d.settings.snat_addrs.push(VIP),
            vec![
                tcp80(ServiceProblem::VipIsSnatAddress),
                at(53, Protocol::Udp, ServiceProblem::VipIsSnatAddress),
            ],
        ),
        (
            "a multicast VIP (no longer announced)",
            |d| {
                d.services[0].vip = "224.0.0.1".parse().unwrap();
                d.services.truncate(1);
                d.announce.l2.clear();
            },
            vec![ApplyError::Service {
                service: ServiceRef {
                    object: "default/web".into(),
                    vip: "224.0.0.1".parse().unwrap(),
                    port: 80,
                    protocol: Protocol::Tcp,
                },
                problem: ServiceProblem::BadVip("a multicast address"),
            }],
        ),
        (
            "a backend on port 0, one listed twice, one that is the SNAT address",
            |d| {
                d.services[0].backends[0].port = 0;
                let again = d.services[0].backends[1].clone();
                d.services[0].backends.push(again);
                d.services[0].backends.push(Backend {
                    address: SNAT,
                    port: 8080,
                    weight: 1,
                });
            },
            vec![
                tcp80(ServiceProblem::BadBackend {
                    index: 0,
                    what: "port 0",
                }),
                tcp80(ServiceProblem::BadBackend {
                    index: 2,
                    what: "listed twice",
                }),
                tcp80(ServiceProblem::BadBackend {
                    index: 3,
                    what: "a SNAT address of this node (the director would forward to itself)",
                }),
            ],
        ),
        (
            "a source range with host bits",
            |d| {
                d.services[0]
                    .source_ranges
                    .push("192.0.2.1/24".parse().unwrap())
            },
            vec![tcp80(ServiceProblem::SourceRangeHostBits {
                index: 1,
                range: "192.0.2.1/24".parse().unwrap(),
            })],
        ),
        (
            "a health check timing out after its interval",
            |d| {
                d.services[0].health_check = Some(HealthCheckSpec {
                    probe: Probe::Tcp,
                    interval: Duration::from_secs(1),
                    timeout: Duration::from_secs(2),
                    healthy_threshold: 1,
                    unhealthy_threshold: 1,
                })
            },
            vec![tcp80(ServiceProblem::HealthCheck(
                "timeout is longer than the interval",
            ))],
        ),
        (
            "a health check with a zero threshold",
            |d| {
                if let Some(h) = &mut d.services[0].health_check {
                    h.unhealthy_threshold = 0;
                }
            },
            vec![tcp80(ServiceProblem::HealthCheck("a threshold is zero"))],
        ),
        (
            "too many SNAT addresses",
            |d| {
                d.settings.snat_addrs = (1..=17)
                    .map(|i| Ipv4Addr::new(198, 51, 100, 100 + i))
                    .collect()
            },
            vec![ApplyError::Settings(SettingsError::TooManySnatAddresses {
                count: 17,
                max: 16,
            })],
        ),
        (
            "a broadcast SNAT address",
            |d| d.settings.snat_addrs.push(Ipv4Addr::BROADCAST),
            vec![ApplyError::Settings(SettingsError::SnatAddress {
                address: Ipv4Addr::BROADCAST,
                what: "the broadcast address",
            })],
        ),
        (
            "an empty SNAT port range",
            |d| d.settings.snat_ports = (30_000, 20_000),
            vec![ApplyError::Settings(SettingsError::SnatPortRange {
                min: 30_000,
                max: 20_000,
            })],
        ),
        (
            "a SNAT port range starting at 0",
            |d| d.settings.snat_ports = (0, 20_000),
            vec![ApplyError::Settings(SettingsError::SnatPortRange {
                min: 0,
                max: 20_000,
            })],
        ),
        (
            "announcing a VIP no service serves",
            |d| {
                d.announce.l2.insert(B1);
            },
            vec![ApplyError::Announce {
                vip: B1,
                problem: AnnounceProblem::NotServed,
            }],
        ),
        (
            "announcing over BGP",
            |d| {
                d.announce.l2.clear();
                d.announce.bgp.insert(VIP);
            },
            vec![ApplyError::Announce {
                vip: VIP,
                problem: AnnounceProblem::BgpUnsupported,
            }],
        ),
    ];
    for (desc, edit, expected) in table {
        let mut d = valid();
        edit(&mut d);
        assert_eq!(validate(&d), expected, "{desc}");
    }
}

#[test]
fn errors_read_with_object_vip_port_and_protocol() {
    let mut d = valid();
    d.services[1].toa = true;
    let got: Vec<String> = validate(&d).iter().map(|e| e.to_string()).collect();
    assert_eq!(got, ["default/web 203.0.113.10:53/UDP: TOA needs TCP"]);
}

#[test]
fn more_services_than_the_data_plane_holds_are_refused_whole() {
    let mut d = valid();
    let n = abi::MAX_SERVICES as usize + 1;
    let template = d.services[0].clone();
    d.services = (0..n)
        .map(|i| Service {
            vip: Ipv4Addr::from(u32::from(VIP) + (i / 60_000) as u32),
            port: 1 + (i % 60_000) as u16,
            ..template.clone()
        })
        .collect();
    d.announce.l2.clear();
    assert_eq!(
        validate(&d),
        [ApplyError::TooManyServices {
            count: n,
            max: abi::MAX_SERVICES as usize,
        }]
    );
}

//! Every apply error and conversion error as the wire carries it: the exact
//! `ServiceError`, or its place in the Nack message.
use std::net::Ipv4Addr;

use ballast_api::Forwarding;
use ipnet::IpNet;

use super::*;
use crate::core::SettingsError;
use crate::dataplane::PlanError;
use crate::link::convert::{Defaults, node_desired};

const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);

fn web_ref() -> v1::ObjectRef {
    v1::ObjectRef {
        kind: v1::ObjectKind::VirtualServer as i32,
        namespace: "shop".into(),
        name: "web".into(),
    }
}

fn objects() -> ObjectNames {
    ObjectNames::from([("shop/web".to_string(), web_ref())])
}

fn service(object: &str, port: u16, protocol: Protocol) -> ServiceRef {
    ServiceRef {
        object: object.into(),
        vip: VIP,
        port,
        protocol,
    }
}

fn problem(object: &str, problem: ServiceProblem) -> ApplyError {
    ApplyError::Service {
        service: service(object, 443, Protocol::Tcp),
        problem,
    }
}

/// The `ServiceError` every web 443/TCP row starts from.
fn web_443(kind: v1::ServiceErrorKind, field: &str, reason: &str) -> v1::ServiceError {
    v1::ServiceError {
        object: Some(web_ref()),
        vip: VIP.octets().to_vec(),
        port: 443,
        protocol: v1::Protocol::Tcp as i32,
        kind: kind as i32,
        field: field.into(),
        reason: reason.into(),
    }
}

fn capacity() -> ApplyError {
    ApplyError::Capacity {
        service: service("shop/web", 53, Protocol::Udp),
        source: PlanError::TooManyServices {
            service: "shop/web:53".into(),
            key: Default::default(),
            max: 2,
        },
    }
}

#[test]
fn each_apply_error_becomes_its_service_error() {
    use v1::ServiceErrorKind::{Capacity, Conflict, Invalid, Unsupported};
    let range: IpNet = "10.1.0.0/8".parse().unwrap();
    let rows: Vec<(ApplyError, v1::ServiceError)> = vec![
        (
            problem(
                "shop/web",
                ServiceProblem::Duplicate {
                    first: "shop/other".into(),
                },
            ),
            web_443(
                Conflict,
                "",
                "defined twice: shop/other already serves this VIP, port and protocol",
            ),
        ),
        (
            problem("shop/web", ServiceProblem::BadVip("a multicast address")),
            web_443(Invalid, "vips", "the VIP is a multicast address"),
        ),
        (
            problem("shop/web", ServiceProblem::ToaNeedsTcp),
            web_443(Invalid, "toa", "TOA needs TCP"),
        ),
        (
            problem("shop/web", ServiceProblem::ToaNeedsFullNat(Forwarding::Dr)),
            web_443(Invalid, "toa", "TOA needs FullNAT forwarding, not DR"),
        ),
        (
            problem("shop/web", ServiceProblem::NoSnatAddress),
            web_443(
                Invalid,
                "forwarding",
                "FullNAT needs a SNAT address and the node settings have none",
            ),
        ),
        (
            problem(
                "shop/web",
                ServiceProblem::SourceRangeHostBits { index: 1, range },
            ),
            web_443(
                Invalid,
                "source_ranges[1]",
                "source_ranges[1]: 10.1.0.0/8 has host bits set",
            ),
        ),
        (
            problem(
                "shop/web",
                ServiceProblem::HealthCheck("a threshold is zero"),
            ),
            web_443(Invalid, "health_check", "health check: a threshold is zero"),
        ),
        (
            problem(
                "shop/web",
                ServiceProblem::BadBackend {
                    index: 2,
                    what: "listed twice",
                },
            ),
            // The backend's port index in the wire object is unknown here.
            web_443(Invalid, "", "backends[2]: listed twice"),
        ),
        (
            capacity(),
            v1::ServiceError {
                port: 53,
                protocol: v1::Protocol::Udp as i32,
                ..web_443(Capacity, "", "shop/web:53: no free service slot (2 in use)")
            },
        ),
        (
            ApplyError::Announce {
                vip: VIP,
                problem: AnnounceProblem::BgpUnsupported,
            },
            v1::ServiceError {
                object: None,
                port: 0,
                protocol: v1::Protocol::Unspecified as i32,
                ..web_443(
                    Unsupported,
                    "announcements.bgp",
                    &AnnounceProblem::BgpUnsupported.to_string(),
                )
            },
        ),
        (
            ApplyError::Announce {
                vip: VIP,
                problem: AnnounceProblem::NotServed,
            },
            v1::ServiceError {
                object: None,
                port: 0,
                protocol: v1::Protocol::Unspecified as i32,
                ..web_443(
                    Invalid,
                    "announcements.l2",
                    "no service of this state serves it",
                )
            },
        ),
        (
            problem("Service shop/gone", ServiceProblem::ToaNeedsTcp),
            v1::ServiceError {
                object: None,
                ..web_443(Invalid, "toa", "Service shop/gone: TOA needs TCP")
            },
        ),
    ];
    for (error, want) in rows {
        assert_eq!(
            service_errors(std::slice::from_ref(&error), &objects()),
            [want],
            "{error}"
        );
    }
}

fn whole_version_errors() -> Vec<ApplyError> {
    vec![
        ApplyError::StaleVersion {
            version: 4,
            applied: 5,
        },
        ApplyError::Settings(SettingsError::SnatPortRange { min: 0, max: 9 }),
        ApplyError::TooManyServices {
            count: 9000,
            max: 8192,
        },
    ]
}

#[test]
fn errors_about_no_service_go_to_the_message_only() {
    let mut errors = whole_version_errors();
    errors.insert(1, capacity());
    let wire = service_errors(&errors, &objects());
    assert_eq!(wire.len(), 1);
    assert_eq!(wire[0].kind, v1::ServiceErrorKind::Capacity as i32);
    assert_eq!(
        version_message(&errors),
        "version 4 is not above the applied version 5; \
         node settings: SNAT port range 0-9 is empty or starts at 0; \
         9000 services, the data plane holds at most 8192"
    );
    assert_eq!(version_message(&[capacity()]), "");
    assert_eq!(service_errors(&whole_version_errors(), &objects()), []);
}

fn defaults() -> Defaults {
    Defaults {
        snat_addrs: vec![Ipv4Addr::new(192, 0, 2, 1)],
        snat_ports: (10_000, 65_000),
    }
}

fn one_service_state() -> v1::NodeState {
    v1::NodeState {
        version: 3,
        settings: None,
        services: vec![v1::Service {
            object: Some(web_ref()),
            vips: vec![VIP.octets().to_vec()],
            ports: vec![v1::Port {
                port: 443,
                protocol: v1::Protocol::Tcp as i32,
                backends: vec![v1::Backend {
                    address: vec![198, 51, 100, 11],
                    port: 8443,
                    weight: 1,
                }],
            }],
            forwarding: v1::Forwarding::FullNat as i32,
            ..Default::default()
        }],
        announcements: None,
    }
}

#[test]
fn convert_errors_on_the_wire_name_fields_within_their_service() {
    let mut state = one_service_state();
    state.version = 0;
    state.services[0].ports[0].backends[0].port = 0;
    state.services[0].vips.push(vec![0; 16]);
    state.services[0].vips.push(vec![0; 16]);
    let errors = node_desired(&state, &defaults()).unwrap_err();
    let (wire, message) = nack_parts(&errors);
    assert_eq!(message, "version: 0: versions start at 1");
    assert_eq!(
        wire,
        [
            v1::ServiceError {
                object: Some(web_ref()),
                vip: vec![0; 16],
                port: 0,
                protocol: v1::Protocol::Unspecified as i32,
                kind: v1::ServiceErrorKind::Invalid as i32,
                field: "vips[2]".into(),
                reason: "listed twice".into(),
            },
            v1::ServiceError {
                vip: vec![],
                field: "ports[0].backends[0].port".into(),
                reason: "0: ports are 1-65535".into(),
                ..web_443(v1::ServiceErrorKind::Invalid, "", "")
            },
        ]
    );
}

#[test]
fn unsupported_parts_on_the_wire() {
    let mut state = one_service_state();
    state.services[0].vips.push(b"\x20\x01\x0d\xb8".repeat(4));
    state.settings = Some(v1::NodeSettings {
        snat_addresses: vec![[0xfe, 0x80].repeat(8)],
        ..Default::default()
    });
    let c = node_desired(&state, &defaults()).unwrap();
    let (wire, message) = nack_parts(&c.unsupported);
    assert_eq!(
        message,
        "settings.snat_addresses[0]: IPv6 SNAT address fe80:fe80:fe80:fe80:fe80:fe80:fe80:fe80: \
         this data plane forwards IPv4 only; not used"
    );
    assert_eq!(wire.len(), 1);
    assert_eq!(
        (wire[0].object.as_ref(), wire[0].vip.len(), wire[0].port),
        (Some(&web_ref()), 16, 0)
    );
    assert_eq!(
        (wire[0].kind, wire[0].field.as_str()),
        (v1::ServiceErrorKind::Unsupported as i32, "vips[1]")
    );
}

/// The names a conversion gives objects are the ones apply errors carry:
/// a core refusal of a converted state comes back naming the wire object.
#[test]
fn core_refusals_of_a_converted_state_name_the_wire_object() {
    let mut state = one_service_state();
    state.services[0].toa = true;
    state.services[0].ports[0].protocol = v1::Protocol::Udp as i32;
    let c = node_desired(&state, &defaults()).unwrap();
    let refused = crate::core::validate(&c.desired);
    assert_eq!(
        service_errors(&refused, &c.objects),
        [v1::ServiceError {
            protocol: v1::Protocol::Udp as i32,
            ..web_443(v1::ServiceErrorKind::Invalid, "toa", "TOA needs TCP")
        }]
    );
}

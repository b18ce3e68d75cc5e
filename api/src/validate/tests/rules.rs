//! Each rule of a standalone node's validation, one broken at a time.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{backend, example, port, standalone};
use crate::virtual_server::{
    ClientAddressMode, ForwardingMode, PortProtocol, ServiceRef, VirtualServer,
};

type Mutation = fn(&mut VirtualServer);

/// Each case breaks exactly one rule of an otherwise valid object and
/// names the field and a fragment of the reason it must be reported with.
const INVALID: &[(&str, Mutation, &str, &str)] = &[
    (
        "udp probe on an object with TCP ports",
        |vs| {
            vs.spec.health_check = Some(crate::virtual_server::HealthCheck {
                tcp: None,
                http: None,
                udp: Some(Default::default()),
                interval_seconds: 5,
                timeout_seconds: 1,
                healthy_threshold: 1,
                unhealthy_threshold: 1,
            })
        },
        "spec.healthCheck.udp",
        "a UDP probe checks UDP ports",
    ),
    (
        "udp probe expecting nothing",
        |vs| {
            vs.spec.health_check = Some(crate::virtual_server::HealthCheck {
                tcp: None,
                http: None,
                udp: Some(crate::virtual_server::UdpHealthCheck {
                    payload: String::new(),
                    expect: Some(String::new()),
                }),
                interval_seconds: 5,
                timeout_seconds: 1,
                healthy_threshold: 1,
                unhealthy_threshold: 1,
            })
        },
        "spec.healthCheck.udp.expect",
        "1 to 512 bytes",
    ),
    (
        "name missing",
        |vs| vs.metadata.name = None,
        "metadata.name",
        "required",
    ),
    (
        "no addresses",
        |vs| vs.spec.addresses.clear(),
        "spec.addresses",
        "at least one address",
    ),
    (
        "unparsable address",
        |vs| vs.spec.addresses = vec!["web.example".into()],
        "spec.addresses[0]",
        "is not an IP address",
    ),
    (
        "cidr address",
        |vs| vs.spec.addresses = vec!["203.0.113.10/32".into()],
        "spec.addresses[0]",
        "is not an IP address",
    ),
    (
        "ipv6 address",
        |vs| vs.spec.addresses = vec!["2001:db8::1".into()],
        "spec.addresses[0]",
        "IPv6 is not supported by the data plane yet",
    ),
    (
        "duplicate address",
        |vs| vs.spec.addresses.push("203.0.113.10".into()),
        "spec.addresses[1]",
        "duplicate of spec.addresses[0]",
    ),
    (
        "unspecified address",
        |vs| vs.spec.addresses = vec!["0.0.0.0".into()],
        "spec.addresses[0]",
        "unspecified",
    ),
    (
        "multicast address",
        |vs| vs.spec.addresses = vec!["239.1.1.1".into()],
        "spec.addresses[0]",
        "multicast",
    ),
    (
        "broadcast address",
        |vs| vs.spec.addresses = vec!["255.255.255.255".into()],
        "spec.addresses[0]",
        "broadcast",
    ),
    (
        "loopback address",
        |vs| vs.spec.addresses = vec!["127.0.0.10".into()],
        "spec.addresses[0]",
        "loopback",
    ),
    (
        "no ports",
        |vs| vs.spec.ports.clear(),
        "spec.ports",
        "at least one port",
    ),
    (
        "port zero",
        |vs| vs.spec.ports[0].port = 0,
        "spec.ports[0].port",
        "port 0 is out of range 1..=65535",
    ),
    (
        "port too big",
        |vs| vs.spec.ports[0].port = 65536,
        "spec.ports[0].port",
        "port 65536 is out of range",
    ),
    (
        "target port zero",
        |vs| vs.spec.ports[0].target_port = Some(0),
        "spec.ports[0].targetPort",
        "targetPort 0 is out of range",
    ),
    (
        "target port too big",
        |vs| vs.spec.ports[0].target_port = Some(70000),
        "spec.ports[0].targetPort",
        "targetPort 70000 is out of range",
    ),
    (
        "sctp",
        |vs| vs.spec.ports[0].protocol = PortProtocol::Sctp,
        "spec.ports[0].protocol",
        "SCTP is not supported",
    ),
    (
        "duplicate port",
        |vs| {
            vs.spec
                .ports
                .push(port(Some("other"), 80, PortProtocol::Tcp, None))
        },
        "spec.ports[1].port",
        "port 80/TCP is already defined by spec.ports[0]",
    ),
    (
        "duplicate port name",
        |vs| {
            vs.spec
                .ports
                .push(port(Some("http"), 81, PortProtocol::Tcp, None))
        },
        "spec.ports[1].name",
        "duplicate port name \"http\"",
    ),
    (
        "empty port name",
        |vs| vs.spec.ports[0].name = Some(String::new()),
        "spec.ports[0].name",
        "must not be empty",
    ),
    (
        "toa with dr",
        |vs| {
            vs.spec.forwarding = ForwardingMode::Dr;
            vs.spec.ports[0].target_port = None;
        },
        "spec.clientAddress",
        "TOA requires FullNAT forwarding (DR",
    ),
    (
        "toa with nat",
        |vs| vs.spec.forwarding = ForwardingMode::Nat,
        "spec.clientAddress",
        "TOA requires FullNAT forwarding (NAT",
    ),
    (
        "toa with udp",
        |vs| {
            vs.spec
                .ports
                .push(port(Some("dns"), 53, PortProtocol::Udp, None))
        },
        "spec.ports[1].protocol",
        "cannot be used with UDP",
    ),
    (
        "dr changes port",
        |vs| {
            vs.spec.forwarding = ForwardingMode::Dr;
            vs.spec.client_address = ClientAddressMode::None;
        },
        "spec.ports[0].targetPort",
        "DR forwarding cannot change the port (targetPort 8080 != port 80)",
    ),
    (
        "scheduler",
        |vs| vs.spec.scheduler = "RoundRobin".into(),
        "spec.scheduler",
        "\"RoundRobin\" is not supported (only Maglev)",
    ),
    (
        "persistence too long",
        |vs| vs.spec.persistence.as_mut().unwrap().timeout_seconds = 604_801,
        "spec.persistence.timeoutSeconds",
        "exceeds 604800 (7 days)",
    ),
    (
        "persistence negative",
        |vs| vs.spec.persistence.as_mut().unwrap().timeout_seconds = -1,
        "spec.persistence.timeoutSeconds",
        "negative",
    ),
    (
        "static and serviceRef",
        |vs| {
            vs.spec.backends.service_ref = Some(ServiceRef {
                name: "web".into(),
                port: IntOrString::Int(80),
            })
        },
        "spec.backends",
        "mutually exclusive",
    ),
    (
        "no backends",
        |vs| vs.spec.backends.static_backends = None,
        "spec.backends",
        "one of static or serviceRef is required",
    ),
    (
        "serviceRef standalone",
        |vs| {
            vs.spec.backends.static_backends = None;
            vs.spec.backends.service_ref = Some(ServiceRef {
                name: "web".into(),
                port: IntOrString::String("http".into()),
            });
        },
        "spec.backends.serviceRef",
        "not supported in standalone mode",
    ),
    (
        "backend unparsable",
        |vs| vs.spec.backends.static_backends = Some(vec![backend("backend-1", 1)]),
        "spec.backends.static[0].address",
        "\"backend-1\" is not an IPv4 address",
    ),
    (
        "backend ipv6",
        |vs| vs.spec.backends.static_backends = Some(vec![backend("2001:db8::2", 1)]),
        "spec.backends.static[0].address",
        "IPv6 is not supported by the data plane yet",
    ),
    (
        "backend duplicate",
        |vs| {
            vs.spec
                .backends
                .static_backends
                .as_mut()
                .unwrap()
                .push(backend("198.51.100.11", 2))
        },
        "spec.backends.static[1].address",
        "duplicate of spec.backends.static[0]",
    ),
    (
        "backend broadcast",
        |vs| vs.spec.backends.static_backends = Some(vec![backend("255.255.255.255", 1)]),
        "spec.backends.static[0].address",
        "broadcast",
    ),
    (
        "backend loopback",
        |vs| vs.spec.backends.static_backends = Some(vec![backend("127.0.0.1", 1)]),
        "spec.backends.static[0].address",
        "127.0.0.1 is a loopback address",
    ),
    (
        "backend loopback, not 127.0.0.1",
        |vs| vs.spec.backends.static_backends = Some(vec![backend("127.3.2.1", 1)]),
        "spec.backends.static[0].address",
        "loopback",
    ),
    (
        "backend link-local",
        |vs| vs.spec.backends.static_backends = Some(vec![backend("169.254.0.7", 1)]),
        "spec.backends.static[0].address",
        "169.254.0.7 is a link-local address",
    ),
    (
        "backend multicast",
        |vs| vs.spec.backends.static_backends = Some(vec![backend("224.0.0.251", 1)]),
        "spec.backends.static[0].address",
        "224.0.0.251 is a multicast address",
    ),
    (
        "backend unspecified",
        |vs| vs.spec.backends.static_backends = Some(vec![backend("0.0.0.0", 1)]),
        "spec.backends.static[0].address",
        "0.0.0.0 is the unspecified address",
    ),
    (
        "announce bgp in standalone",
        |vs| {
            vs.spec.announce = Some(crate::virtual_server::Announce {
                l2: None,
                bgp: Some(Default::default()),
            })
        },
        "spec.announce.bgp",
        "standalone mode has no BGP speaker",
    ),
    (
        "backend is vip",
        |vs| {
            vs.spec
                .backends
                .static_backends
                .as_mut()
                .unwrap()
                .push(backend("203.0.113.10", 1))
        },
        "spec.backends.static[1].address",
        "is also a VIP",
    ),
    (
        "weight too big",
        |vs| vs.spec.backends.static_backends.as_mut().unwrap()[0].weight = 65_536,
        "spec.backends.static[0].weight",
        "weight 65536 is out of range 0..=65535",
    ),
    (
        "weight negative",
        |vs| vs.spec.backends.static_backends.as_mut().unwrap()[0].weight = -1,
        "spec.backends.static[0].weight",
        "out of range",
    ),
];

#[test]
fn each_rule_is_enforced() {
    for (case, mutate, field, reason) in INVALID {
        let mut vs = example();
        mutate(&mut vs);
        let err = match standalone(&vs) {
            Ok(s) => panic!("{case}: expected an error, got {s:?}"),
            Err(e) => e,
        };
        assert_eq!(
            err.errors.len(),
            1,
            "{case}: exactly one error expected: {err}"
        );
        assert_eq!(err.errors[0].field, *field, "{case}: {err}");
        assert!(err.errors[0].reason.contains(reason), "{case}: {err}");
    }
}

/// Boundary and "looks suspicious but is legal" cases.
const VALID: &[(&str, Mutation)] = &[
    ("max persistence", |vs| {
        vs.spec.persistence.as_mut().unwrap().timeout_seconds = 604_800
    }),
    ("no persistence", |vs| vs.spec.persistence = None),
    ("all drained", |vs| {
        vs.spec.backends.static_backends.as_mut().unwrap()[0].weight = 0
    }),
    ("empty static list", |vs| {
        vs.spec.backends.static_backends = Some(vec![])
    }),
    ("backend next to the loopback and link-local ranges", |vs| {
        vs.spec.backends.static_backends = Some(vec![
            backend("126.255.255.255", 1),
            backend("128.0.0.1", 1),
            backend("169.253.255.255", 1),
            backend("169.255.0.1", 1),
            backend("223.255.255.254", 1),
        ])
    }),
    ("announce l2 in standalone", |vs| {
        vs.spec.announce = Some(crate::virtual_server::Announce {
            l2: Some(Default::default()),
            bgp: None,
        })
    }),
    ("max weight", |vs| {
        vs.spec.backends.static_backends.as_mut().unwrap()[0].weight = 65_535
    }),
    ("port bounds", |vs| {
        vs.spec.ports[0].port = 65535;
        vs.spec.ports[0].target_port = Some(1);
    }),
    ("same port other protocol", |vs| {
        vs.spec.client_address = ClientAddressMode::None;
        vs.spec.ports.push(port(None, 80, PortProtocol::Udp, None));
    }),
    ("unnamed ports", |vs| {
        vs.spec.ports[0].name = None;
        vs.spec.ports.push(port(None, 81, PortProtocol::Tcp, None));
    }),
    ("nat changes port", |vs| {
        vs.spec.forwarding = ForwardingMode::Nat;
        vs.spec.client_address = ClientAddressMode::None;
    }),
    ("dr same port", |vs| {
        vs.spec.forwarding = ForwardingMode::Dr;
        vs.spec.client_address = ClientAddressMode::None;
        vs.spec.ports[0].target_port = Some(80);
    }),
];

#[test]
fn legal_edge_cases_pass() {
    for (case, mutate) in VALID {
        let mut vs = example();
        mutate(&mut vs);
        if let Err(e) = standalone(&vs) {
            panic!("{case}: {e}");
        }
    }
}

#[test]
fn display_matches_documented_format() {
    let mut vs = example();
    vs.spec.forwarding = ForwardingMode::Dr;
    vs.spec.client_address = ClientAddressMode::None;
    vs.spec.ports = vec![
        port(Some("https"), 443, PortProtocol::Tcp, None),
        port(Some("http"), 80, PortProtocol::Tcp, Some(8080)),
    ];
    let err = standalone(&vs).unwrap_err();
    assert_eq!(err.object, "default/web");
    assert_eq!(err.errors[0].field, "spec.ports[1].targetPort");
    assert_eq!(
        err.to_string(),
        "default/web: spec.ports[1].targetPort: DR forwarding cannot change the port \
         (targetPort 8080 != port 80)"
    );
}

#[test]
fn all_errors_are_collected() {
    let mut vs = example();
    vs.spec.addresses = vec!["nope".into(), "2001:db8::1".into()];
    vs.spec.ports[0].port = 0;
    vs.spec.scheduler = "WRR".into();
    vs.spec.backends.static_backends.as_mut().unwrap()[0].weight = -5;
    let err = standalone(&vs).unwrap_err();
    let fields: Vec<_> = err.errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "spec.addresses[0]",
            "spec.addresses[1]",
            "spec.ports[0].port",
            "spec.scheduler",
            "spec.backends.static[0].weight",
        ]
    );
    let text = err.to_string();
    assert_eq!(text.matches("default/web: ").count(), 5, "{text}");
    assert_eq!(err.lines().count(), 5);
}

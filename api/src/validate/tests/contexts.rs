//! What depends on who validates (a standalone node or the controller) and
//! on the address families the caller serves.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Families, IPV4_ONLY, ValidationContext, check, example, standalone};
use crate::virtual_server::{HealthCheck, HttpHealthCheck, ServiceRef, VirtualServer};

const CONTROLLER: ValidationContext = ValidationContext::Controller;

fn vs() -> VirtualServer {
    serde_yaml::from_str(
        r#"
apiVersion: ballast.dev/v1alpha1
kind: VirtualServer
metadata: {name: web, namespace: prod}
spec:
  addresses: [203.0.113.10]
  ports: [{port: 80}]
  backends: {static: [{address: 198.51.100.11}]}
"#,
    )
    .unwrap()
}

type Mutation = fn(&mut VirtualServer);

const REJECTED: &[(&str, Mutation, &str, &str)] = &[
    (
        "source range not a CIDR",
        |v| v.spec.source_ranges = vec!["10.0.0.1".into()],
        "spec.sourceRanges[0]",
        "not a CIDR",
    ),
    (
        "source range with host bits",
        |v| v.spec.source_ranges = vec!["198.51.100.7/24".into()],
        "spec.sourceRanges[0]",
        "did you mean 198.51.100.0/24",
    ),
    (
        "health check without a probe",
        |v| {
            v.spec.health_check = Some(HealthCheck {
                tcp: None,
                http: None,
                udp: None,
                interval_seconds: 5,
                timeout_seconds: 1,
                healthy_threshold: 1,
                unhealthy_threshold: 1,
            })
        },
        "spec.healthCheck",
        "one of tcp, http or udp",
    ),
    (
        "http path relative",
        |v| {
            v.spec.health_check = Some(HealthCheck {
                tcp: None,
                http: Some(HttpHealthCheck {
                    path: "healthz".into(),
                    expect_status: 200,
                }),
                udp: None,
                interval_seconds: 5,
                timeout_seconds: 1,
                healthy_threshold: 1,
                unhealthy_threshold: 1,
            })
        },
        "spec.healthCheck.http.path",
        "must start with /",
    ),
    (
        "node selector key",
        |v| {
            v.spec.node_selector.insert("-bad".into(), "x".into());
        },
        "spec.nodeSelector[-bad]",
        "not a valid label name",
    ),
    (
        "addresses and pool",
        |v| v.spec.address_pool = Some("public".into()),
        "spec.addressPool",
        "not both",
    ),
];

#[test]
fn controller_field_rules() {
    for (case, mutate, field, reason) in REJECTED {
        let mut v = vs();
        mutate(&mut v);
        let err = check(&v, CONTROLLER, Families::Both).expect_err(case);
        assert_eq!(err.errors.len(), 1, "{case}: {err}");
        assert_eq!(err.errors[0].field, *field, "{case}: {err}");
        assert!(err.errors[0].reason.contains(reason), "{case}: {err}");
    }
}

/// Backend addresses refused in both contexts, IPv6 included (the
/// controller plans IPv6; the agent's data plane refuses it, separately).
const NEVER_A_BACKEND: &[(&str, &str, &str)] = &[
    ("IPv4 loopback", "127.0.0.1", "loopback"),
    ("IPv4 loopback range", "127.255.0.9", "loopback"),
    ("IPv4 link-local", "169.254.169.254", "link-local"),
    ("IPv4 multicast", "239.255.255.250", "multicast"),
    ("IPv4 unspecified", "0.0.0.0", "unspecified"),
    ("IPv4 broadcast", "255.255.255.255", "broadcast"),
    ("IPv6 loopback", "::1", "loopback"),
    ("IPv6 link-local", "fe80::1", "link-local"),
    ("IPv6 link-local, top of fe80::/10", "febf::1", "link-local"),
    ("IPv6 multicast", "ff02::1", "multicast"),
    ("IPv6 unspecified", "::", "unspecified"),
    ("IPv4-mapped loopback", "::ffff:127.0.0.1", "loopback"),
    (
        "IPv4-mapped broadcast",
        "::ffff:255.255.255.255",
        "broadcast",
    ),
];

#[test]
fn never_a_backend_in_either_mode() {
    for (case, address, reason) in NEVER_A_BACKEND {
        for ctx in [CONTROLLER, ValidationContext::Standalone] {
            let mut v = vs();
            v.spec.backends.static_backends.as_mut().unwrap()[0].address = (*address).to_string();
            let err = check(&v, ctx, Families::Both).expect_err(case);
            assert_eq!(err.object, "prod/web", "{case}");
            assert_eq!(err.errors.len(), 1, "{case}: {err}");
            assert_eq!(
                err.errors[0].field, "spec.backends.static[0].address",
                "{case}: {err}"
            );
            assert!(err.errors[0].reason.contains(reason), "{case}: {err}");
        }
    }
    // Just outside those ranges: ordinary unicast, accepted.
    for address in ["fec0::1", "2001:db8::1", "128.0.0.1", "169.255.0.1"] {
        let mut v = vs();
        v.spec.backends.static_backends.as_mut().unwrap()[0].address = address.to_string();
        check(&v, CONTROLLER, Families::Both).unwrap_or_else(|e| panic!("{address}: {e}"));
    }
}

#[test]
fn bgp_announcement_is_refused_only_in_standalone() {
    let mut v = vs();
    v.spec.announce = Some(crate::virtual_server::Announce {
        l2: None,
        bgp: Some(Default::default()),
    });
    assert!(check(&v, CONTROLLER, Families::Both).is_ok());
    let err = check(&v, ValidationContext::Standalone, Families::Both).unwrap_err();
    assert_eq!(err.errors[0].field, "spec.announce.bgp");
    assert_eq!(
        err.to_string().split(": ").take(2).collect::<Vec<_>>(),
        ["prod/web", "spec.announce.bgp"]
    );
}

#[test]
fn empty_addresses_need_the_controller() {
    let mut v = vs();
    v.spec.addresses.clear();
    v.spec.address_pool = Some("public".into());
    let err = check(&v, ValidationContext::Standalone, Families::Both).unwrap_err();
    let fields: Vec<_> = err.errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["spec.addresses", "spec.addressPool"]);
    v.spec.backends.static_backends = None;
    v.spec.backends.service_ref = Some(ServiceRef {
        name: "web".into(),
        port: IntOrString::Int(80),
    });
    let checked = check(&v, CONTROLLER, Families::Both).unwrap();
    assert!(checked.addresses.is_empty());
}

#[test]
fn ipv6_is_checked_but_not_yet_served() {
    let mut v = vs();
    v.spec.addresses = vec!["2001:db8::10".into()];
    v.spec.backends.static_backends.as_mut().unwrap()[0].address = "2001:db8:1::11".into();
    let checked = check(&v, CONTROLLER, Families::Both).unwrap();
    assert_eq!(checked.addresses[0].to_string(), "2001:db8::10");
    let err = check(&v, CONTROLLER, IPV4_ONLY).unwrap_err();
    let fields: Vec<_> = err.errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        ["spec.addresses[0]", "spec.backends.static[0].address"]
    );
    v.spec.addresses = vec!["ff02::1".into()];
    let err = check(&v, CONTROLLER, Families::Both).unwrap_err();
    assert!(err.errors[0].reason.contains("multicast"), "{err}");
}

#[test]
fn controller_context_accepts_service_ref() {
    let mut vs = example();
    vs.spec.backends.static_backends = None;
    vs.spec.backends.service_ref = Some(ServiceRef {
        name: "web".into(),
        port: IntOrString::String("http".into()),
    });
    assert!(standalone(&vs).is_err());
    let checked = check(&vs, CONTROLLER, IPV4_ONLY).unwrap();
    assert_eq!((checked.addresses.len(), checked.ports.len()), (1, 1));
    assert!(checked.static_backends.is_empty());

    vs.spec.backends.service_ref.as_mut().unwrap().name.clear();
    let err = check(&vs, CONTROLLER, IPV4_ONLY).unwrap_err();
    assert_eq!(err.errors[0].field, "spec.backends.serviceRef.name");
}

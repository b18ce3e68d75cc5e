//! Rules for the VirtualServer fields the controller consumes (source ranges,
//! health checks, node selector, address pool). Split from `validate` so each
//! file keeps to one group of fields; the entry point stays
//! [`crate::validate::check`].

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::health::HealthCheckSpec;
use crate::validate::{Errors, Mode, unicast_problem};
use crate::virtual_server::{HealthCheck, VirtualServerSpec};

pub(crate) fn source_ranges(ranges: &[String], errs: &mut Errors) -> Vec<IpNet> {
    let mut out = Vec::with_capacity(ranges.len());
    for (i, r) in ranges.iter().enumerate() {
        let field = format!("spec.sourceRanges[{i}]");
        match r.parse::<IpNet>() {
            // A CIDR with host bits set is almost always a typo for a
            // different, narrower range; say so instead of guessing.
            Ok(net) if net.trunc() != net => errs.push(
                field,
                format!("{r} has host bits set (did you mean {}?)", net.trunc()),
            ),
            Ok(net) => out.push(net),
            Err(_) => errs.push(
                field,
                format!("{r:?} is not a CIDR (e.g. 198.51.100.0/24 or 2001:db8::/32)"),
            ),
        }
    }
    out
}

/// Checks `spec.healthCheck` and returns it typed when it is valid.
pub(crate) fn health_check(hc: Option<&HealthCheck>, errs: &mut Errors) -> Option<HealthCheckSpec> {
    let hc = hc?;
    let errors_before = errs.0.len();
    match (&hc.tcp, &hc.http) {
        (Some(_), Some(_)) => errs.push("spec.healthCheck", "set exactly one of tcp and http"),
        (None, None) => errs.push("spec.healthCheck", "one of tcp or http is required"),
        (None, Some(http)) => {
            if !http.path.starts_with('/') {
                errs.push(
                    "spec.healthCheck.http.path",
                    format!("{:?} must start with /", http.path),
                );
            }
            if !(100..=599).contains(&http.expect_status) {
                errs.push(
                    "spec.healthCheck.http.expectStatus",
                    format!("{} is not an HTTP status (100..=599)", http.expect_status),
                );
            }
        }
        (Some(_), None) => {}
    }
    let ranges = [
        ("intervalSeconds", hc.interval_seconds, 3600),
        ("timeoutSeconds", hc.timeout_seconds, 3600),
        ("healthyThreshold", hc.healthy_threshold, 100),
        ("unhealthyThreshold", hc.unhealthy_threshold, 100),
    ];
    for (field, value, max) in ranges {
        if !(1..=max).contains(&value) {
            errs.push(
                format!("spec.healthCheck.{field}"),
                format!("{value} is out of range 1..={max}"),
            );
        }
    }
    // Equal is allowed so that a 1 s interval (the shortest) can be had.
    if hc.timeout_seconds > hc.interval_seconds {
        errs.push(
            "spec.healthCheck.timeoutSeconds",
            format!(
                "{}s must not exceed intervalSeconds ({}s)",
                hc.timeout_seconds, hc.interval_seconds
            ),
        );
    }
    if errs.0.len() > errors_before {
        return None;
    }
    HealthCheckSpec::from_valid(hc)
}

/// Kubernetes label syntax: an optional DNS-subdomain prefix and a name of at
/// most 63 characters; values likewise (may be empty).
pub(crate) fn node_selector(selector: &BTreeMap<String, String>, errs: &mut Errors) {
    for (key, value) in selector {
        let field = format!("spec.nodeSelector[{key}]");
        let (prefix, name) = match key.rsplit_once('/') {
            Some((p, n)) => (Some(p), n),
            None => (None, key.as_str()),
        };
        if let Some(p) = prefix
            && (p.is_empty() || p.len() > 253 || !p.split('.').all(is_dns_label))
        {
            errs.push(&field, format!("key prefix {p:?} is not a DNS subdomain"));
        }
        if !is_label_name(name) {
            errs.push(
                &field,
                format!("key name {name:?} is not a valid label name (alphanumerics, '-', '_', '.', at most 63, starting and ending alphanumeric)"),
            );
        }
        if !value.is_empty() && !is_label_name(value) {
            errs.push(
                &field,
                format!("value {value:?} is not a valid label value"),
            );
        }
    }
}

pub(crate) fn address_pool(spec: &VirtualServerSpec, mode: Mode, errs: &mut Errors) {
    let Some(pool) = &spec.address_pool else {
        return;
    };
    if mode == Mode::Standalone {
        errs.push(
            "spec.addressPool",
            "address pools are allocated by the controller; in standalone mode list the VIPs under spec.addresses",
        );
    } else if !spec.addresses.is_empty() {
        errs.push(
            "spec.addressPool",
            "set either addresses or addressPool, not both (a pool is only used to allocate when addresses is empty)",
        );
    } else if pool.is_empty() || !pool.split('.').all(is_dns_label) {
        errs.push(
            "spec.addressPool",
            format!("{pool:?} is not a valid AddressPool name"),
        );
    }
}

/// Addresses that are never a backend, in either mode: besides what is never
/// a unicast endpoint (unspecified, multicast, broadcast), loopback would
/// deliver to the director itself, and link-local is not routable, so the
/// director could not reach it beyond one link. IPv4-mapped IPv6 addresses
/// are judged as the IPv4 address they carry.
pub(crate) fn backend_address(ip: IpAddr) -> Option<String> {
    let canonical = ip.to_canonical();
    if let Some(p) = unicast_problem(ip).or_else(|| unicast_problem(canonical)) {
        return Some(p);
    }
    let link_local = match canonical {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_unicast_link_local(),
    };
    if canonical.is_loopback() {
        Some(format!(
            "{ip} is a loopback address: traffic would be delivered to the director itself"
        ))
    } else if link_local {
        Some(format!(
            "{ip} is a link-local address: not routable, and ambiguous without an interface"
        ))
    } else {
        None
    }
}

/// Announcement methods the mode cannot perform. Standalone has no BGP
/// speaker: accepting `bgp` would leave the VIPs unreachable from beyond the
/// local segment while the user believes they are routed.
pub(crate) fn announce(spec: &VirtualServerSpec, mode: Mode, errs: &mut Errors) {
    if mode == Mode::Standalone && spec.announce.as_ref().is_some_and(|a| a.bgp.is_some()) {
        errs.push(
            "spec.announce.bgp",
            "standalone mode has no BGP speaker, so the VIPs would not be advertised to \
             routers; remove it (standalone answers ARP on its interface, as announce.l2 does) \
             or run under the controller",
        );
    }
}

fn is_label_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use crate::validate::{Mode, check, validate_with};
    use crate::virtual_server::{HealthCheck, HttpHealthCheck, ServiceRef, VirtualServer};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn vs() -> VirtualServer {
        crate::parse_yaml(
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
                    interval_seconds: 5,
                    timeout_seconds: 1,
                    healthy_threshold: 1,
                    unhealthy_threshold: 1,
                })
            },
            "spec.healthCheck",
            "one of tcp or http",
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
            let err = check(&v, Mode::Controller).expect_err(case);
            assert_eq!(err.errors.len(), 1, "{case}: {err}");
            assert_eq!(err.errors[0].field, *field, "{case}: {err}");
            assert!(err.errors[0].reason.contains(reason), "{case}: {err}");
        }
    }

    /// Backend addresses refused in both modes, IPv6 included (the
    /// controller plans IPv6; the data plane refuses it later, separately).
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
            for mode in [Mode::Controller, Mode::Standalone] {
                let mut v = vs();
                v.spec.backends.static_backends.as_mut().unwrap()[0].address =
                    (*address).to_string();
                let err = check(&v, mode).expect_err(case);
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
            check(&v, Mode::Controller).unwrap_or_else(|e| panic!("{address}: {e}"));
        }
    }

    #[test]
    fn bgp_announcement_is_refused_only_in_standalone() {
        let mut v = vs();
        v.spec.announce = Some(crate::virtual_server::Announce {
            l2: None,
            bgp: Some(Default::default()),
        });
        assert!(check(&v, Mode::Controller).is_ok());
        let err = check(&v, Mode::Standalone).unwrap_err();
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
        let err = check(&v, Mode::Standalone).unwrap_err();
        let fields: Vec<_> = err.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["spec.addresses", "spec.addressPool"]);
        v.spec.backends.static_backends = None;
        v.spec.backends.service_ref = Some(ServiceRef {
            name: "web".into(),
            port: IntOrString::Int(80),
        });
        let checked = check(&v, Mode::Controller).unwrap();
        assert!(checked.addresses.is_empty());
    }

    #[test]
    fn ipv6_is_checked_but_not_yet_served() {
        let mut v = vs();
        v.spec.addresses = vec!["2001:db8::10".into()];
        v.spec.backends.static_backends.as_mut().unwrap()[0].address = "2001:db8:1::11".into();
        let checked = check(&v, Mode::Controller).unwrap();
        assert_eq!(checked.addresses[0].to_string(), "2001:db8::10");
        let err = validate_with(&v, Mode::Controller).unwrap_err();
        let fields: Vec<_> = err.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["spec.addresses[0]", "spec.backends.static[0].address"]
        );
        v.spec.addresses = vec!["ff02::1".into()];
        let err = check(&v, Mode::Controller).unwrap_err();
        assert!(err.errors[0].reason.contains("multicast"), "{err}");
    }
}

//! One row per INVALID rule: one edit of the valid state, and the one
//! error that refuses the whole version.
use super::*;

/// Where the error must be.
#[derive(Clone, Copy, Debug)]
struct At {
    /// `object_label` of the error's object.
    object: Option<&'static str>,
    vip: Option<&'static str>,
    port: u16,
    protocol: Option<Protocol>,
}

const NODE: At = At {
    object: None,
    vip: None,
    port: 0,
    protocol: None,
};
const WEB: At = At {
    object: Some("VirtualServer shop/web"),
    ..NODE
};
const WEB_443: At = At {
    port: 443,
    protocol: Some(Protocol::Tcp),
    ..WEB
};
const API: At = At {
    object: Some("Service shop/api"),
    ..NODE
};

/// (description, edit, where, field, a fragment of the reason).
type Row = (
    &'static str,
    fn(&mut NodeState),
    At,
    &'static str,
    &'static str,
);

fn settings(s: &mut NodeState) -> &mut v1::NodeSettings {
    s.settings.as_mut().unwrap()
}

fn web(s: &mut NodeState) -> &mut v1::Service {
    &mut s.services[0]
}

fn web_object(s: &mut NodeState) -> &mut v1::ObjectRef {
    s.services[0].object.as_mut().unwrap()
}

fn api_object(s: &mut NodeState) -> &mut v1::ObjectRef {
    s.services[1].object.as_mut().unwrap()
}

fn web_443(s: &mut NodeState) -> &mut v1::Port {
    &mut s.services[0].ports[0]
}

fn web_check(s: &mut NodeState) -> &mut v1::HealthCheck {
    s.services[0].health_check.as_mut().unwrap()
}

fn web_http(s: &mut NodeState) -> &mut v1::HttpProbe {
    match &mut web_check(s).probe {
        Some(health_check::Probe::Http(h)) => h,
        _ => unreachable!("web has an HTTP check"),
    }
}

fn l2(s: &mut NodeState) -> &mut Vec<Vec<u8>> {
    &mut s.announcements.as_mut().unwrap().l2
}

#[rustfmt::skip]
const ROWS: &[Row] = &[
    ("version 0", |s| s.version = 0, NODE, "version", "0: versions start at 1"),
    // Settings.
    ("SNAT address of 5 bytes", |s| settings(s).snat_addresses[1] = vec![1, 2, 3, 4, 5],
     NODE, "settings.snat_addresses[1]", "5 bytes (4 for IPv4, 16 for IPv6)"),
    ("SNAT port min 0 with a max", |s| settings(s).snat_port_min = 0,
     NODE, "settings.snat_port_min", "0: ports are 1-65535, or 0 together with snat_port_max 0"),
    ("SNAT port min above 65535", |s| settings(s).snat_port_min = 65_536,
     NODE, "settings.snat_port_min", "65536: ports are 1-65535"),
    ("SNAT port max 0 with a min", |s| settings(s).snat_port_max = 0,
     NODE, "settings.snat_port_max", "0: ports are 1-65535"),
    ("SNAT port max above 65535", |s| settings(s).snat_port_max = 70_000,
     NODE, "settings.snat_port_max", "70000: ports are 1-65535"),
    ("SNAT port max below min", |s| settings(s).snat_port_max = 19_999,
     NODE, "settings.snat_port_max", "19999 is below snat_port_min 20000"),
    // Object references.
    ("service without an object", |s| s.services[1].object = None,
     NODE, "services[1].object", "absent"),
    ("object kind UNSPECIFIED", |s| web_object(s).kind = 0,
     At { object: Some("object of kind 0 shop/web"), ..NODE },
     "services[0].object.kind", "UNSPECIFIED: VIRTUAL_SERVER or SERVICE"),
    ("object kind unknown", |s| web_object(s).kind = 7,
     At { object: Some("object of kind 7 shop/web"), ..NODE },
     "services[0].object.kind", "unknown value 7"),
    ("empty namespace", |s| api_object(s).namespace.clear(),
     At { object: Some("Service /api"), ..NODE }, "services[1].object.namespace", "empty"),
    ("empty name", |s| api_object(s).name.clear(),
     At { object: Some("Service shop/"), ..NODE }, "services[1].object.name", "empty"),
    ("object listed twice", |s| s.services[1].object = s.services[0].object.clone(),
     WEB, "services[1].object", "listed twice (first at services[0])"),
    // VIPs.
    ("no VIP", |s| web(s).vips.clear(), WEB, "services[0].vips", "at least one VIP"),
    ("VIP of 3 bytes", |s| web(s).vips[1] = vec![203, 0, 113],
     WEB, "services[0].vips[1]", "3 bytes (4 for IPv4, 16 for IPv6)"),
    ("VIP listed twice", |s| web(s).vips[1] = b("203.0.113.10"),
     At { vip: Some("203.0.113.10"), ..WEB }, "services[0].vips[1]", "listed twice"),
    ("forwarding UNSPECIFIED", |s| web(s).forwarding = 0,
     WEB, "services[0].forwarding", "UNSPECIFIED: FULL_NAT, DR or NAT"),
    ("forwarding unknown", |s| web(s).forwarding = 9,
     WEB, "services[0].forwarding", "unknown value 9"),
    // Ports and backends.
    ("no port", |s| web(s).ports.clear(), WEB, "services[0].ports", "at least one port"),
    ("frontend port 0", |s| web_443(s).port = 0,
     WEB, "services[0].ports[0].port", "0: ports are 1-65535"),
    ("frontend port above 65535", |s| web_443(s).port = 65_536,
     WEB, "services[0].ports[0].port", "65536: ports are 1-65535"),
    ("protocol UNSPECIFIED", |s| web_443(s).protocol = 0,
     WEB, "services[0].ports[0].protocol", "UNSPECIFIED: TCP or UDP"),
    ("protocol unknown", |s| web_443(s).protocol = 3,
     WEB, "services[0].ports[0].protocol", "unknown value 3"),
    ("two ports with the same port and protocol", |s| web(s).ports[1].port = 443,
     WEB_443, "services[0].ports[1]", "the same port and protocol as ports[0]"),
    ("backend address of 0 bytes", |s| web_443(s).backends[1].address.clear(),
     WEB_443, "services[0].ports[0].backends[1].address", "0 bytes"),
    ("backend port 0", |s| web_443(s).backends[1].port = 0,
     WEB_443, "services[0].ports[0].backends[1].port", "0: ports are 1-65535"),
    ("backend port above 65535", |s| web_443(s).backends[1].port = 65_536,
     WEB_443, "services[0].ports[0].backends[1].port", "65536: ports are 1-65535"),
    // Source ranges.
    ("source range address of 5 bytes", |s| web(s).source_ranges[0].address.push(0),
     WEB, "services[0].source_ranges[0].address", "5 bytes"),
    ("IPv4 prefix longer than 32", |s| web(s).source_ranges[0].prefix_len = 33,
     WEB, "services[0].source_ranges[0].prefix_len", "33: at most 32 for IPv4"),
    ("IPv6 prefix longer than 128", |s| web(s).source_ranges[1].prefix_len = 129,
     WEB, "services[0].source_ranges[1].prefix_len", "129: at most 128 for IPv6"),
    ("prefix length beyond a byte", |s| web(s).source_ranges[0].prefix_len = 264,
     WEB, "services[0].source_ranges[0].prefix_len", "264: at most 32 for IPv4"),
    ("source range with host bits", |s| web(s).source_ranges[0].address = b("10.1.0.0"),
     WEB, "services[0].source_ranges[0]", "10.1.0.0/8 has host bits set (the network is 10.0.0.0/8)"),
    // Health check.
    ("health check without a probe", |s| web_check(s).probe = None,
     WEB, "services[0].health_check.probe", "absent: tcp, http or udp"),
    ("interval 0", |s| web_check(s).interval_ms = 0,
     WEB, "services[0].health_check.interval_ms", "0: at least 1"),
    ("timeout 0", |s| web_check(s).timeout_ms = 0,
     WEB, "services[0].health_check.timeout_ms", "0: at least 1"),
    ("timeout longer than the interval", |s| web_check(s).timeout_ms = 3001,
     WEB, "services[0].health_check.timeout_ms", "3001 is longer than interval_ms 3000"),
    ("healthy threshold 0", |s| web_check(s).healthy_threshold = 0,
     WEB, "services[0].health_check.healthy_threshold", "0: at least 1"),
    ("unhealthy threshold 0", |s| web_check(s).unhealthy_threshold = 0,
     WEB, "services[0].health_check.unhealthy_threshold", "0: at least 1"),
    ("HTTP path without a leading /", |s| web_http(s).path = "healthz".into(),
     WEB, "services[0].health_check.http.path", "\"healthz\" does not start with \"/\""),
    ("HTTP status below 100", |s| web_http(s).expect_status = 99,
     WEB, "services[0].health_check.http.expect_status", "99: an HTTP status is 100-599"),
    ("HTTP status above 599", |s| web_http(s).expect_status = 600,
     WEB, "services[0].health_check.http.expect_status", "600: an HTTP status is 100-599"),
    // A problem in the second object names it.
    ("the second object's backend port 0", |s| s.services[1].ports[1].backends[0].port = 0,
     At { port: 53, protocol: Some(Protocol::Tcp), ..API },
     "services[1].ports[1].backends[0].port", "0: ports are 1-65535"),
    // Announcements.
    ("L2 announcement of 5 bytes", |s| l2(s)[0].push(0),
     NODE, "announcements.l2[0]", "5 bytes"),
    ("L2 announcement listed twice", |s| l2(s).push(b("203.0.113.10")),
     At { vip: Some("203.0.113.10"), ..NODE }, "announcements.l2[2]", "listed twice"),
    ("BGP announcement listed twice",
     |s| s.announcements.as_mut().unwrap().bgp = vec![b("203.0.113.11"), b("203.0.113.11")],
     At { vip: Some("203.0.113.11"), ..NODE }, "announcements.bgp[1]", "listed twice"),
];

#[test]
fn every_invalid_field_refuses_the_version_with_a_typed_error() {
    for &(desc, edit, at, field, reason) in ROWS {
        let mut s = state();
        edit(&mut s);
        let errors = match node_desired(&s, &defaults()) {
            Ok(_) => panic!("{desc}: converted, not refused"),
            Err(errors) => errors,
        };
        assert_eq!(errors.len(), 1, "{desc}: {errors:#?}");
        let e = &errors[0];
        assert_eq!(e.kind, ErrorKind::Invalid, "{desc}");
        assert_eq!(
            e.object.as_ref().map(object_label).as_deref(),
            at.object,
            "{desc}"
        );
        assert_eq!(e.vip, at.vip.map(ip), "{desc}");
        assert_eq!((e.port, e.protocol), (at.port, at.protocol), "{desc}");
        assert_eq!(e.field, field, "{desc}");
        assert!(
            e.reason.contains(reason),
            "{desc}: {:?} lacks {reason:?}",
            e.reason
        );
    }
}

#[test]
fn every_problem_is_listed_in_wire_order() {
    let mut s = state();
    s.version = 0;
    s.services[1].ports[0].port = 0;
    s.services[0].forwarding = 0;
    s.services[0].vips[0] = vec![1];
    l2(&mut s)[1] = vec![];
    settings(&mut s).snat_port_min = 70_000;
    settings(&mut s).snat_port_max = 70_000;
    let errors = node_desired(&s, &defaults()).unwrap_err();
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "version",
            "settings.snat_port_min",
            "settings.snat_port_max",
            "services[0].vips[0]",
            "services[0].forwarding",
            "services[1].ports[0].port",
            "announcements.l2[1]",
        ]
    );
    assert!(errors.iter().all(|e| e.kind == ErrorKind::Invalid));
}

#[test]
fn an_invalid_version_is_refused_even_with_unsupported_parts() {
    let mut s = state();
    s.services[0].vips[1] = b("2001:db8::10");
    s.services[1].forwarding = 0;
    let errors = node_desired(&s, &defaults()).unwrap_err();
    assert_eq!(errors.len(), 1, "only INVALID problems refuse: {errors:#?}");
    assert_eq!(errors[0].field, "services[1].forwarding");
}

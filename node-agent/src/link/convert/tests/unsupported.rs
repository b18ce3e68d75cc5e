//! IPv6 parts on this IPv4-only data plane: skipped and reported, the rest
//! of the version converts.
use super::*;
use crate::core::{ApplyError, ServiceProblem, ServiceRef};

/// (description, edit of the valid state, checks on the conversion).
type Case = (&'static str, fn(&mut NodeState), fn(&Converted));

/// (VIP, port, protocol) of every converted service, in order.
fn keys(c: &Converted) -> Vec<(Ipv4Addr, u16, Protocol)> {
    c.desired
        .services
        .iter()
        .map(|s| (s.vip, s.port, s.protocol))
        .collect()
}

fn only(c: &Converted) -> &ConvertError {
    assert_eq!(c.unsupported.len(), 1, "{:#?}", c.unsupported);
    assert_eq!(c.unsupported[0].kind, ErrorKind::Unsupported);
    &c.unsupported[0]
}

const TCP: Protocol = Protocol::Tcp;
const UDP: Protocol = Protocol::Udp;

fn api_keys() -> Vec<(Ipv4Addr, u16, Protocol)> {
    vec![
        (v4("203.0.113.20"), 53, UDP),
        (v4("203.0.113.20"), 53, TCP),
        (v4("203.0.113.21"), 53, UDP),
        (v4("203.0.113.21"), 53, TCP),
    ]
}

/// The web services (VIP, TCP port) kept, then all of api's.
fn web_then_api(web: &[(&str, u16)]) -> Vec<(Ipv4Addr, u16, Protocol)> {
    let web = web.iter().map(|&(vip, port)| (v4(vip), port, TCP));
    web.chain(api_keys()).collect()
}

/// The one error, which must be about web.
fn only_web(c: &Converted) -> &ConvertError {
    let e = only(c);
    let web = object_ref(v1::ObjectKind::VirtualServer, "web");
    assert_eq!(e.object, Some(web));
    e
}

const CASES: &[Case] = &[
    (
        "an IPv6 VIP: that VIP's services are skipped, the other VIP's kept",
        |s| s.services[0].vips[1] = b("2001:db8::11"),
        |c| {
            let kept = [("203.0.113.10", 443), ("203.0.113.10", 80)];
            assert_eq!(keys(c), web_then_api(&kept));
            let e = only_web(c);
            assert_eq!(
                (e.vip, e.port, e.protocol),
                (Some(ip("2001:db8::11")), 0, None)
            );
            assert_eq!(e.field, "services[0].vips[1]");
            assert!(
                e.reason
                    .starts_with("IPv6 VIP: this data plane forwards IPv4 only")
            );
        },
    ),
    (
        "an IPv6 backend: its port is skipped on every VIP, the other port kept",
        |s| {
            s.services[0].ports[1]
                .backends
                .push(backend("2001:db8::5", 8080, 1))
        },
        |c| {
            let kept = [("203.0.113.10", 443), ("203.0.113.11", 443)];
            assert_eq!(keys(c), web_then_api(&kept));
            let e = only_web(c);
            assert_eq!((e.vip, e.port, e.protocol), (None, 80, Some(TCP)));
            assert_eq!(e.field, "services[0].ports[1].backends[1].address");
            assert!(e.reason.contains("IPv6 backend 2001:db8::5 (1 of 2)"));
            assert!(e.reason.contains("would change how its flows spread"));
        },
    ),
    (
        "an IPv6 SNAT address is not used, the IPv4 one is",
        |s| s.settings.as_mut().unwrap().snat_addresses[0] = b("2001:db8::1"),
        |c| {
            assert_eq!(c.desired.settings.snat_addrs, [v4("192.0.2.2")]);
            assert_eq!(c.desired.services.len(), 8);
            let e = only(c);
            assert_eq!((&e.object, e.vip, e.port), (&None, None, 0));
            assert_eq!(e.field, "settings.snat_addresses[0]");
            assert!(e.reason.starts_with("IPv6 SNAT address 2001:db8::1:"));
        },
    ),
    (
        "IPv6 SNAT addresses only: none (not the default); core refuses FullNAT",
        |s| s.settings.as_mut().unwrap().snat_addresses = vec![b("2001:db8::1")],
        |c| {
            assert!(c.desired.settings.snat_addrs.is_empty());
            assert_eq!(only(c).field, "settings.snat_addresses[0]");
            let refused = crate::core::validate(&c.desired);
            assert_eq!(refused.len(), 4, "every FullNAT service: {refused:#?}");
            assert_eq!(
                refused[0],
                ApplyError::Service {
                    service: ServiceRef {
                        object: "shop/web".into(),
                        vip: v4("203.0.113.10"),
                        port: 443,
                        protocol: TCP,
                    },
                    problem: ServiceProblem::NoSnatAddress,
                }
            );
        },
    ),
    (
        "an IPv6 VIP announced: the announcement is dropped with its VIP",
        |s| {
            s.services[1].vips.push(b("2001:db8::20"));
            let l2 = &mut s.announcements.as_mut().unwrap().l2;
            l2.push(b("2001:db8::20"));
        },
        |c| {
            assert_eq!(keys(c)[4..], api_keys());
            assert_eq!(
                c.desired.announce.l2,
                [v4("203.0.113.10"), v4("203.0.113.20")].into()
            );
            let fields: Vec<_> = c.unsupported.iter().map(|e| e.field.as_str()).collect();
            assert_eq!(fields, ["services[1].vips[2]", "announcements.l2[2]"]);
            let e = &c.unsupported[1];
            assert_eq!((&e.object, e.vip), (&None, Some(ip("2001:db8::20"))));
            assert!(e.reason.contains("not announced"));
        },
    ),
    (
        "an IPv4 VIP whose every service is skipped is not announced",
        |s| {
            for port in &mut s.services[0].ports {
                port.backends[0].address = b("2001:db8::5");
            }
        },
        |c| {
            assert_eq!(keys(c), api_keys());
            assert_eq!(c.desired.announce.l2, [v4("203.0.113.20")].into());
            let fields: Vec<_> = c.unsupported.iter().map(|e| e.field.as_str()).collect();
            assert_eq!(
                fields,
                [
                    "services[0].ports[0].backends[0].address",
                    "services[0].ports[1].backends[0].address",
                    "announcements.l2[0]",
                ]
            );
            let e = &c.unsupported[2];
            assert_eq!(e.vip, Some(ip("203.0.113.10")));
            assert!(e.reason.contains("every service of this VIP is skipped"));
            // What remains is valid as a whole.
            assert_eq!(crate::core::validate(&c.desired), []);
        },
    ),
    (
        "an IPv6 source range on an IPv4 service is kept (the trie is family-tagged)",
        |s| {
            s.services[1].source_ranges.push(v1::IpPrefix {
                address: b("2001:db8:1::"),
                prefix_len: 48,
            })
        },
        |c| {
            assert_eq!(c.unsupported, []);
            let api = &c.desired.services[4];
            assert_eq!(api.source_ranges, ["2001:db8:1::/48".parse().unwrap()]);
        },
    ),
];

#[test]
fn ipv6_parts_are_skipped_and_reported_the_rest_converts() {
    for &(desc, edit, check) in CASES {
        let mut s = state();
        edit(&mut s);
        let c = node_desired(&s, &defaults()).unwrap_or_else(|e| panic!("{desc}: {e:#?}"));
        assert_eq!(c.desired.version, 7, "{desc}");
        assert_eq!(c.objects.len(), 2, "{desc}: skipped objects stay named");
        check(&c);
    }
}

#[test]
fn a_state_of_ipv6_only_objects_converts_to_nothing_but_names_them() {
    let mut s = state();
    s.services[0].vips = vec![b("2001:db8::10")];
    s.services[1].vips = vec![b("2001:db8::20")];
    s.announcements = None;
    let c = node_desired(&s, &defaults()).unwrap();
    assert_eq!(c.desired.services, []);
    assert_eq!(c.objects.len(), 2);
    let vips: Vec<_> = c.unsupported.iter().map(|e| e.vip).collect();
    assert_eq!(vips, [Some(ip("2001:db8::10")), Some(ip("2001:db8::20"))]);
}

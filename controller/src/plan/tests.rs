//! Table-driven planning tests: a world of objects in, the decisions out.

use std::net::IpAddr;
use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::fixtures::*;
use crate::object_key::Kind;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn vs_key(name: &str) -> ObjectKey {
    ObjectKey::new(Kind::VirtualServer, "default", name)
}

fn svc_key(name: &str) -> ObjectKey {
    ObjectKey::new(Kind::Service, "default", name)
}

/// Two ready nodes, one public pool of four addresses.
pub(super) fn world() -> Observed {
    Observed {
        nodes: vec![
            node("node-a", true, json!({})),
            node("node-b", true, json!({"role": "edge"})),
            node("node-c", false, json!({})),
        ],
        pools: vec![pool("public", json!({"addresses": ["203.0.113.0/30"]}))],
        ..Observed::default()
    }
}

fn static_vs(name: &str, created: u32, addresses: &[&str], port: u16) -> Arc<VirtualServer> {
    virtual_server(
        "default",
        name,
        created,
        json!({
            "addresses": addresses,
            "ports": [{"port": port}],
            "backends": {"static": [{"address": "198.51.100.11"}, {"address": "198.51.100.12", "weight": 0}]},
        }),
    )
}

fn status<'p>(plan: &'p Plan, key: &ObjectKey) -> &'p ObjectStatus {
    plan.statuses
        .get(key)
        .unwrap_or_else(|| panic!("no status for {key}"))
}

/// (description, world edit, checks on the plan).
type Case = (&'static str, fn(&mut Observed), fn(&Plan));

const CASES: &[Case] = &[
    (
        "static VS with an address in the pool is served by every ready node",
        |w| {
            w.virtual_servers
                .push(static_vs("web", 1, &["203.0.113.1"], 80))
        },
        |p| {
            let s = status(p, &vs_key("web"));
            assert_eq!(s.addresses, [ip("203.0.113.1")]);
            assert_eq!(s.accepted.status, CondStatus::True);
            assert_eq!(s.ready.status, CondStatus::True, "{:?}", s.ready);
            assert_eq!(s.backends, Some((1, 2)));
            assert_eq!(p.nodes.keys().collect::<Vec<_>>(), ["node-a", "node-b"]);
            let sp = &p.nodes["node-a"].services[&vs_key("web")];
            assert_eq!(
                sp.ports[0].backends,
                [
                    BackendPlan {
                        address: ip("198.51.100.11"),
                        port: 80,
                        weight: 1
                    },
                    BackendPlan {
                        address: ip("198.51.100.12"),
                        port: 80,
                        weight: 0
                    },
                ]
            );
            let owners: Vec<_> = p
                .nodes
                .values()
                .filter(|n| n.l2_announce.contains(&ip("203.0.113.1")))
                .collect();
            assert_eq!(owners.len(), 1, "exactly one L2 owner");
            assert_eq!(s.directors.iter().filter(|d| d.announcing).count(), 1);
            assert_eq!(p.pools["public"].allocated, 1);
            assert_eq!(p.pools["public"].total, 4);
        },
    ),
    (
        "empty addresses allocate the lowest free pool address",
        |w| {
            w.virtual_servers
                .push(static_vs("a", 1, &["203.0.113.0"], 80));
            w.virtual_servers.push(static_vs("b", 2, &[], 80));
        },
        |p| assert_eq!(status(p, &vs_key("b")).addresses, [ip("203.0.113.1")]),
    ),
    (
        "an address outside every pool is a condition, others keep serving",
        |w| {
            w.virtual_servers
                .push(static_vs("good", 1, &["203.0.113.1"], 80));
            w.virtual_servers
                .push(static_vs("stray", 2, &["192.0.2.50"], 80));
        },
        |p| {
            let s = status(p, &vs_key("stray"));
            assert_eq!(s.accepted.status, CondStatus::False);
            assert_eq!(s.accepted.reason, "AddressNotInPool");
            assert!(
                s.accepted.message.contains("192.0.2.50"),
                "{}",
                s.accepted.message
            );
            assert!(s.addresses.is_empty());
            assert_eq!(status(p, &vs_key("good")).ready.status, CondStatus::True);
            assert!(!p.nodes["node-a"].services.contains_key(&vs_key("stray")));
        },
    ),
    (
        "an invalid VS is rejected with the field, others keep serving",
        |w| {
            w.virtual_servers
                .push(static_vs("good", 1, &["203.0.113.1"], 80));
            w.virtual_servers.push(virtual_server(
                "default",
                "bad",
                2,
                json!({"addresses": ["203.0.113.2"], "ports": [{"port": 80, "targetPort": 8080}],
                       "forwarding": "DR", "backends": {"static": []}}),
            ));
        },
        |p| {
            let s = status(p, &vs_key("bad"));
            assert_eq!(s.accepted.reason, "Invalid");
            assert!(
                s.accepted.message.contains("spec.ports[0].targetPort"),
                "{}",
                s.accepted.message
            );
            assert_eq!(status(p, &vs_key("good")).ready.status, CondStatus::True);
            assert_eq!(p.nodes["node-a"].services.len(), 1);
        },
    ),
    (
        "the same address without a sharing key: the later object loses, naming the holder",
        |w| {
            w.virtual_servers
                .push(static_vs("first", 1, &["203.0.113.1"], 80));
            w.virtual_servers
                .push(static_vs("second", 2, &["203.0.113.1"], 443));
        },
        |p| {
            let s = status(p, &vs_key("second"));
            assert_eq!(s.accepted.reason, "AddressInUse");
            assert!(
                s.accepted.message.contains("VirtualServer default/first"),
                "{}",
                s.accepted.message
            );
            assert_eq!(status(p, &vs_key("first")).addresses, [ip("203.0.113.1")]);
        },
    ),
    (
        "a sharing key shares an address when ports differ, and names the port holder when not",
        |w| {
            let mut a = (*static_vs("a", 1, &["203.0.113.1"], 80)).clone();
            a.metadata.annotations =
                Some([("ballast.dev/sharing-key".to_string(), "k".to_string())].into());
            let mut b = (*static_vs("b", 2, &[], 443)).clone();
            b.metadata.annotations = a.metadata.annotations.clone();
            let mut c = (*static_vs("c", 3, &["203.0.113.1"], 80)).clone();
            c.metadata.annotations = a.metadata.annotations.clone();
            w.virtual_servers.extend([a, b, c].map(Arc::new));
        },
        |p| {
            assert_eq!(
                status(p, &vs_key("b")).addresses,
                [ip("203.0.113.1")],
                "pool request joins its group"
            );
            let c = status(p, &vs_key("c"));
            assert_eq!(c.accepted.reason, "PortConflict");
            assert!(
                c.accepted
                    .message
                    .contains("port 80/TCP is held by VirtualServer default/a"),
                "{}",
                c.accepted.message
            );
            assert_eq!(p.pools["public"].allocated, 1);
        },
    ),
    (
        "shareByDefault pools share without a key",
        |w| {
            w.pools = vec![pool(
                "public",
                json!({"addresses": ["203.0.113.0/30"], "shareByDefault": true}),
            )];
            w.virtual_servers
                .push(static_vs("a", 1, &["203.0.113.1"], 80));
            w.virtual_servers
                .push(static_vs("b", 2, &["203.0.113.1"], 443));
        },
        |p| assert_eq!(status(p, &vs_key("b")).addresses, [ip("203.0.113.1")]),
    ),
    (
        "an exhausted pool leaves the newest object without an address",
        |w| {
            for i in 0..5 {
                w.virtual_servers
                    .push(static_vs(&format!("vs{i}"), i, &[], 80));
            }
        },
        |p| {
            let s = status(p, &vs_key("vs4"));
            assert_eq!(s.accepted.status, CondStatus::True);
            assert_eq!(s.ready.reason, "PoolExhausted");
            assert!(s.ready.message.contains("public"));
            assert_eq!(p.pools["public"].allocated, 4);
        },
    ),
    (
        "pool by name: missing, not admitting the namespace, and autoAssign off",
        |w| {
            w.pools.push(pool(
                "private",
                json!({"addresses": ["198.51.100.0/30"], "autoAssign": false}),
            ));
            w.pools.push(pool(
                "team",
                json!({"addresses": ["192.0.2.0/30"],
                "namespaceSelector": {"matchLabels": {"team": "x"}}}),
            ));
            let named = |name: &str, created, pool: &str| {
                virtual_server(
                    "default",
                    name,
                    created,
                    json!({"addressPool": pool, "ports": [{"port": 80}],
                    "backends": {"static": [{"address": "198.51.100.200"}]}}),
                )
            };
            w.virtual_servers.push(named("missing", 1, "nope"));
            w.virtual_servers.push(named("denied", 2, "team"));
            w.virtual_servers.push(named("private", 3, "private"));
            w.virtual_servers.push(static_vs("auto", 4, &[], 80));
        },
        |p| {
            assert_eq!(
                status(p, &vs_key("missing")).accepted.reason,
                "PoolNotFound"
            );
            assert_eq!(
                status(p, &vs_key("denied")).accepted.reason,
                "PoolNotAllowed"
            );
            assert_eq!(
                status(p, &vs_key("private")).addresses,
                [ip("198.51.100.0")]
            );
            // "auto" skips the autoAssign=false pool and the one not admitting it.
            assert_eq!(status(p, &vs_key("auto")).addresses, [ip("203.0.113.0")]);
        },
    ),
    (
        "a Service of our class gets an address and its endpoints; terminating ones drain",
        |w| {
            w.services.push(service(
                "default",
                "web",
                1,
                json!({}),
                json!({"ports": [{"name": "http", "port": 80}]}),
            ));
            w.endpoint_slices.push(endpoint_slice(
                "default",
                "web-1",
                "web",
                ("http", 8080),
                &[
                    ("10.0.0.1", "node-a", true, false),
                    ("10.0.0.2", "node-b", false, true),
                ],
            ));
        },
        |p| {
            let s = status(p, &svc_key("web"));
            assert_eq!(s.addresses, [ip("203.0.113.0")]);
            assert_eq!(s.backends, Some((1, 2)));
            let sp = &p.nodes["node-a"].services[&svc_key("web")];
            assert_eq!(sp.forwarding, ballast_api::Forwarding::FullNat);
            assert_eq!(
                sp.ports[0].backends,
                [
                    BackendPlan {
                        address: ip("10.0.0.1"),
                        port: 8080,
                        weight: 1
                    },
                    BackendPlan {
                        address: ip("10.0.0.2"),
                        port: 8080,
                        weight: 0
                    },
                ]
            );
        },
    ),
    (
        "Services of another class, or without one, are not ours",
        |w| {
            w.services.push(service(
                "default",
                "other",
                1,
                json!({}),
                json!({"ports": [{"port": 80}], "loadBalancerClass": "example.com/lb"}),
            ));
            w.services.push(service(
                "default",
                "classless",
                1,
                json!({}),
                json!({"ports": [{"port": 80}], "loadBalancerClass": null}),
            ));
            w.services.push(service(
                "default",
                "cluster",
                1,
                json!({}),
                json!({"ports": [{"port": 80}], "type": "ClusterIP"}),
            ));
        },
        |p| {
            assert!(
                p.statuses.is_empty(),
                "{:?}",
                p.statuses.keys().collect::<Vec<_>>()
            )
        },
    ),
    (
        "annotation addresses, loadBalancerIP and pool annotation are honoured",
        |w| {
            w.pools.push(pool(
                "other",
                json!({"addresses": ["198.51.100.8/30"], "autoAssign": false}),
            ));
            w.services.push(service(
                "default",
                "ann",
                1,
                json!({"ballast.dev/addresses": "203.0.113.3"}),
                json!({"ports": [{"port": 80}]}),
            ));
            w.services.push(service(
                "default",
                "lbip",
                2,
                json!({}),
                json!({"ports": [{"port": 80}], "loadBalancerIP": "203.0.113.2"}),
            ));
            w.services.push(service(
                "default",
                "pooled",
                3,
                json!({"ballast.dev/address-pool": "other"}),
                json!({"ports": [{"port": 80}]}),
            ));
        },
        |p| {
            assert_eq!(status(p, &svc_key("ann")).addresses, [ip("203.0.113.3")]);
            assert_eq!(status(p, &svc_key("lbip")).addresses, [ip("203.0.113.2")]);
            assert_eq!(
                status(p, &svc_key("pooled")).addresses,
                [ip("198.51.100.8")]
            );
        },
    ),
    (
        "externalTrafficPolicy Local: only nodes with ready local endpoints direct, to them only",
        |w| {
            w.services.push(service(
                "default",
                "local",
                1,
                json!({}),
                json!({"ports": [{"name": "http", "port": 80}], "externalTrafficPolicy": "Local"}),
            ));
            w.endpoint_slices.push(endpoint_slice(
                "default",
                "local-1",
                "local",
                ("http", 8080),
                &[
                    ("10.0.0.1", "node-b", true, false),
                    ("10.0.0.2", "node-a", false, false),
                    ("10.0.0.3", "node-b", true, false),
                ],
            ));
        },
        |p| {
            assert_eq!(p.nodes.keys().collect::<Vec<_>>(), ["node-b"]);
            let sp = &p.nodes["node-b"].services[&svc_key("local")];
            assert_eq!(
                sp.forwarding,
                ballast_api::Forwarding::Nat,
                "client address preserved"
            );
            let addrs: Vec<_> = sp.ports[0].backends.iter().map(|b| b.address).collect();
            assert_eq!(addrs, [ip("10.0.0.1"), ip("10.0.0.3")]);
        },
    ),
    (
        "loadBalancerSourceRanges reach the plan; a bad one is a field error",
        |w| {
            w.services.push(service(
                "default",
                "ranged",
                1,
                json!({}),
                json!({"ports": [{"port": 80}], "loadBalancerSourceRanges": ["198.51.100.0/24"]}),
            ));
            w.services.push(service(
                "default",
                "badrange",
                2,
                json!({}),
                json!({"ports": [{"port": 80}], "loadBalancerSourceRanges": ["everyone"]}),
            ));
        },
        |p| {
            assert_eq!(
                p.nodes["node-a"].services[&svc_key("ranged")].source_ranges[0].to_string(),
                "198.51.100.0/24"
            );
            let s = status(p, &svc_key("badrange"));
            assert_eq!(s.accepted.reason, "Invalid");
            assert!(
                s.accepted
                    .message
                    .contains("spec.loadBalancerSourceRanges[0]")
            );
        },
    ),
    (
        "a VirtualServer's healthCheck reaches the plan typed; a Service has none",
        |w| {
            w.virtual_servers.push(virtual_server(
                "default",
                "checked",
                1,
                json!({
                    "addresses": ["203.0.113.1"],
                    "ports": [{"port": 80}],
                    "backends": {"static": [{"address": "198.51.100.11"}]},
                    "healthCheck": {"http": {"path": "/healthz", "expectStatus": 204},
                                    "intervalSeconds": 3, "timeoutSeconds": 1},
                }),
            ));
            w.services.push(service(
                "default",
                "plain",
                2,
                json!({}),
                json!({"ports": [{"port": 81}]}),
            ));
        },
        |p| {
            let node = &p.nodes["node-a"];
            assert_eq!(
                node.services[&vs_key("checked")].health_check,
                Some(ballast_api::HealthCheckSpec {
                    probe: ballast_api::Probe::Http {
                        path: "/healthz".into(),
                        expect_status: 204
                    },
                    interval: std::time::Duration::from_secs(3),
                    timeout: std::time::Duration::from_secs(1),
                    healthy_threshold: 2,
                    unhealthy_threshold: 2,
                })
            );
            assert_eq!(node.services[&svc_key("plain")].health_check, None);
        },
    ),
    (
        "no ready endpoint: Ready False naming the port",
        |w| {
            w.services.push(service(
                "default",
                "web",
                1,
                json!({}),
                json!({"ports": [{"name": "http", "port": 80}]}),
            ));
            w.endpoint_slices.push(endpoint_slice(
                "default",
                "web-1",
                "web",
                ("http", 8080),
                &[("10.0.0.1", "node-a", false, false)],
            ));
        },
        |p| {
            let s = status(p, &svc_key("web"));
            assert_eq!(s.ready.reason, "NoReadyBackends");
            assert!(s.ready.message.contains("80/TCP"));
            assert_eq!(s.backends, Some((0, 1)));
        },
    ),
    (
        "serviceRef by port name and by number; a missing Service is a condition",
        |w| {
            w.services.push(service("default", "app", 1, json!({}),
                json!({"type": "ClusterIP", "loadBalancerClass": null, "ports": [{"name": "http", "port": 80}]})));
            w.endpoint_slices.push(endpoint_slice(
                "default",
                "app-1",
                "app",
                ("http", 8080),
                &[("10.0.0.9", "node-a", true, false)],
            ));
            let by = |name: &str, port: serde_json::Value, svc: &str| {
                virtual_server(
                    "default",
                    name,
                    2,
                    json!({"addresses": [], "ports": [{"port": 443}],
                    "backends": {"serviceRef": {"name": svc, "port": port}}}),
                )
            };
            w.virtual_servers.push(by("byname", json!("http"), "app"));
            w.virtual_servers.push(by("bynumber", json!(80), "app"));
            w.virtual_servers.push(by("dangling", json!(80), "ghost"));
        },
        |p| {
            for name in ["byname", "bynumber"] {
                let sp = &p.nodes["node-a"].services[&vs_key(name)];
                assert_eq!(sp.ports[0].port, 443);
                assert_eq!(
                    sp.ports[0].backends,
                    [BackendPlan {
                        address: ip("10.0.0.9"),
                        port: 8080,
                        weight: 1
                    }],
                    "{name}"
                );
            }
            let s = status(p, &vs_key("dangling"));
            assert_eq!(s.ready.reason, "ServiceNotFound");
            assert!(
                !s.addresses.is_empty(),
                "an address is still held while the Service is missing"
            );
        },
    ),
    (
        "nodeSelector picks directors; NotReady and excluded nodes never direct",
        |w| {
            w.nodes.push(node("node-d", true, json!({"role": "edge", "node.kubernetes.io/exclude-from-external-load-balancers": ""})));
            let mut vs = (*static_vs("edge", 1, &["203.0.113.1"], 80)).clone();
            vs.spec.node_selector = [("role".to_string(), "edge".to_string())].into();
            w.virtual_servers.push(Arc::new(vs));
        },
        |p| {
            assert_eq!(p.nodes.keys().collect::<Vec<_>>(), ["node-b"]);
            assert!(p.nodes["node-b"].l2_announce.contains(&ip("203.0.113.1")));
        },
    ),
    (
        "objects sharing a VIP on disjoint director nodes: the one the L2 owner doesn't direct is told why",
        |w| {
            w.nodes = vec![
                node("node-a", true, json!({"role": "core"})),
                node("node-b", true, json!({"role": "edge"})),
            ];
            let key = Some([("ballast.dev/sharing-key".to_string(), "k".to_string())].into());
            let mut core = (*static_vs("core", 1, &["203.0.113.1"], 80)).clone();
            core.spec.node_selector = [("role".to_string(), "core".to_string())].into();
            core.metadata.annotations = key.clone();
            let mut edge = (*static_vs("edge", 2, &["203.0.113.1"], 443)).clone();
            edge.spec.node_selector = [("role".to_string(), "edge".to_string())].into();
            edge.metadata.annotations = key;
            w.virtual_servers.extend([core, edge].map(Arc::new));
        },
        |p| {
            let vip = ip("203.0.113.1");
            let owners: Vec<&String> = p
                .nodes
                .iter()
                .filter(|(_, np)| np.l2_announce.contains(&vip))
                .map(|(n, _)| n)
                .collect();
            assert_eq!(owners.len(), 1, "exactly one L2 owner: {owners:?}");
            let (served, stranded) = if owners[0] == "node-a" {
                ("core", "edge")
            } else {
                ("edge", "core")
            };
            assert_eq!(status(p, &vs_key(served)).ready.status, CondStatus::True);
            let s = status(p, &vs_key(stranded));
            assert_eq!(s.ready.status, CondStatus::False);
            assert_eq!(s.ready.reason, "NoCommonDirector");
            assert!(
                s.ready.message.contains(owners[0].as_str()),
                "{}",
                s.ready.message
            );
            // Its plan is still there: fixing the selectors needs no re-allocation.
            assert_eq!(s.addresses, [vip]);
        },
    ),
    (
        "BGP announcement: every director advertises",
        |w| {
            let mut vs = (*static_vs("bgp", 1, &["203.0.113.1"], 80)).clone();
            vs.spec.announce = Some(ballast_api::Announce {
                l2: None,
                bgp: Some(Default::default()),
            });
            w.virtual_servers.push(Arc::new(vs));
        },
        |p| {
            for n in ["node-a", "node-b"] {
                assert!(p.nodes[n].bgp_announce.contains(&ip("203.0.113.1")), "{n}");
                assert!(p.nodes[n].l2_announce.is_empty(), "{n}");
            }
        },
    ),
    (
        "IPv6 and dual-stack Services draw one address per family",
        |w| {
            w.pools
                .push(pool("v6", json!({"addresses": ["2001:db8::/126"]})));
            w.services.push(service(
                "default",
                "v6",
                1,
                json!({}),
                json!({"ports": [{"port": 80}], "ipFamilies": ["IPv6"]}),
            ));
            w.services.push(service("default", "dual", 2, json!({}),
                json!({"ports": [{"port": 80}], "ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": "RequireDualStack"})));
        },
        |p| {
            assert_eq!(status(p, &svc_key("v6")).addresses, [ip("2001:db8::")]);
            assert_eq!(
                status(p, &svc_key("dual")).addresses,
                [ip("203.0.113.0"), ip("2001:db8::1")]
            );
        },
    ),
    (
        "avoidBuggyIPs skips .0",
        |w| {
            w.pools = vec![pool(
                "public",
                json!({"addresses": ["203.0.113.0/30"], "avoidBuggyIPs": true}),
            )];
            w.virtual_servers.push(static_vs("a", 1, &[], 80));
        },
        |p| {
            assert_eq!(status(p, &vs_key("a")).addresses, [ip("203.0.113.1")]);
            assert_eq!(p.pools["public"].total, 3);
        },
    ),
    (
        "a bad pool entry is reported and the good ones still serve",
        |w| {
            w.pools = vec![pool(
                "public",
                json!({"addresses": ["nonsense", "203.0.113.0/30"]}),
            )];
            w.virtual_servers.push(static_vs("a", 1, &[], 80));
        },
        |p| {
            assert_eq!(p.pools["public"].errors.len(), 1);
            assert!(p.pools["public"].errors[0].starts_with("spec.addresses[0]"));
            assert_eq!(status(p, &vs_key("a")).addresses, [ip("203.0.113.0")]);
        },
    ),
];

#[test]
fn planning_table() {
    for (case, edit, check) in CASES {
        let mut w = world();
        edit(&mut w);
        let p = plan(&w, PlanOptions::default());
        let result = std::panic::catch_unwind(|| check(&p));
        if result.is_err() {
            panic!("case failed: {case}");
        }
    }
}

#[test]
fn default_class_adopts_classless_services() {
    let mut w = world();
    w.services.push(service(
        "default",
        "classless",
        1,
        json!({}),
        json!({"ports": [{"port": 80}], "loadBalancerClass": null}),
    ));
    assert!(plan(&w, PlanOptions::default()).statuses.is_empty());
    let p = plan(
        &w,
        PlanOptions {
            default_class: true,
        },
    );
    assert_eq!(
        status(&p, &svc_key("classless")).addresses,
        [ip("203.0.113.0")]
    );
}

/// Writes the plan's addresses into the objects' status, as the controller
/// does, so the next plan sees them as "previous".
fn record_status(w: &mut Observed, p: &Plan) {
    for vs in &mut w.virtual_servers {
        let key = vs_key(vs.metadata.name.as_deref().unwrap());
        if let Some(s) = p.statuses.get(&key) {
            let mut v = (**vs).clone();
            v.status = Some(ballast_api::VirtualServerStatus {
                addresses: s.addresses.iter().map(|a| a.to_string()).collect(),
                ..Default::default()
            });
            *vs = Arc::new(v);
        }
    }
}

#[test]
fn allocation_survives_restart_and_reordering() {
    // Allocate for b and c, then an *older* object a appears: after a
    // restart (new planner, shuffled input), b and c keep their addresses
    // and a gets a new one instead of displacing them.
    let mut w = world();
    w.virtual_servers.push(static_vs("b", 2, &[], 80));
    w.virtual_servers.push(static_vs("c", 3, &[], 80));
    let first = plan(&w, PlanOptions::default());
    record_status(&mut w, &first);
    w.virtual_servers.push(static_vs("a", 1, &[], 80));
    w.virtual_servers.reverse();
    let second = plan(&w, PlanOptions::default());
    assert_eq!(status(&second, &vs_key("b")).addresses, [ip("203.0.113.0")]);
    assert_eq!(status(&second, &vs_key("c")).addresses, [ip("203.0.113.1")]);
    assert_eq!(status(&second, &vs_key("a")).addresses, [ip("203.0.113.2")]);
    // Planning again from the recorded state is a fixed point.
    record_status(&mut w, &second);
    assert_eq!(plan(&w, PlanOptions::default()), second);
}

#[test]
fn shrinking_a_pool_moves_or_strands_its_objects() {
    let mut w = world();
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        w.virtual_servers.push(static_vs(name, i as u32, &[], 80));
    }
    w.virtual_servers
        .push(static_vs("pinned", 9, &["203.0.113.3"], 80));
    let first = plan(&w, PlanOptions::default());
    record_status(&mut w, &first);
    w.pools = vec![pool(
        "public",
        json!({"addresses": ["203.0.113.1-203.0.113.2"]}),
    )];
    let p = plan(&w, PlanOptions::default());
    // b (.1) and c (.2) are still in the pool and keep their addresses;
    // a lost .0 and no address is free; pinned's address left the pool.
    assert_eq!(status(&p, &vs_key("b")).addresses, [ip("203.0.113.1")]);
    assert_eq!(status(&p, &vs_key("c")).addresses, [ip("203.0.113.2")]);
    assert_eq!(status(&p, &vs_key("a")).ready.reason, "PoolExhausted");
    assert_eq!(
        status(&p, &vs_key("pinned")).accepted.reason,
        "AddressNotInPool"
    );
    assert_eq!(p.pools["public"].allocated, 2);
}

#[test]
fn incremental_endpoint_updates_match_a_full_plan() {
    let mut w = world();
    for i in 0..6u32 {
        let name = format!("svc{i}");
        w.services.push(service(
            "default",
            &name,
            i,
            json!({}),
            json!({"ports": [{"name": "http", "port": 80}],
            "externalTrafficPolicy": if i % 2 == 0 { "Cluster" } else { "Local" }}),
        ));
        w.endpoint_slices.push(endpoint_slice(
            "default",
            &format!("{name}-1"),
            &name,
            ("http", 8080),
            &[("10.0.0.1", "node-a", true, false)],
        ));
    }
    let mut planner = Planner::new(&w, PlanOptions::default());
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    for step in 0..200 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let svc = format!("svc{}", rng % 6);
        let n = (rng >> 8) % 4;
        let eps: Vec<(String, &str, bool, bool)> = (0..n)
            .map(|j| {
                (
                    format!("10.0.{}.{}", rng % 6, j + 1),
                    if (rng >> (16 + j)) & 1 == 0 {
                        "node-a"
                    } else {
                        "node-b"
                    },
                    (rng >> (24 + j)) & 1 == 0,
                    (rng >> (32 + j)) & 3 == 0,
                )
            })
            .collect();
        let borrowed: Vec<(&str, &str, bool, bool)> = eps
            .iter()
            .map(|(a, n, r, t)| (a.as_str(), *n, *r, *t))
            .collect();
        let slice = endpoint_slice(
            "default",
            &format!("{svc}-1"),
            &svc,
            ("http", 8080),
            &borrowed,
        );
        w.endpoint_slices
            .retain(|s| s.metadata.name != slice.metadata.name);
        w.endpoint_slices.push(slice.clone());
        planner.apply_endpoint_slice(slice);
        let full = plan(&w, PlanOptions::default());
        assert_eq!(planner.plan(), &full, "diverged at step {step} ({svc})");
    }
}

#[test]
fn an_invalid_update_keeps_the_address_reserved() {
    let mut w = world();
    w.virtual_servers.push(static_vs("web", 1, &[], 80));
    let first = plan(&w, PlanOptions::default());
    record_status(&mut w, &first);
    assert_eq!(
        status(&first, &vs_key("web")).addresses,
        [ip("203.0.113.0")]
    );

    // web's spec becomes invalid; a newcomer asks for a pool address and
    // another asks for web's address by name.
    let mut broken = (*w.virtual_servers[0]).clone();
    broken.spec.scheduler = "RoundRobin".into();
    w.virtual_servers[0] = Arc::new(broken);
    w.virtual_servers.push(static_vs("newcomer", 2, &[], 80));
    w.virtual_servers
        .push(static_vs("grabber", 3, &["203.0.113.0"], 443));
    let p = plan(&w, PlanOptions::default());
    let web = status(&p, &vs_key("web"));
    assert_eq!(web.accepted.reason, "Invalid");
    assert_eq!(
        web.addresses,
        [ip("203.0.113.0")],
        "still recorded, so it survives restarts"
    );
    assert!(
        !p.nodes["node-a"].services.contains_key(&vs_key("web")),
        "but not served"
    );
    assert_eq!(
        status(&p, &vs_key("newcomer")).addresses,
        [ip("203.0.113.1")]
    );
    let grabber = status(&p, &vs_key("grabber"));
    assert_eq!(grabber.accepted.reason, "AddressInUse");
    assert!(
        grabber
            .accepted
            .message
            .contains("VirtualServer default/web")
    );

    // Fixed: web is served on its old address again.
    record_status(&mut w, &p);
    let mut fixed = (*w.virtual_servers[0]).clone();
    fixed.spec.scheduler = "Maglev".into();
    w.virtual_servers[0] = Arc::new(fixed);
    let p = plan(&w, PlanOptions::default());
    assert_eq!(status(&p, &vs_key("web")).addresses, [ip("203.0.113.0")]);
    assert_eq!(status(&p, &vs_key("web")).ready.status, CondStatus::True);
}

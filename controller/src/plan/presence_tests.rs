//! Planning with agent presence: a table of worlds (who has an agent) in,
//! directors and statuses out.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

use super::*;
use crate::fixtures::*;
use crate::object_key::Kind;

const VIP: &str = "203.0.113.1";

fn web() -> ObjectKey {
    ObjectKey::new(Kind::VirtualServer, "default", "web")
}

/// The planning table's world (Ready node-a, Ready node-b labelled edge,
/// NotReady node-c, one pool) and `web` on one VIP with `selector` as its
/// nodeSelector.
fn world(selector: &[(&str, &str)]) -> Observed {
    let selector: serde_json::Map<String, serde_json::Value> = selector
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    Observed {
        virtual_servers: vec![virtual_server(
            "default",
            "web",
            1,
            json!({"addresses": [VIP], "ports": [{"port": 80}], "nodeSelector": selector,
                   "backends": {"static": [{"address": "198.51.100.11"}]}}),
        )],
        ..super::tests::world()
    }
}

/// 2026-12-01T21:40:00Z.
fn since() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_796_161_200)
}

fn away() -> NodeAgent {
    NodeAgent::Away {
        since: since(),
        grace: Duration::from_secs(10),
    }
}

fn known(agents: &[(&str, NodeAgent)]) -> AgentPresence {
    AgentPresence::Known(
        agents
            .iter()
            .map(|(n, a)| (n.to_string(), a.clone()))
            .collect(),
    )
}

fn directors(p: &Plan) -> Vec<&str> {
    p.nodes.keys().map(String::as_str).collect()
}

fn l2_owner_of(p: &Plan) -> Vec<&str> {
    let vip: IpAddr = VIP.parse().unwrap();
    p.nodes
        .iter()
        .filter(|(_, np)| np.l2_announce.contains(&vip))
        .map(|(n, _)| n.as_str())
        .collect()
}

fn absent(p: &Plan) -> Vec<(&str, &str)> {
    p.statuses[&web()]
        .absent
        .iter()
        .map(|(n, why)| (&**n, why.as_str()))
        .collect()
}

const AWAY: &str =
    "no agent connected to the controller (away since 2026-12-01T21:40:00Z, grace 10s elapsed)";
const NEVER: &str = "no agent has connected to the controller from this node";

/// (description, nodeSelector, presence, checks).
type Case = (
    &'static str,
    &'static [(&'static str, &'static str)],
    fn() -> AgentPresence,
    fn(&Plan),
);

const CASES: &[Case] = &[
    (
        "Unknown: every Ready node directs, nobody is absent (the behaviour before agents)",
        &[],
        || AgentPresence::Unknown,
        |p| {
            assert_eq!(directors(p), ["node-a", "node-b"]);
            assert!(absent(p).is_empty());
            assert_eq!(p.statuses[&web()].ready.status, CondStatus::True);
        },
    ),
    (
        "an agent away past the grace loses its duties and the status says why",
        &[],
        || known(&[("node-a", NodeAgent::Present), ("node-b", away())]),
        |p| {
            assert_eq!(directors(p), ["node-a"]);
            assert_eq!(l2_owner_of(p), ["node-a"]);
            assert_eq!(absent(p), [("node-b", AWAY)]);
            let s = &p.statuses[&web()];
            assert_eq!(s.ready.status, CondStatus::True, "{:?}", s.ready);
            assert_eq!(s.directors.len(), 1);
        },
    ),
    (
        "a node whose agent never connected does not direct",
        &[],
        || known(&[("node-b", NodeAgent::Present)]),
        |p| {
            assert_eq!(directors(p), ["node-b"]);
            assert_eq!(absent(p), [("node-a", NEVER)]);
        },
    ),
    (
        "no present director: Ready False NoAgent, naming each node and why",
        &[],
        || known(&[("node-b", away())]),
        |p| {
            assert!(p.nodes.is_empty(), "{:?}", directors(p));
            let ready = &p.statuses[&web()].ready;
            assert_eq!(
                (ready.status, ready.reason.as_str()),
                (CondStatus::False, "NoAgent")
            );
            assert_eq!(
                ready.message,
                format!(
                    "no director node has a Ballast agent connected \
                     (node-a: {NEVER}; node-b: {AWAY})"
                )
            );
        },
    ),
    (
        "only nodes the nodeSelector picks are reported absent; NotReady nodes never are",
        &[("role", "edge")],
        || known(&[("node-a", NodeAgent::Present), ("node-c", away())]),
        |p| {
            assert!(p.nodes.is_empty());
            assert_eq!(absent(p), [("node-b", NEVER)]);
            assert_eq!(p.statuses[&web()].ready.reason, "NoAgent");
        },
    ),
];

#[test]
fn planning_with_presence_table() {
    for (case, selector, agents, check) in CASES {
        let mut w = world(selector);
        w.agents = agents();
        let p = plan(&w, PlanOptions::default());
        if std::panic::catch_unwind(|| check(&p)).is_err() {
            panic!("case failed: {case}");
        }
    }
}

#[test]
fn present_agents_plan_exactly_as_unknown_presence_does() {
    let mut w = world(&[]);
    let unknown = plan(&w, PlanOptions::default());
    w.agents = known(&[
        ("node-a", NodeAgent::Present),
        ("node-b", NodeAgent::Present),
    ]);
    assert_eq!(plan(&w, PlanOptions::default()), unknown);
}

#[test]
fn endpoint_updates_keep_absent_nodes_out() {
    let mut w = world(&[]);
    w.virtual_servers.clear();
    w.services.push(service(
        "default",
        "svc",
        1,
        json!({}),
        json!({"ports": [{"name": "http", "port": 80}]}),
    ));
    w.agents = known(&[("node-a", NodeAgent::Present), ("node-b", away())]);
    let mut planner = Planner::new(&w, PlanOptions::default());
    let slice = endpoint_slice(
        "default",
        "svc-1",
        "svc",
        ("http", 8080),
        &[("10.0.0.1", "node-b", true, false)],
    );
    w.endpoint_slices.push(slice.clone());
    planner.apply_endpoint_slice(slice);
    let full = plan(&w, PlanOptions::default());
    assert_eq!(planner.plan(), &full);
    assert_eq!(directors(&full), ["node-a"]);
    let key = ObjectKey::new(Kind::Service, "default", "svc");
    assert_eq!(full.statuses[&key].absent.len(), 1);
}

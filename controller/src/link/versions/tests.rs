//! Versions only grow per node; an agent's report decides what it is sent.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use ballast_api::{Forwarding, Protocol};
use ballast_proto::v1::{ControllerMessage, Delta, NodeState, controller_message::Kind};
use ballast_proto::{apply_delta, content_hash};

use super::*;
use crate::link::encode::object_ref;
use crate::object_key::{Kind as ObjectKind, ObjectKey};
use crate::plan::{BackendPlan, PortPlan, ServicePlan};

fn key(name: &str) -> ObjectKey {
    ObjectKey::new(ObjectKind::VirtualServer, "default", name)
}

/// One object `web` on 203.0.113.1:80 with one backend of `weight`,
/// announced over L2.
fn web(weight: u32) -> NodePlan {
    let vip = IpAddr::from([203, 0, 113, 1]);
    let sp = ServicePlan {
        vips: vec![vip],
        ports: vec![PortPlan {
            port: 80,
            protocol: Protocol::Tcp,
            backends: vec![BackendPlan {
                address: IpAddr::from([10, 0, 0, 1]),
                port: 8080,
                weight,
            }],
        }],
        forwarding: Forwarding::FullNat,
        toa: false,
        persistence_timeout_s: 0,
        source_ranges: vec![],
        health_check: None,
    };
    NodePlan {
        services: [(key("web"), Arc::new(sp))].into(),
        l2_announce: [vip].into(),
        bgp_announce: Default::default(),
    }
}

fn hash_of(plan: &NodePlan) -> Vec<u8> {
    content_hash(&node_state(0, plan)).to_vec()
}

#[test]
fn versions_grow_only_when_the_plan_changes() {
    let mut v = NodeVersions::new();
    assert_eq!(v.version("a"), 0);
    let first = v.update("a", &web(1)).expect("a new plan is a change");
    assert_eq!((first.base_version, first.version), (0, 1));
    assert_eq!(first.upserted.len(), 1);
    assert_eq!(v.update("a", &web(1)), None, "same plan: nothing to send");
    assert_eq!(v.version("a"), 1);
    let drain = v.update("a", &web(0)).unwrap();
    assert_eq!((drain.base_version, drain.version), (1, 2));
    // Back to the first content: a new version all the same (versions never
    // go back), and per node: another node starts at its own 1.
    let back = v.update("a", &web(1)).unwrap();
    assert_eq!((back.base_version, back.version), (2, 3));
    assert_eq!(v.update("b", &web(1)).unwrap().version, 1);
    assert_eq!(v.version("a"), 3);
}

#[test]
fn a_node_that_leaves_the_plan_is_emptied_and_unknown_nodes_get_nothing() {
    let mut v = NodeVersions::new();
    let mut plan = Plan::default();
    plan.nodes.insert("a".into(), web(1));
    plan.nodes.insert("b".into(), web(1));
    let first = v.update_all(&plan);
    assert_eq!(first.keys().collect::<Vec<_>>(), ["a", "b"]);
    plan.nodes.remove("b");
    let second = v.update_all(&plan);
    assert_eq!(
        second.into_iter().collect::<Vec<_>>(),
        [(
            "b".to_string(),
            Delta {
                version: 2,
                base_version: 1,
                removed: vec![object_ref(&key("web"))],
                l2_removed: vec![vec![203, 0, 113, 1]],
                ..Delta::default()
            }
        )]
    );
    assert!(v.update_all(&plan).is_empty(), "nothing changed since");
    assert_eq!(
        v.snapshot("b"),
        NodeState {
            version: 2,
            ..NodeState::default()
        }
    );
}

/// What the controller holds: `web(1)` at 1, `web(0)` at 2, `web(1)` at 3.
fn history() -> NodeVersions {
    let mut v = NodeVersions::new();
    for w in [1, 0, 1] {
        v.update("a", &web(w)).unwrap();
    }
    v
}

fn snapshot(version: u64, plan: &NodePlan) -> Option<ControllerMessage> {
    Some(ControllerMessage {
        kind: Some(Kind::Snapshot(node_state(version, plan))),
    })
}

/// (description, agent's applied version and hash, expected message,
/// version after, web's `since` after).
type ResyncCase = (
    &'static str,
    u64,
    Vec<u8>,
    Option<ControllerMessage>,
    u64,
    u64,
);

#[test]
fn resync_sends_only_what_differs() {
    let cases: Vec<ResyncCase> = vec![
        (
            "agent holds the current version: nothing",
            3,
            hash_of(&web(1)),
            None,
            3,
            3,
        ),
        (
            "fresh agent: the full state",
            0,
            vec![],
            snapshot(3, &web(1)),
            3,
            3,
        ),
        (
            "a previous controller's higher version of the same content: adopted, nothing sent",
            57,
            hash_of(&web(1)),
            None,
            57,
            57,
        ),
        (
            "same content at a lower version: an empty delta moves its version",
            1,
            hash_of(&web(1)),
            Some(ControllerMessage {
                kind: Some(Kind::Delta(Delta {
                    version: 3,
                    base_version: 1,
                    ..Delta::default()
                })),
            }),
            3,
            3,
        ),
        (
            "other content at a higher version: the full state, numbered past it",
            57,
            hash_of(&web(0)),
            snapshot(58, &web(1)),
            58,
            58,
        ),
        (
            "other content at the current version number: numbered past it",
            3,
            hash_of(&web(0)),
            snapshot(4, &web(1)),
            4,
            4,
        ),
    ];
    for (desc, version, hash, expected, after, since) in cases {
        let mut v = history();
        assert_eq!(v.resync("a", version, &hash), expected, "{desc}");
        assert_eq!(v.version("a"), after, "{desc}");
        assert_eq!(*v.since("a"), [(key("web"), since)].into(), "{desc}");
        // Whatever happened, the next change is numbered past it.
        let next = v.update("a", &web(7)).unwrap();
        assert_eq!(
            (next.base_version, next.version),
            (after, after + 1),
            "{desc}"
        );
    }
}

#[test]
fn resync_of_a_node_without_a_plan() {
    let mut v = NodeVersions::new();
    assert_eq!(v.resync("idle", 0, &[]), None, "both empty");
    // An agent still serving what a previous controller gave it is told to
    // serve nothing, at a version past its own.
    assert_eq!(
        v.resync("idle", 9, &hash_of(&web(1))),
        snapshot(10, &NodePlan::default())
    );
}

#[test]
fn the_agent_computes_the_controller_s_hash_after_deltas() {
    let mut v = NodeVersions::new();
    let mut agent = NodeState::default();
    // Kept incrementally (digests in and out per delta): changed, added,
    // removed services and announcements all end where a full hash does.
    let mut two = web(1);
    let api = two.services[&key("web")].clone();
    two.services.insert(key("api"), api);
    two.bgp_announce.insert(IpAddr::from([203, 0, 113, 9]));
    for plan in [web(1), web(0), two, web(2), NodePlan::default()] {
        let delta = v.update("a", &plan).unwrap();
        apply_delta(&mut agent, &delta).unwrap();
        assert_eq!(content_hash(&agent), v.content_hash("a"));
        assert_eq!(v.content_hash("a").to_vec(), hash_of(&plan));
        assert_eq!(agent, v.snapshot("a"));
    }
}

#[test]
fn since_moves_only_for_the_objects_a_version_changes() {
    let mut v = NodeVersions::new();
    let mut plan = web(1);
    let other = |w| web(w).services[&key("web")].clone();
    plan.services.insert(key("other"), other(1));
    v.update("a", &plan).unwrap();
    let both = |web, other| -> BTreeMap<ObjectKey, u64> {
        [(key("other"), other), (key("web"), web)].into()
    };
    assert_eq!(*v.since("a"), both(1, 1));
    // An endpoint of `other` changes: version 2 carries it, web keeps 1.
    plan.services.insert(key("other"), other(0));
    v.update("a", &plan).unwrap();
    assert_eq!(*v.since("a"), both(1, 2));
    // A published map is not changed under its reader's feet.
    let published = v.since("a");
    plan.services.insert(key("web"), other(0));
    v.update("a", &plan).unwrap();
    assert_eq!(*published, both(1, 2));
    assert_eq!(*v.since("a"), both(3, 2));
    // Removed: its entry goes; the announcement alone moving is no object's.
    plan.services.remove(&key("other"));
    plan.l2_announce.clear();
    v.update("a", &plan).unwrap();
    assert_eq!(*v.since("a"), [(key("web"), 3)].into());
    assert!(v.since("unknown").is_empty());
}

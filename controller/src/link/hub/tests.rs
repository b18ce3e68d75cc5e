//! The hub's rules without a network: what each stream is queued, in what
//! order, and when a stream is ended.

use std::net::IpAddr;
use std::sync::Arc;

use ballast_proto::v1::{Ack, Hello, Nack};
use tonic::Code;

use super::*;
use crate::fixtures::tcp80_service_plan;
use crate::link::versions::NodeVersions;
use crate::object_key::{Kind as ObjectKind, ObjectKey};
use crate::plan::NodePlan;

const NODE: &str = "node-a";

/// A plan where `NODE` directs one service whose backends are `10.0.0.b`.
fn plan(backends: &[u8]) -> Arc<Plan> {
    let backends = backends.iter().map(|b| IpAddr::from([10, 0, 0, *b]));
    let sp = tcp80_service_plan(IpAddr::from([192, 0, 2, 10]), backends);
    let mut np = NodePlan::default();
    np.services.insert(
        ObjectKey::new(ObjectKind::VirtualServer, "default", "web"),
        Arc::new(sp),
    );
    Arc::new(Plan {
        nodes: [(NODE.to_string(), np)].into_iter().collect(),
        ..Plan::default()
    })
}

fn fresh_hello() -> Hello {
    Hello {
        node_name: NODE.into(),
        agent_version: "test".into(),
        applied_version: 0,
        applied_hash: vec![],
    }
}

/// A leading hub that planned `plan(&[1])`.
fn leading_hub() -> Hub {
    let hub = Hub::new(AgentReports::new());
    hub.set_leadership(true, None);
    hub.set_settled(true);
    hub.apply_plan(&plan(&[1]));
    hub
}

/// What is queued now, in order.
fn drain(rx: &mut mpsc::Receiver<Outbound>) -> Vec<Outbound> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}

fn kinds(out: &[Outbound]) -> Vec<String> {
    out.iter()
        .map(|m| match m {
            Ok(ControllerMessage {
                kind: Some(Kind::Snapshot(s)),
            }) => format!("snapshot {}", s.version),
            Ok(ControllerMessage {
                kind: Some(Kind::Delta(d)),
            }) => format!("delta {}->{}", d.base_version, d.version),
            Ok(other) => format!("{other:?}"),
            Err(status) => format!("{:?}", status.code()),
        })
        .collect()
}

#[test]
fn a_fresh_agent_gets_the_snapshot_then_a_delta_per_change() {
    let hub = leading_hub();
    let (_, mut rx, _) = hub.register(&fresh_hello()).unwrap();
    hub.apply_plan(&plan(&[1, 2]));
    hub.apply_plan(&plan(&[1, 2])); // no change: nothing
    hub.apply_plan(&plan(&[2]));
    assert_eq!(
        kinds(&drain(&mut rx)),
        ["snapshot 1", "delta 1->2", "delta 2->3"]
    );
}

#[test]
fn a_refused_snapshot_is_not_resent_but_the_next_change_goes_as_a_snapshot() {
    let hub = leading_hub();
    let (sid, mut rx, _) = hub.register(&fresh_hello()).unwrap();
    assert_eq!(kinds(&drain(&mut rx)), ["snapshot 1"]);
    let nack = Nack {
        version: 1,
        applied_version: 0,
        errors: vec![],
        message: "no".into(),
    };
    hub.nack(&sid, &nack);
    assert!(drain(&mut rx).is_empty());
    hub.apply_plan(&plan(&[1, 2]));
    assert_eq!(kinds(&drain(&mut rx)), ["snapshot 2"]);
    // The snapshot cleared the flag: later changes are deltas again.
    hub.apply_plan(&plan(&[3]));
    assert_eq!(kinds(&drain(&mut rx)), ["delta 2->3"]);
    assert_eq!(hub.reports.get(NODE).unwrap().refused.unwrap().version, 1);
}

#[test]
fn a_version_applied_in_part_is_held_and_the_next_change_is_a_delta_on_it() {
    let hub = leading_hub();
    let (sid, mut rx, _) = hub.register(&fresh_hello()).unwrap();
    hub.apply_plan(&plan(&[1, 2]));
    assert_eq!(kinds(&drain(&mut rx)), ["snapshot 1", "delta 1->2"]);
    let partial = Nack {
        version: 2,
        applied_version: 2,
        errors: vec![ballast_proto::v1::ServiceError {
            kind: ballast_proto::v1::ServiceErrorKind::Capacity as i32,
            reason: "ring storage full".into(),
            ..Default::default()
        }],
        message: String::new(),
    };
    hub.nack(&sid, &partial);
    assert!(drain(&mut rx).is_empty(), "nothing resent");
    hub.apply_plan(&plan(&[3]));
    assert_eq!(kinds(&drain(&mut rx)), ["delta 2->3"]);
    let report = hub.reports.get(NODE).unwrap();
    assert_eq!(report.applied_version, 2);
    assert_eq!(
        report.refused.unwrap().errors[0].reason,
        "ring storage full"
    );
}

#[test]
fn an_ack_whose_hash_differs_from_ours_gets_the_full_state_numbered_past_it() {
    let hub = leading_hub();
    let (sid, mut rx, _) = hub.register(&fresh_hello()).unwrap();
    drain(&mut rx);
    hub.ack(
        &sid,
        &Ack {
            version: 1,
            content_hash: vec![0; 32],
        },
    );
    assert_eq!(kinds(&drain(&mut rx)), ["snapshot 2"]);
}

/// web's `since` on NODE as the reports have it, and the plan it is from.
fn published(hub: &Hub) -> (Option<u64>, Option<Arc<Plan>>) {
    let sent = hub.reports.facts().sent;
    let web = ObjectKey::new(ObjectKind::VirtualServer, "default", "web");
    (
        sent.since.get(NODE).and_then(|s| s.get(&web).copied()),
        sent.plan,
    )
}

#[test]
fn what_was_sent_is_published_with_the_plan_it_came_from() {
    let hub = Hub::new(AgentReports::new());
    hub.set_leadership(true, None);
    hub.set_settled(true);
    let first = plan(&[1]);
    hub.apply_plan(&first);
    let (since, sent_plan) = published(&hub);
    assert_eq!(since, Some(1));
    assert!(Arc::ptr_eq(&sent_plan.unwrap(), &first));
    // An agent that holds other content (a previous controller's version
    // 7) is sent the whole state at 8: every object arrives with it.
    let stale = Hello {
        applied_version: 7,
        applied_hash: vec![0; 32],
        ..fresh_hello()
    };
    let (sid, mut rx, _) = hub.register(&stale).unwrap();
    assert_eq!(kinds(&drain(&mut rx)), ["snapshot 8"]);
    assert_eq!(published(&hub).0, Some(8));
    // Its ack of 8 with another hash: the state again, at 9.
    hub.ack(
        &sid,
        &Ack {
            version: 8,
            content_hash: vec![1; 32],
        },
    );
    assert_eq!(kinds(&drain(&mut rx)), ["snapshot 9"]);
    assert_eq!(published(&hub).0, Some(9));
    let revision = hub.reports.facts().sent.revision;
    // A plan with web changed: it moves with the delta.
    let second = plan(&[2]);
    hub.apply_plan(&second);
    assert_eq!(kinds(&drain(&mut rx)), ["delta 9->10"]);
    let (since, sent_plan) = published(&hub);
    assert_eq!(since, Some(10));
    assert!(Arc::ptr_eq(&sent_plan.unwrap(), &second));
    assert!(hub.reports.facts().sent.revision > revision);
}

#[test]
fn a_published_map_is_edited_in_place_unless_a_reader_holds_it() {
    let hub = leading_hub();
    let map = |hub: &Hub| hub.reports.facts().sent.since[NODE].clone();
    let address = Arc::as_ptr(&map(&hub));
    hub.apply_plan(&plan(&[2]));
    assert_eq!(Arc::as_ptr(&map(&hub)), address, "copied with no reader");
    // A reader holding facts keeps what it read; the link copies.
    let held = hub.reports.facts();
    hub.apply_plan(&plan(&[3]));
    let web = ObjectKey::new(ObjectKind::VirtualServer, "default", "web");
    assert_eq!(held.sent.since[NODE][&web], 2);
    assert_eq!(map(&hub)[&web], 3);
    assert_ne!(Arc::as_ptr(&map(&hub)), address);
}

#[test]
fn an_agent_that_does_not_drain_its_queue_is_ended_with_unavailable() {
    let hub = leading_hub();
    let (_, mut rx, mut ended) = hub.register(&fresh_hello()).unwrap();
    for i in 0..QUEUE as u8 {
        hub.apply_plan(&plan(&[1, 2 + i]));
    }
    let out = drain(&mut rx);
    // The snapshot and deltas up to the reserved slot, then the status.
    assert_eq!(out.len(), QUEUE);
    assert_eq!(
        kinds(&out[QUEUE - 2..]),
        [
            format!("delta {0}->{1}", QUEUE - 2, QUEUE - 1),
            "Unavailable".into()
        ]
    );
    assert!(ended.try_recv().is_err(), "the reader is told to stop");
    assert!(!hub.reports.get(NODE).unwrap().connected);
}

#[test]
fn losing_leadership_ends_streams_and_refuses_new_ones_naming_the_leader() {
    let hub = leading_hub();
    let (_, mut rx, _) = hub.register(&fresh_hello()).unwrap();
    hub.set_leadership(false, Some("controller-b".into()));
    let out = drain(&mut rx);
    let Err(status) = out.last().unwrap() else {
        panic!("{out:?}")
    };
    assert_eq!(status.code(), Code::Unavailable);
    assert!(status.message().contains("controller-b"), "{status:?}");
    let refused = hub.register(&fresh_hello()).err().unwrap();
    assert_eq!(refused.code(), Code::Unavailable);
    assert!(refused.message().contains("controller-b"), "{refused:?}");
}

#[test]
fn messages_from_a_replaced_stream_are_ignored() {
    let hub = leading_hub();
    let (old, mut old_rx, _) = hub.register(&fresh_hello()).unwrap();
    let (_, mut new_rx, _) = hub.register(&fresh_hello()).unwrap();
    assert_eq!(kinds(&drain(&mut old_rx)), ["snapshot 1", "Aborted"]);
    assert_eq!(kinds(&drain(&mut new_rx)), ["snapshot 1"]);
    hub.ack(
        &old,
        &Ack {
            version: 1,
            content_hash: vec![0; 32],
        },
    );
    hub.remove(&old, None);
    let report = hub.reports.get(NODE).unwrap();
    assert!(report.connected);
    assert_eq!(report.applied_version, 0);
    assert!(drain(&mut new_rx).is_empty());
}

#[test]
fn an_ack_of_a_version_never_sent_is_not_recorded() {
    let hub = leading_hub();
    let (sid, mut rx, _) = hub.register(&fresh_hello()).unwrap();
    drain(&mut rx);
    let ack = Ack {
        version: 9,
        content_hash: vec![0; 32],
    };
    hub.ack(&sid, &ack);
    assert_eq!(hub.reports.get(NODE).unwrap().applied_version, 0);
    assert!(drain(&mut rx).is_empty());
}

/// A leading hub that planned `plan(&[1])` but has not settled.
fn settling_hub() -> Hub {
    let hub = Hub::new(AgentReports::new());
    hub.set_leadership(true, None);
    hub.apply_plan(&plan(&[1]));
    hub
}

/// The hash of what `plan(backends)` gives `NODE`.
fn hash_of(backends: &[u8]) -> Vec<u8> {
    let mut versions = NodeVersions::new();
    versions.update_all(&plan(backends));
    versions.content_hash(NODE).to_vec()
}

/// The kind of the one message queued.
fn only_kind(out: &[Outbound]) -> &Kind {
    match out {
        [Ok(ControllerMessage { kind: Some(kind) })] => kind,
        other => panic!("expected one message, got {other:?}"),
    }
}

fn hello_holding(version: u64, backends: &[u8]) -> Hello {
    Hello {
        applied_version: version,
        applied_hash: hash_of(backends),
        ..fresh_hello()
    }
}

#[test]
fn while_unsettled_a_stream_is_accepted_and_sent_nothing_even_as_plans_change() {
    let hub = settling_hub();
    let (sid, mut rx, _) = hub.register(&hello_holding(7, &[1])).unwrap();
    hub.apply_plan(&plan(&[1, 2]));
    hub.apply_plan(&plan(&[3]));
    hub.nack(
        &sid,
        &Nack {
            version: 7,
            applied_version: 7,
            errors: vec![],
            message: "no".into(),
        },
    );
    assert!(drain(&mut rx).is_empty());
    let report = hub.reports.get(NODE).unwrap();
    assert!(report.connected, "its Hello is recorded");
    assert_eq!(report.applied_version, 7);
}

#[test]
fn at_settle_an_agent_holding_the_settled_plan_gets_nothing() {
    let hub = settling_hub();
    // A previous controller numbered this content 7; ours is at 1.
    let (_, mut rx, _) = hub.register(&hello_holding(7, &[1])).unwrap();
    hub.set_settled(true);
    assert!(drain(&mut rx).is_empty());
    // Its version was adopted: the next change is a delta on 7.
    hub.apply_plan(&plan(&[1, 2]));
    assert_eq!(kinds(&drain(&mut rx)), ["delta 7->8"]);
}

#[test]
fn at_settle_an_agent_gets_what_its_hello_lacks_against_the_latest_plan() {
    let hub = settling_hub();
    let (_, mut behind, _) = hub.register(&hello_holding(7, &[1])).unwrap();
    // The plan moved while unsettled (versions 2, 3): the agent holding the
    // old content gets the whole new state, numbered past its version.
    hub.apply_plan(&plan(&[1, 2]));
    hub.apply_plan(&plan(&[2]));
    hub.set_settled(true);
    let out = drain(&mut behind);
    assert_eq!(kinds(&out), ["snapshot 8"]);
    let Kind::Snapshot(state) = only_kind(&out) else {
        unreachable!()
    };
    assert_eq!(
        ballast_proto::content_hash(state).to_vec(),
        hash_of(&[2]),
        "the latest plan's content"
    );
}

#[test]
fn at_settle_an_agent_with_the_content_at_a_lower_version_gets_an_empty_realigning_delta() {
    let hub = settling_hub();
    hub.apply_plan(&plan(&[1, 2]));
    hub.apply_plan(&plan(&[1])); // version 3, same content as version 1
    let (_, mut rx, _) = hub.register(&hello_holding(1, &[1])).unwrap();
    hub.set_settled(true);
    let out = drain(&mut rx);
    assert_eq!(kinds(&out), ["delta 1->3"]);
    let Kind::Delta(d) = only_kind(&out) else {
        unreachable!()
    };
    assert!(ballast_proto::delta_is_empty(d), "{d:?}");
}

#[test]
fn unsettling_ends_live_streams_so_they_are_held_on_reconnect() {
    let hub = leading_hub();
    let (_, mut rx, _) = hub.register(&fresh_hello()).unwrap();
    hub.set_settled(false);
    assert_eq!(kinds(&drain(&mut rx)), ["snapshot 1", "Unavailable"]);
    assert!(!hub.reports.get(NODE).unwrap().connected);
    let (_, mut again, _) = hub.register(&fresh_hello()).unwrap();
    assert!(drain(&mut again).is_empty());
}

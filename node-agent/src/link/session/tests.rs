//! The session's decisions, message by message: what it applies, what it
//! answers without touching the data plane, what it holds afterwards.
use std::net::Ipv4Addr;

use ballast_api::Protocol;
use ballast_proto::v1::{
    self, ControllerMessage, agent_message::Kind as Out, controller_message::Kind,
};
use ballast_proto::{apply_delta, content_hash};

use super::*;
use crate::core::{ApplyError, ApplyReport, ServiceProblem, ServiceRef};
use crate::dataplane::PlanError;

const SNAT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);

fn defaults() -> Defaults {
    Defaults {
        snat_addrs: vec![SNAT],
        snat_ports: (10_000, 29_999),
    }
}

fn object(name: &str) -> v1::ObjectRef {
    v1::ObjectRef {
        kind: v1::ObjectKind::VirtualServer as i32,
        namespace: "default".into(),
        name: name.into(),
    }
}

fn service(name: &str, vip: [u8; 4], backend: [u8; 4]) -> v1::Service {
    v1::Service {
        object: Some(object(name)),
        vips: vec![vip.to_vec()],
        ports: vec![v1::Port {
            port: 80,
            protocol: v1::Protocol::Tcp as i32,
            backends: vec![v1::Backend {
                address: backend.to_vec(),
                port: 8080,
                weight: 1,
            }],
        }],
        forwarding: v1::Forwarding::FullNat as i32,
        ..Default::default()
    }
}

fn state(version: u64, services: Vec<v1::Service>) -> v1::NodeState {
    v1::NodeState {
        version,
        services,
        ..Default::default()
    }
}

fn snapshot(s: v1::NodeState) -> ControllerMessage {
    ControllerMessage {
        kind: Some(Kind::Snapshot(s)),
    }
}

fn delta(d: v1::Delta) -> ControllerMessage {
    ControllerMessage {
        kind: Some(Kind::Delta(d)),
    }
}

fn clean(version: u64) -> ApplyReport {
    ApplyReport {
        applied_version: version,
        errors: vec![],
        programmed: 1,
    }
}

#[track_caller]
fn apply(step: Step) -> Candidate {
    match step {
        Step::Apply(c) => *c,
        Step::Answer(a) => panic!("expected an apply, got the answer {a:?}"),
    }
}

#[track_caller]
fn answer(step: Step) -> Out {
    match step {
        Step::Answer(a) => a.kind.expect("a kind"),
        Step::Apply(c) => panic!("expected an answer, got an apply of {:?}", c.work),
    }
}

/// The whole version a candidate hands the core.
#[track_caller]
fn whole(c: &Candidate) -> &NodeDesired {
    match &c.work {
        Work::Whole(d) => d,
        Work::Change(ch) => panic!("expected a whole version, got the change {ch:?}"),
    }
}

/// The change a candidate hands the core.
#[track_caller]
fn change(c: &Candidate) -> &NodeChange {
    match &c.work {
        Work::Change(ch) => ch,
        Work::Whole(d) => panic!("expected a change, got the whole version {d:?}"),
    }
}

#[track_caller]
fn nack(out: Out) -> v1::Nack {
    match out {
        Out::Nack(n) => n,
        other => panic!("expected a nack, got {other:?}"),
    }
}

/// A session that applied `s` cleanly.
fn holding(s: v1::NodeState) -> Session {
    let mut session = Session::new(defaults(), None);
    let c = apply(session.receive(snapshot(s.clone())));
    session.applied(c, &clean(s.version));
    session
}

#[test]
fn a_fresh_agent_says_it_holds_nothing() {
    let hello = Session::new(defaults(), None).hello("node-a", "0.1.0");
    let Some(Out::Hello(h)) = hello.kind else {
        panic!("{hello:?}")
    };
    assert_eq!(
        (
            h.node_name.as_str(),
            h.agent_version.as_str(),
            h.applied_version,
            h.applied_hash.len()
        ),
        ("node-a", "0.1.0", 0, 0)
    );
}

#[test]
fn a_snapshot_is_applied_acked_with_its_hash_and_held() {
    let mut session = Session::new(defaults(), None);
    // Sent out of canonical order: the agent hashes the canonical form.
    let s = state(
        3,
        vec![
            service("web", [203, 0, 113, 10], [198, 51, 100, 11]),
            service("api", [203, 0, 113, 11], [198, 51, 100, 12]),
        ],
    );
    let c = apply(session.receive(snapshot(s.clone())));
    assert_eq!(c.version, 3);
    assert_eq!(whole(&c).services.len(), 2);
    assert_eq!(
        whole(&c).settings.snat_addrs,
        vec![SNAT],
        "the agent's default"
    );
    let out = session.applied(c, &clean(3));
    let mut canonical = s;
    ballast_proto::canonicalize(&mut canonical);
    let Some(Out::Ack(ack)) = out.kind else {
        panic!("{out:?}")
    };
    assert_eq!(
        (ack.version, ack.content_hash),
        (3, content_hash(&canonical).to_vec())
    );
    assert_eq!(session.applied_version(), 3);
    let Some(Out::Hello(h)) = session.hello("node-a", "x").kind else {
        panic!()
    };
    assert_eq!(
        (h.applied_version, h.applied_hash),
        (3, content_hash(&canonical).to_vec())
    );
}

#[test]
fn the_snapshot_already_held_is_acked_without_applying() {
    let s = state(
        4,
        vec![service("web", [203, 0, 113, 10], [198, 51, 100, 11])],
    );
    let session = holding(s.clone());
    let Out::Ack(ack) = answer(session.receive(snapshot(s))) else {
        panic!("an ack")
    };
    assert_eq!(ack.version, 4);
}

#[test]
fn a_snapshot_not_above_the_held_version_is_refused() {
    let session = holding(state(
        4,
        vec![service("web", [203, 0, 113, 10], [198, 51, 100, 11])],
    ));
    let other = state(
        4,
        vec![service("web", [203, 0, 113, 10], [198, 51, 100, 12])],
    );
    let n = nack(answer(session.receive(snapshot(other))));
    assert_eq!((n.version, n.applied_version), (4, 4));
    assert_eq!(n.message, "version 4 is not above the applied version 4");
}

#[test]
fn a_delta_applies_on_the_held_version_only() {
    let base = state(
        5,
        vec![service("web", [203, 0, 113, 10], [198, 51, 100, 11])],
    );
    let mut session = holding(base.clone());
    let changed = service("web", [203, 0, 113, 10], [198, 51, 100, 12]);
    let d = v1::Delta {
        version: 6,
        base_version: 5,
        upserted: vec![changed],
        ..Default::default()
    };

    let wrong = v1::Delta {
        base_version: 4,
        ..d.clone()
    };
    let n = nack(answer(session.receive(delta(wrong))));
    assert_eq!((n.version, n.applied_version), (6, 5));
    assert_eq!(
        n.message,
        "delta base version 4 is not the applied version 5"
    );

    let c = apply(session.receive(delta(d.clone())));
    assert_eq!(c.version, 6);
    assert_eq!(
        change(&c).objects["default/web"][0].backends[0].address,
        Ipv4Addr::new(198, 51, 100, 12)
    );
    let out = session.applied(c, &clean(6));
    let mut expected = base;
    apply_delta(&mut expected, &d).unwrap();
    let Some(Out::Ack(ack)) = out.kind else {
        panic!("{out:?}")
    };
    assert_eq!(
        (ack.version, ack.content_hash),
        (6, content_hash(&expected).to_vec())
    );
    assert_eq!(session.held().unwrap().state, expected);
}

#[test]
fn an_unreadable_version_is_refused_whole_and_the_held_one_stays() {
    let session = holding(state(
        2,
        vec![service("web", [203, 0, 113, 10], [198, 51, 100, 11])],
    ));
    let mut web = service("web", [203, 0, 113, 10], [198, 51, 100, 11]);
    web.ports[0].backends[0].address.push(9);
    let bad = state(3, vec![web]);
    let n = nack(answer(session.receive(snapshot(bad))));
    assert_eq!((n.version, n.applied_version), (3, 2));
    assert_eq!(n.errors.len(), 1, "{n:?}");
    assert_eq!(n.errors[0].kind, v1::ServiceErrorKind::Invalid as i32);
    assert_eq!(n.errors[0].field, "ports[0].backends[0].address");
    assert_eq!(n.errors[0].object, Some(object("web")));
    assert_eq!(session.applied_version(), 2);
}

#[test]
fn a_version_the_core_refuses_is_nacked_with_its_errors_and_not_held() {
    let mut session = holding(state(
        2,
        vec![service("web", [203, 0, 113, 10], [198, 51, 100, 11])],
    ));
    let s = state(
        3,
        vec![
            service("web", [203, 0, 113, 10], [198, 51, 100, 11]),
            service("dup", [203, 0, 113, 10], [198, 51, 100, 12]),
        ],
    );
    let c = apply(session.receive(snapshot(s)));
    let refused = ApplyReport {
        applied_version: 2,
        errors: vec![ApplyError::Service {
            service: ServiceRef {
                object: "default/web".into(),
                vip: Ipv4Addr::new(203, 0, 113, 10),
                port: 80,
                protocol: Protocol::Tcp,
            },
            problem: ServiceProblem::Duplicate {
                first: "default/dup".into(),
            },
        }],
        programmed: 1,
    };
    let n = nack(session.applied(c, &refused).kind.unwrap());
    assert_eq!((n.version, n.applied_version), (3, 2));
    assert_eq!(n.errors[0].kind, v1::ServiceErrorKind::Conflict as i32);
    assert_eq!(n.errors[0].object, Some(object("web")));
    assert_eq!(
        session.applied_version(),
        2,
        "the previous version still serves"
    );
}

#[test]
fn a_version_applied_in_part_is_held_and_nacked_at_its_own_version() {
    let mut session = Session::new(defaults(), None);
    let s = state(
        1,
        vec![service("web", [203, 0, 113, 10], [198, 51, 100, 11])],
    );
    let c = apply(session.receive(snapshot(s)));
    let partial = ApplyReport {
        applied_version: 1,
        errors: vec![ApplyError::Capacity {
            service: ServiceRef {
                object: "default/web".into(),
                vip: Ipv4Addr::new(203, 0, 113, 10),
                port: 80,
                protocol: Protocol::Tcp,
            },
            source: PlanError::TooManyServices {
                service: "default/web:80".into(),
                key: Default::default(),
                max: 0,
            },
        }],
        programmed: 0,
    };
    let n = nack(session.applied(c, &partial).kind.unwrap());
    assert_eq!((n.version, n.applied_version), (1, 1));
    assert_eq!(n.errors[0].kind, v1::ServiceErrorKind::Capacity as i32);
    assert_eq!(session.applied_version(), 1);
}

#[test]
fn ipv6_parts_are_skipped_reported_and_the_rest_held() {
    let mut session = Session::new(defaults(), None);
    let mut v6 = service("six", [0; 4], [198, 51, 100, 11]);
    v6.vips = vec![vec![
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
    ]];
    let s = state(
        1,
        vec![service("web", [203, 0, 113, 10], [198, 51, 100, 11]), v6],
    );
    let c = apply(session.receive(snapshot(s)));
    assert_eq!(whole(&c).services.len(), 1, "the IPv4 service only");
    let n = nack(session.applied(c, &clean(1)).kind.unwrap());
    assert_eq!((n.version, n.applied_version), (1, 1), "applied in part");
    assert_eq!(n.errors.len(), 1);
    assert_eq!(n.errors[0].kind, v1::ServiceErrorKind::Unsupported as i32);
    assert_eq!(n.errors[0].object, Some(object("six")));
}

#[test]
fn a_write_failure_holds_nothing_new() {
    let session = holding(state(
        1,
        vec![service("web", [203, 0, 113, 10], [198, 51, 100, 11])],
    ));
    let c = apply(session.receive(snapshot(state(2, vec![]))));
    let n = nack(
        session
            .failed(&c, "bpf_map_update_elem: ENOMEM")
            .kind
            .unwrap(),
    );
    assert_eq!((n.version, n.applied_version), (2, 1));
    assert!(n.message.contains("ENOMEM"), "{}", n.message);
}

mod deltas;

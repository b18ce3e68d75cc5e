//! Table: one object, its director nodes' facts in, the exact per-node
//! verdicts and the condition out; then `of`, which reads the facts the
//! link published and must not trust a stamp from a plan behind.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use ballast_proto::v1::ServiceError;

use super::*;
use crate::fixtures::tcp80_service_plan;
use crate::link::{AgentReport, Sent};
use crate::object_key::Kind;
use crate::plan::{DirectorStatus, NodePlan};

fn web() -> ObjectKey {
    ObjectKey::new(Kind::VirtualServer, "default", "web")
}

fn other() -> ObjectKey {
    ObjectKey::new(Kind::Service, "shop", "cart")
}

fn error(key: &ObjectKey, reason: &str) -> ServiceError {
    ServiceError {
        object: Some(object_ref(key)),
        field: "ports[0].backends[0].address".into(),
        reason: reason.into(),
        ..ServiceError::default()
    }
}

fn refusal(version: u64, errors: Vec<ServiceError>, message: &str) -> Refusal {
    Refusal {
        version,
        errors,
        message: message.into(),
    }
}

/// A connected agent that applied `applied`.
fn agent(applied: u64, refused: Option<&Refusal>) -> Option<AgentFacts<'_>> {
    Some(AgentFacts {
        connected: true,
        applied_version: applied,
        refused,
    })
}

fn node<'a>(name: &'a str, agent: Option<AgentFacts<'a>>, since: Option<u64>) -> NodeFacts<'a> {
    NodeFacts {
        node: name,
        announcing: name == "a",
        agent,
        stored: None,
        since,
    }
}

/// (node, programmed, message fragment or "" for none).
type NodeExpect = (&'static str, bool, &'static str);

struct Case {
    desc: &'static str,
    nodes: fn(&Refusals) -> Vec<NodeFacts<'_>>,
    cond: (CondStatus, &'static str, &'static str),
    expect: &'static [NodeExpect],
}

/// Refusals the cases borrow.
struct Refusals {
    names_web: Refusal,
    names_other: Refusal,
    whole: Refusal,
    old: Refusal,
}

fn refusals() -> Refusals {
    Refusals {
        names_web: refusal(
            5,
            vec![error(&web(), "address 0.0.0.0 is not a unicast address")],
            "",
        ),
        names_other: refusal(
            5,
            vec![error(&other(), "VIP 192.0.2.1:80/TCP is taken")],
            "",
        ),
        whole: refusal(
            5,
            vec![],
            "delta base version 3 is not the applied version 2",
        ),
        old: refusal(3, vec![error(&web(), "an earlier problem")], ""),
    }
}

const CASES: &[Case] = &[
    Case {
        desc: "applied the version that brought it: programmed",
        nodes: |_| vec![node("a", agent(5, None), Some(5))],
        cond: (
            CondStatus::True,
            "Programmed",
            "1/1 director nodes have applied generation 7",
        ),
        expect: &[("a", true, "")],
    },
    Case {
        desc: "a later version counts too",
        nodes: |_| vec![node("a", agent(9, None), Some(5))],
        cond: (CondStatus::True, "Programmed", "1/1"),
        expect: &[("a", true, "")],
    },
    Case {
        desc: "disconnected after applying it: still programmed (it keeps forwarding)",
        nodes: |_| {
            let mut a = agent(5, None);
            a.as_mut().unwrap().connected = false;
            vec![node("a", a, Some(5))]
        },
        cond: (CondStatus::True, "Programmed", "1/1"),
        expect: &[("a", true, "")],
    },
    Case {
        desc: "not applied yet: pending, saying which versions",
        nodes: |_| vec![node("a", agent(4, None), Some(5))],
        cond: (
            CondStatus::False,
            "Pending",
            "0/1 director nodes have applied generation 7",
        ),
        expect: &[(
            "a",
            false,
            "applied version 4; this object's current service is in version 5",
        )],
    },
    Case {
        desc: "not applied and the agent away: pending, saying so",
        nodes: |_| {
            let mut a = agent(4, None);
            a.as_mut().unwrap().connected = false;
            vec![node("a", a, Some(5))]
        },
        cond: (CondStatus::False, "Pending", "0/1"),
        expect: &[("a", false, "(the agent is not connected)")],
    },
    Case {
        desc: "no agent ever reported from the node",
        nodes: |_| vec![node("a", None, Some(5))],
        cond: (CondStatus::False, "Pending", "0/1"),
        expect: &[("a", false, "no agent on this node has connected")],
    },
    Case {
        desc: "not heard from by this controller, stored as programmed at this generation: kept",
        nodes: |_| {
            vec![NodeFacts {
                stored: Some(6),
                ..node("a", None, None)
            }]
        },
        cond: (CondStatus::True, "Programmed", "1/1"),
        expect: &[("a", true, "")],
    },
    Case {
        desc: "heard from: the stored status no longer counts",
        nodes: |_| {
            vec![NodeFacts {
                stored: Some(6),
                ..node("a", agent(4, None), Some(5))
            }]
        },
        cond: (CondStatus::False, "Pending", "0/1"),
        expect: &[("a", false, "applied version 4")],
    },
    Case {
        desc: "the link has not stamped this service yet: pending even if the agent is far ahead",
        nodes: |_| vec![node("a", agent(9, None), None)],
        cond: (CondStatus::False, "Pending", "0/1"),
        expect: &[("a", false, "not yet sent")],
    },
    Case {
        desc: "a nack naming it: refused with the agent's reason and the node",
        nodes: |r| vec![node("a", agent(4, Some(&r.names_web)), Some(5))],
        cond: (
            CondStatus::False,
            "Refused",
            "node a: the agent refused version 5: ports[0].backends[0].address: address 0.0.0.0 is not a unicast address",
        ),
        expect: &[("a", false, "address 0.0.0.0 is not a unicast address")],
    },
    Case {
        desc: "a partial apply naming it: refused though the version is applied",
        nodes: |r| vec![node("a", agent(5, Some(&r.names_web)), Some(5))],
        cond: (
            CondStatus::False,
            "Refused",
            "node a: the agent refused version 5",
        ),
        expect: &[("a", false, "not a unicast address")],
    },
    Case {
        desc: "a partial apply naming another object: programmed",
        nodes: |r| vec![node("a", agent(5, Some(&r.names_other)), Some(5))],
        cond: (CondStatus::True, "Programmed", "1/1"),
        expect: &[("a", true, "")],
    },
    Case {
        desc: "a version refused over another object, not applied: waiting, naming it",
        nodes: |r| vec![node("a", agent(4, Some(&r.names_other)), Some(5))],
        cond: (CondStatus::False, "Pending", "0/1"),
        expect: &[(
            "a",
            false,
            "over other objects (shop/cart: ports[0].backends[0].address: VIP 192.0.2.1:80/TCP is taken); it still applies version 4",
        )],
    },
    Case {
        desc: "a whole version refused before it was applied: refused with the message",
        nodes: |r| vec![node("a", agent(2, Some(&r.whole)), Some(5))],
        cond: (
            CondStatus::False,
            "Refused",
            "node a: the agent refused version 5: delta base version 3 is not the applied version 2",
        ),
        expect: &[("a", false, "delta base version 3")],
    },
    Case {
        desc: "a whole version refused after this service was applied: still programmed",
        nodes: |r| vec![node("a", agent(4, Some(&r.whole)), Some(3))],
        cond: (CondStatus::True, "Programmed", "1/1"),
        expect: &[("a", true, "")],
    },
    Case {
        desc: "a refusal older than the current service does not count",
        nodes: |r| vec![node("a", agent(4, Some(&r.old)), Some(5))],
        cond: (CondStatus::False, "Pending", "0/1"),
        expect: &[("a", false, "applied version 4")],
    },
    Case {
        desc: "two nodes, one behind: pending 1/2, each node its own line",
        nodes: |_| {
            vec![
                node("a", agent(5, None), Some(5)),
                node("b", agent(1, None), Some(2)),
            ]
        },
        cond: (
            CondStatus::False,
            "Pending",
            "1/2 director nodes have applied generation 7",
        ),
        expect: &[("a", true, ""), ("b", false, "applied version 1")],
    },
    Case {
        desc: "two nodes, one refusing: refused names that node only",
        nodes: |r| {
            vec![
                node("a", agent(5, None), Some(5)),
                node("b", agent(4, Some(&r.names_web)), Some(5)),
            ]
        },
        cond: (
            CondStatus::False,
            "Refused",
            "node b: the agent refused version 5",
        ),
        expect: &[("a", true, ""), ("b", false, "not a unicast address")],
    },
    Case {
        desc: "no director nodes",
        nodes: |_| vec![],
        cond: (
            CondStatus::False,
            "NoDirectors",
            "no node directs this object",
        ),
        expect: &[],
    },
];

#[test]
fn table() {
    let r = refusals();
    for case in CASES {
        let facts = (case.nodes)(&r);
        let got = programmed(&web(), Some(7), &facts);
        let (status, reason, message) = case.cond;
        assert_eq!(got.cond.status, status, "{}: {got:?}", case.desc);
        assert_eq!(got.cond.reason, reason, "{}: {got:?}", case.desc);
        assert!(
            got.cond.message.contains(message),
            "{}: {:?}",
            case.desc,
            got.cond.message
        );
        if status == CondStatus::False && reason == "Refused" {
            assert_eq!(
                got.cond.message.matches("node ").count(),
                1,
                "{}: one node refused",
                case.desc
            );
        }
        assert_eq!(got.nodes.len(), case.expect.len(), "{}", case.desc);
        for (n, (name, programmed, fragment)) in got.nodes.iter().zip(case.expect) {
            assert_eq!(n.node, *name, "{}", case.desc);
            assert_eq!(n.programmed, *programmed, "{}: {n:?}", case.desc);
            // A node that refused the object announces none of it.
            let refused =
                got.cond.reason == "Refused" && got.cond.message.contains(&format!("node {name}:"));
            assert_eq!(n.announcing, *name == "a" && !refused, "{}", case.desc);
            match fragment {
                &"" => assert_eq!(n.message, None, "{}", case.desc),
                f => assert!(
                    n.message.as_deref().unwrap_or_default().contains(f),
                    "{}: {n:?}",
                    case.desc
                ),
            }
        }
        assert_eq!(
            got.summary(),
            format!(
                "{}/{}",
                got.nodes.iter().filter(|n| n.programmed).count(),
                got.nodes.len()
            )
        );
    }
}

fn report(applied: u64) -> AgentReport {
    AgentReport {
        connected: true,
        connected_at: SystemTime::UNIX_EPOCH,
        last_heard: SystemTime::UNIX_EPOCH,
        agent_version: "test".into(),
        applied_version: applied,
        applied_hash: vec![],
        refused: None,
        heartbeat: None,
    }
}

/// A plan where node `a` directs `web` with backend `10.0.0.<backend>`.
fn plan(backend: u8) -> Arc<Plan> {
    let sp = tcp80_service_plan(
        IpAddr::from([192, 0, 2, 10]),
        [IpAddr::from([10, 0, 0, backend])],
    );
    let mut np = NodePlan::default();
    np.services.insert(web(), Arc::new(sp));
    let status = ObjectStatus {
        generation: Some(2),
        addresses: vec![],
        accepted: Cond::new(CondStatus::True, "Accepted", ""),
        ready: Cond::new(CondStatus::True, "Ready", ""),
        programmed: Cond::new(CondStatus::Unknown, "AwaitingAgents", ""),
        backends: Some((1, 1)),
        directors: vec![DirectorStatus {
            node: "a".into(),
            announcing: true,
        }],
        absent: Vec::new(),
    };
    Arc::new(Plan {
        nodes: [("a".to_string(), np)].into(),
        statuses: [(web(), Arc::new(status))].into(),
        pools: BTreeMap::new(),
    })
}

#[test]
fn a_stamp_from_a_plan_that_sent_other_content_is_not_trusted() {
    let sent_plan = plan(1);
    let facts = LinkFacts {
        reports: [("a".to_string(), report(3))].into(),
        sent: Sent {
            plan: Some(sent_plan.clone()),
            since: [("a".to_string(), Arc::new([(web(), 3)].into()))].into(),
            revision: 1,
        },
    };
    let status = &sent_plan.statuses[&web()];
    // The plan the link stamped: programmed.
    let same = of(&web(), status, &sent_plan, &facts, |_| None);
    assert_eq!(
        (same.cond.reason.as_str(), same.summary().as_str()),
        ("Programmed", "1/1")
    );
    // An equal plan planned again (other Arcs): still programmed.
    let again = of(&web(), status, &plan(1), &facts, |_| None);
    assert_eq!(again.cond.reason, "Programmed");
    // The writer is a plan ahead of the link: the node was not sent it.
    let ahead = of(&web(), status, &plan(2), &facts, |_| None);
    assert_eq!(ahead.cond.reason, "Pending", "{ahead:?}");
    assert_eq!(
        ahead.nodes[0].message.as_deref(),
        Some("the current service is not yet sent to the agent")
    );
    // Not accepted: the planner's verdict stands, no node lines.
    let mut invalid = ObjectStatus::clone(status);
    invalid.accepted.status = CondStatus::False;
    invalid.programmed = Cond::new(CondStatus::False, "NotAccepted", "x");
    let got = of(&web(), &invalid, &sent_plan, &facts, |_| None);
    assert_eq!((got.cond, got.nodes.len()), (invalid.programmed.clone(), 0));
}

#[test]
fn heartbeats_alone_leave_the_stamp_alone() {
    let mut facts = LinkFacts {
        reports: [("a".to_string(), report(3))].into(),
        sent: Sent::default(),
    };
    let before = FactsStamp::of(&facts);
    let r = facts.reports.get_mut("a").unwrap();
    r.last_heard = SystemTime::now();
    r.heartbeat = Some(ballast_proto::v1::Heartbeat {
        applied_version: 3,
        ..Default::default()
    });
    assert_eq!(FactsStamp::of(&facts), before);
    // What a verdict reads moves it: an ack, a disconnect, a version stamp.
    facts.reports.get_mut("a").unwrap().applied_version = 4;
    let acked = FactsStamp::of(&facts);
    assert_ne!(acked, before);
    facts.reports.get_mut("a").unwrap().connected = false;
    assert_ne!(FactsStamp::of(&facts), acked);
    let away = FactsStamp::of(&facts);
    facts.sent.revision += 1;
    assert_ne!(FactsStamp::of(&facts), away);
}

/// A push that changes other objects raises the agent's applied version;
/// this object's node line must not move with it, or every push would
/// rewrite the status of every object on the node.
#[test]
fn a_node_line_moves_only_with_its_own_service() {
    let line = |applied: u64, since: Option<u64>| {
        let got = programmed(&web(), Some(2), &[node("a", agent(applied, None), since)]);
        got.nodes[0].clone()
    };
    let programmed_at_5 = line(5, Some(5));
    assert!(programmed_at_5.programmed);
    assert_eq!(programmed_at_5.applied_version, 5);
    // Versions 6..9 carried other objects' changes.
    assert_eq!(line(9, Some(5)), programmed_at_5);
    // This object's service changed in version 10; the agent applied it.
    assert_eq!(line(10, Some(10)).applied_version, 10);
    // Not yet applied: no version claimed.
    let waiting = line(9, Some(10));
    assert!(!waiting.programmed);
    assert_eq!(waiting.applied_version, 0);
    // The stored status said programmed at version 4 (this generation):
    // kept while no agent has reported, and after one has (a restarted
    // controller's `since` is renumbered past it).
    for agent in [None, agent(12, None)] {
        let mut restarted = node("a", agent, Some(12));
        restarted.stored = Some(4);
        let kept = programmed(&web(), Some(2), &[restarted]);
        let line = &kept.nodes[0];
        assert_eq!((line.programmed, line.applied_version), (true, 4));
    }
}

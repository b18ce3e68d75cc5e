//! Whether an object is programmed: from what the link sent each of its
//! director nodes and what each node's agent acked or refused, the
//! per-node entries of `status.nodes` and the `Programmed` condition. Pure:
//! the writer reads [`LinkFacts`] and renders the result.
//!
//! A node has programmed an object when its agent applied a version at or
//! past the one since which the node's state holds the object's current
//! service, and refused nothing about it since. A refusal counts against
//! the object when it names the object, or when the agent refused a whole
//! version (its `message`) and still holds none with the object's current
//! service; a partial apply (a nack at the applied version whose errors
//! name other objects) leaves this object programmed.
//!
//! A node whose agent this controller has not heard from at all keeps what
//! the stored status says of it (programmed at this generation, or not): a
//! restarted or newly elected controller writes status before agents
//! reconnect, and must not flip every object to Pending and back (with an
//! Event each) when nothing changed on the wire. A node that stays unheard
//! stops being a director after the agents' grace period.

use std::sync::Arc;

use ballast_proto::v1;

use crate::link::encode::object_ref;
use crate::link::{AgentReport, LinkFacts, Refusal};
use crate::object_key::ObjectKey;
use crate::plan::{Cond, CondStatus, ObjectStatus, Plan, ServicePlan};

/// What is known of one director node of one object.
#[derive(Clone, Copy, Debug)]
pub struct NodeFacts<'a> {
    pub node: &'a str,
    pub announcing: bool,
    /// `None`: no agent of this node has reported to this controller.
    pub agent: Option<AgentFacts<'a>>,
    /// The stored status's `appliedVersion` when it says the node programmed
    /// the object's current generation: stands for the node while no agent
    /// has reported, and is kept as the line's version while programmed.
    pub stored: Option<u64>,
    /// The version since which the node's state holds this object's current
    /// service; `None` while the link has not stamped it (it plans apart
    /// from the status writer, and may be a plan behind).
    pub since: Option<u64>,
}

#[derive(Clone, Copy, Debug)]
pub struct AgentFacts<'a> {
    pub connected: bool,
    pub applied_version: u64,
    pub refused: Option<&'a Refusal>,
}

impl<'a> From<&'a AgentReport> for AgentFacts<'a> {
    fn from(r: &'a AgentReport) -> Self {
        AgentFacts {
            connected: r.connected,
            applied_version: r.applied_version,
            refused: r.refused.as_ref(),
        }
    }
}

/// One node's line of `status.nodes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeProgram {
    pub node: String,
    pub announcing: bool,
    pub programmed: bool,
    /// A node state version holding the object's current service that its
    /// agent applied (0 while not programmed; see `programmed`).
    pub applied_version: u64,
    /// Why it is not programmed.
    pub message: Option<String>,
}

/// The verdict for one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Programmed {
    pub cond: Cond,
    pub nodes: Vec<NodeProgram>,
    /// Director nodes that programmed it.
    pub ready: usize,
}

impl Programmed {
    /// `x/y` for the PROGRAMMED column.
    pub fn summary(&self) -> String {
        format!("{}/{}", self.ready, self.nodes.len())
    }
}

/// One node's verdict: programmed, refused (with the agent's reason), or
/// waiting (with what for).
enum Verdict {
    Programmed,
    Refused(String),
    Waiting(String),
}

fn verdict(key: &ObjectKey, n: &NodeFacts) -> Verdict {
    let Some(agent) = n.agent else {
        if n.stored.is_some() {
            return Verdict::Programmed;
        }
        return Verdict::Waiting("no agent on this node has connected to the controller".into());
    };
    let Some(since) = n.since else {
        return Verdict::Waiting("the current service is not yet sent to the agent".into());
    };
    let applied = agent.applied_version >= since;
    if let Some(r) = agent.refused.filter(|r| r.version >= since) {
        let object = object_ref(key);
        let ours: Vec<String> = r
            .errors
            .iter()
            .filter(|e| e.object.as_ref() == Some(&object))
            .map(describe)
            .collect();
        if !ours.is_empty() {
            return Verdict::Refused(format!(
                "the agent refused version {}: {}",
                r.version,
                ours.join("; ")
            ));
        }
        if !applied && !r.message.is_empty() {
            return Verdict::Refused(format!(
                "the agent refused version {}: {}",
                r.version, r.message
            ));
        }
        if !applied {
            let others: Vec<String> = r.errors.iter().map(describe_with_object).collect();
            return Verdict::Waiting(format!(
                "the agent refused version {} over other objects ({}); it still applies version {}",
                r.version,
                others.join("; "),
                agent.applied_version
            ));
        }
    }
    if applied {
        return Verdict::Programmed;
    }
    let away = if agent.connected {
        ""
    } else {
        " (the agent is not connected)"
    };
    Verdict::Waiting(format!(
        "the agent applied version {}; this object's current service is in version {since}{away}",
        agent.applied_version
    ))
}

fn describe(e: &v1::ServiceError) -> String {
    if e.field.is_empty() {
        e.reason.clone()
    } else {
        format!("{}: {}", e.field, e.reason)
    }
}

fn describe_with_object(e: &v1::ServiceError) -> String {
    match &e.object {
        Some(o) => format!("{}/{}: {}", o.namespace, o.name, describe(e)),
        None => describe(e),
    }
}

/// The verdict for `key` at `generation` over its director nodes.
pub fn programmed(key: &ObjectKey, generation: Option<i64>, directors: &[NodeFacts]) -> Programmed {
    let mut nodes = Vec::with_capacity(directors.len());
    let mut refusals = Vec::new();
    let mut ready = 0;
    for n in directors {
        // A node whose agent refused the object serves none of its
        // addresses, so it announces none of them either, whatever the plan
        // asked of it (the agent refuses announcing a VIP it does not serve).
        let (programmed, refused, message) = match verdict(key, n) {
            Verdict::Programmed => (true, false, None),
            Verdict::Refused(why) => {
                refusals.push(format!("node {}: {why}", n.node));
                (false, true, Some(why))
            }
            Verdict::Waiting(why) => (false, false, Some(why)),
        };
        ready += usize::from(programmed);
        // A version that brought the object's current service, not the
        // agent's latest: every push raises that one, and writing it would
        // rewrite the status of every object on the node per change. The
        // stored one stands while it still says this generation is
        // programmed: a restarted controller renumbers `since` (see
        // `link::versions`), and must not rewrite every status for it.
        let applied_version = match (programmed, n.stored) {
            (false, _) => 0,
            (true, Some(stored)) => stored,
            (true, None) => n.since.unwrap_or(0),
        };
        nodes.push(NodeProgram {
            node: n.node.to_string(),
            announcing: n.announcing && !refused,
            programmed,
            applied_version,
            message,
        });
    }
    let total = nodes.len();
    let what = match generation {
        Some(g) => format!("generation {g}"),
        None => "the current state".to_string(),
    };
    let cond = if total == 0 {
        Cond::new(
            CondStatus::False,
            "NoDirectors",
            "no node directs this object, so no agent programs it",
        )
    } else if !refusals.is_empty() {
        Cond::new(CondStatus::False, "Refused", refusals.join("; "))
    } else if ready == total {
        Cond::new(
            CondStatus::True,
            "Programmed",
            format!("{ready}/{total} director nodes have applied {what}"),
        )
    } else {
        Cond::new(
            CondStatus::False,
            "Pending",
            format!("{ready}/{total} director nodes have applied {what}"),
        )
    };
    Programmed { cond, nodes, ready }
}

/// [`programmed`] for a planned object, with each director's facts read
/// from `facts`, and `stored` saying, per node, what the stored status
/// says it applied (see [`NodeFacts::stored`]). An object the planner did
/// not accept keeps the planner's verdict (nothing is sent for it).
pub fn of(
    key: &ObjectKey,
    planned: &ObjectStatus,
    plan: &Plan,
    facts: &LinkFacts,
    stored: impl Fn(&str) -> Option<u64>,
) -> Programmed {
    if planned.accepted.status != CondStatus::True {
        return Programmed {
            cond: planned.programmed.clone(),
            nodes: Vec::new(),
            ready: 0,
        };
    }
    let directors: Vec<NodeFacts> = planned
        .directors
        .iter()
        .map(|d| NodeFacts {
            node: &d.node,
            announcing: d.announcing,
            agent: facts.reports.get(&*d.node).map(AgentFacts::from),
            stored: stored(&d.node),
            since: since(key, &d.node, plan, facts),
        })
        .collect();
    programmed(key, planned.generation, &directors)
}

/// The node's `since` for `key`, when the link stamped it from a plan that
/// gives the node the same service as `plan` does (else the status writer
/// is ahead of the link, and the node has not been sent what `plan` says).
fn since(key: &ObjectKey, node: &str, plan: &Plan, facts: &LinkFacts) -> Option<u64> {
    fn service<'p>(p: &'p Plan, node: &str, key: &ObjectKey) -> Option<&'p Arc<ServicePlan>> {
        p.nodes.get(node).and_then(|np| np.services.get(key))
    }
    let ours = service(plan, node, key)?;
    let theirs = service(facts.sent.plan.as_deref()?, node, key)?;
    if !Arc::ptr_eq(ours, theirs) && ours != theirs {
        return None;
    }
    facts.sent.since.get(node)?.get(key).copied()
}

/// The parts of [`LinkFacts`] a verdict reads: equal stamps give equal
/// verdicts, so the run loop skips a write pass when only heartbeats (or
/// other facts no verdict reads) changed.
#[derive(Clone, Debug, PartialEq)]
pub struct FactsStamp {
    sent_revision: u64,
    agents: Vec<(String, bool, u64, Option<Refusal>)>,
}

impl FactsStamp {
    pub fn of(facts: &LinkFacts) -> FactsStamp {
        FactsStamp {
            sent_revision: facts.sent.revision,
            agents: facts
                .reports
                .iter()
                .map(|(node, r)| {
                    (
                        node.clone(),
                        r.connected,
                        r.applied_version,
                        r.refused.clone(),
                    )
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests;

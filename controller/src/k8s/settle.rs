//! From the agents' reports to what the planner may rely on, and when the
//! link may speak. Pure: the clock is a parameter.
//!
//! A new leader (or a restarted controller) knows nothing of who was
//! present, and must not read "not reconnected yet" as "gone": that would
//! move VIPs and withdraw services from agents that are fine. So each
//! leadership term starts *settling*: agents' streams are accepted and
//! their Hellos recorded, nothing is sent to them (they keep forwarding
//! what they hold), and planning does not gate on presence. The term is
//! settled once every usable node has a connected agent, or when `grace`
//! has passed since it began; from then on planning uses presence and the
//! link brings each agent up to date from its Hello. Settled stays settled
//! until the term ends: a later disconnect is an agent going away, which
//! the grace period covers.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use crate::link::AgentReport;
use crate::plan::{AgentPresence, NodeAgent, NodeInfo};

/// What the run loop plans with and tells the link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gate {
    /// The link may send (see the module doc). False on a standby.
    pub settled: bool,
    /// `Unknown` until settled.
    pub agents: AgentPresence,
    /// When the gate may change with no report arriving: the end of the
    /// settling window, or the earliest grace period running out.
    pub wake: Option<SystemTime>,
}

/// One replica's settling state across leadership terms.
#[derive(Clone, Debug)]
pub struct Settling {
    grace: Duration,
    term: Option<Term>,
}

#[derive(Clone, Copy, Debug)]
struct Term {
    since: SystemTime,
    settled: bool,
}

impl Settling {
    pub fn new(grace: Duration) -> Self {
        Settling { grace, term: None }
    }

    /// The gate as of `now`, for a replica that `leading` or not, with
    /// `usable` nodes and the agents' `reports`.
    pub fn update(
        &mut self,
        leading: bool,
        now: SystemTime,
        usable: &[NodeInfo],
        reports: &BTreeMap<String, AgentReport>,
    ) -> Gate {
        if !leading {
            self.term = None;
            return Gate {
                settled: false,
                agents: AgentPresence::Unknown,
                wake: None,
            };
        }
        let term = self.term.get_or_insert(Term {
            since: now,
            settled: false,
        });
        if !term.settled {
            // `connected` is of this term: losing leadership ends every
            // stream, and a standby accepts none.
            let all_connected = usable
                .iter()
                .all(|n| reports.get(&*n.name).is_some_and(|r| r.connected));
            term.settled = all_connected || now >= term.since + self.grace;
        }
        if !term.settled {
            return Gate {
                settled: false,
                agents: AgentPresence::Unknown,
                wake: Some(term.since + self.grace),
            };
        }
        let (agents, wake) = presence(reports, now, self.grace, term.since);
        Gate {
            settled: true,
            agents: AgentPresence::Known(agents),
            wake,
        }
    }
}

/// Each reporting node's agent as of `now`: present while connected, or
/// while less than `grace` has passed since it was last heard (counted
/// from `term_since` at the earliest: a new leader gives every agent the
/// whole grace to find it). Also returns when the first present but
/// disconnected agent's grace runs out.
pub fn presence(
    reports: &BTreeMap<String, AgentReport>,
    now: SystemTime,
    grace: Duration,
    term_since: SystemTime,
) -> (BTreeMap<String, NodeAgent>, Option<SystemTime>) {
    let mut wake: Option<SystemTime> = None;
    let agents = reports
        .iter()
        .map(|(node, r)| {
            let agent = if r.connected {
                NodeAgent::Present
            } else {
                let expires = r.last_heard.max(term_since) + grace;
                if now < expires {
                    wake = Some(wake.map_or(expires, |w| w.min(expires)));
                    NodeAgent::Present
                } else {
                    NodeAgent::Away {
                        since: r.last_heard,
                        grace,
                    }
                }
            };
            (node.clone(), agent)
        })
        .collect();
    (agents, wake)
}

#[cfg(test)]
mod tests;

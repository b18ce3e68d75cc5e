//! Which usable nodes have an agent to direct with. Director nodes are
//! nodes with a live agent: a node whose agent stayed away past the grace
//! period, or never connected, is left out of every object's directors and
//! each object it would have directed is told why.
//!
//! Planning stays pure: the run loop turns the agents' reports into an
//! [`AgentPresence`] (see `k8s::settle`) and the planner only reads it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::nodes::NodeInfo;

/// What the planner knows of the agents.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AgentPresence {
    /// Not gated: every usable node directs. Used while a new leader (or a
    /// restarted controller) waits for agents to reconnect, by standbys,
    /// and by tests of the rest of planning.
    #[default]
    Unknown,
    /// Node name -> its agent. A usable node absent from the map never had
    /// an agent connect to this controller.
    Known(BTreeMap<String, NodeAgent>),
}

/// One node's agent as the planner sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeAgent {
    /// Connected, or disconnected for less than the grace period (it keeps
    /// forwarding its last state and is expected back).
    Present,
    /// Disconnected since `since` (when last heard) and not back within
    /// `grace`.
    Away { since: SystemTime, grace: Duration },
}

impl AgentPresence {
    /// Splits `usable` into the nodes that may direct and the ones that may
    /// not, each with why (shared: cloned into every object it concerns).
    pub fn split(&self, usable: Vec<NodeInfo>) -> (Vec<NodeInfo>, Vec<(NodeInfo, Arc<str>)>) {
        let AgentPresence::Known(agents) = self else {
            return (usable, Vec::new());
        };
        let mut present = Vec::with_capacity(usable.len());
        let mut absent = Vec::new();
        for node in usable {
            match agents.get(&*node.name) {
                Some(NodeAgent::Present) => present.push(node),
                Some(NodeAgent::Away { since, grace }) => {
                    absent.push((node, away_message(*since, *grace).into()))
                }
                None => absent.push((node, NEVER_CONNECTED.into())),
            }
        }
        (present, absent)
    }
}

const NEVER_CONNECTED: &str = "no agent has connected to the controller from this node";

fn away_message(since: SystemTime, grace: Duration) -> String {
    format!(
        "no agent connected to the controller (away since {}, grace {} elapsed)",
        rfc3339(since),
        humanize(grace)
    )
}

/// Seconds resolution, UTC: `2026-12-01T21:40:00Z`.
fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    match k8s_openapi::jiff::Timestamp::from_second(secs) {
        Ok(ts) => ts.to_string(),
        Err(_) => format!("{secs}s after the epoch"),
    }
}

/// `10s`, or `1.5s` when not whole seconds.
fn humanize(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            labels: Default::default(),
        }
    }

    #[test]
    fn unknown_keeps_every_node_and_known_explains_each_one_left_out() {
        let usable = vec![info("a"), info("b"), info("c")];
        let (present, absent) = AgentPresence::Unknown.split(usable.clone());
        assert_eq!((present, absent.len()), (usable.clone(), 0));

        let since = UNIX_EPOCH + Duration::from_secs(1_796_161_200); // 2026-12-01T21:40:00Z
        let known = AgentPresence::Known(
            [
                ("a".to_string(), NodeAgent::Present),
                (
                    "b".to_string(),
                    NodeAgent::Away {
                        since,
                        grace: Duration::from_secs(10),
                    },
                ),
            ]
            .into(),
        );
        let (present, absent) = known.split(usable);
        assert_eq!(present, [info("a")]);
        let why: Vec<(&str, &str)> = absent.iter().map(|(n, w)| (&*n.name, &**w)).collect();
        assert_eq!(
            why,
            [
                (
                    "b",
                    "no agent connected to the controller (away since \
                     2026-12-01T21:40:00Z, grace 10s elapsed)"
                ),
                ("c", NEVER_CONNECTED),
            ]
        );
    }

    #[test]
    fn grace_reads_as_seconds() {
        assert_eq!(humanize(Duration::from_millis(1500)), "1.5s");
        assert_eq!(humanize(Duration::from_secs(10)), "10s");
    }
}

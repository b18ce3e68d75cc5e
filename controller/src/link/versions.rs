//! Per-node versions of the state the controller streams, and how a
//! (re)connecting agent is brought up to date.
//!
//! A node's version only grows. It moves when the node's plan changes, and
//! not otherwise (a replan that changes nothing sends nothing). A restarted
//! or newly elected controller starts counting from scratch, so agents'
//! reports raise its counters: [`NodeVersions::resync`] adopts an agent's
//! higher version when the content is the same (nothing is sent, nothing
//! moves on the wire) and numbers past it when it is not.
//!
//! Content is compared by `ballast_proto::content_hash` (SHA-256 over the
//! canonical encoding at version 0), which the agent computes over what it
//! applied with the same function.

use std::collections::BTreeMap;

use ballast_proto::v1::{self, ControllerMessage, controller_message::Kind};
use ballast_proto::{ContentHash, content_hash};

use super::delta::node_delta;
use super::encode::node_state;
use crate::plan::{NodePlan, Plan};

/// The current version and plan of every node the controller has planned
/// for (including nodes whose plan became empty: their agents must hear it).
#[derive(Clone, Debug, Default)]
pub struct NodeVersions {
    nodes: BTreeMap<String, Current>,
}

#[derive(Clone, Debug, Default)]
struct Current {
    /// 0: nothing planned for the node yet (the empty state).
    version: u64,
    plan: NodePlan,
}

impl NodeVersions {
    pub fn new() -> Self {
        Self::default()
    }

    /// The node's current version; 0 when nothing was ever planned for it.
    pub fn version(&self, node: &str) -> u64 {
        self.nodes.get(node).map_or(0, |c| c.version)
    }

    /// The node's whole state at its current version.
    pub fn snapshot(&self, node: &str) -> v1::NodeState {
        match self.nodes.get(node) {
            Some(c) => node_state(c.version, &c.plan),
            None => node_state(0, &NodePlan::default()),
        }
    }

    /// The content hash of the node's current state.
    pub fn content_hash(&self, node: &str) -> ContentHash {
        content_hash(&self.snapshot(node))
    }

    /// Records `plan` as the node's desired state. Returns the delta from the
    /// previous version to a new one, or `None` (and the version stays) when
    /// the plan did not change.
    pub fn update(&mut self, node: &str, plan: &NodePlan) -> Option<v1::Delta> {
        let current = self.nodes.entry(node.to_string()).or_default();
        let delta = node_delta(&current.plan, plan);
        if ballast_proto::delta_is_empty(&delta) {
            return None;
        }
        let base_version = current.version;
        current.version += 1;
        current.plan = plan.clone();
        Some(v1::Delta {
            version: current.version,
            base_version,
            ..delta
        })
    }

    /// [`Self::update`] for every node of a plan; a node known before and
    /// absent from `plan` directs nothing now, so its delta empties it.
    pub fn update_all(&mut self, plan: &Plan) -> BTreeMap<String, v1::Delta> {
        let empty = NodePlan::default();
        let known: Vec<String> = self
            .nodes
            .keys()
            .filter(|n| !plan.nodes.contains_key(*n))
            .cloned()
            .collect();
        let gone = known.iter().map(|n| (n.as_str(), &empty));
        let planned = plan.nodes.iter().map(|(n, p)| (n.as_str(), p));
        planned
            .chain(gone)
            .filter_map(|(node, p)| Some((node.to_string(), self.update(node, p)?)))
            .collect()
    }

    /// An agent (re)connected reporting `applied_version` with
    /// `applied_hash` (empty when its version is 0). Returns what to send
    /// first, or `None` when it already holds the current state:
    /// - same content, same version: nothing;
    /// - same content, higher version (a previous controller numbered it):
    ///   adopt that version, send nothing;
    /// - same content, lower version: an empty delta that moves its version;
    /// - other content: the full state, numbered past the agent's version so
    ///   that it is never stale to it.
    pub fn resync(
        &mut self,
        node: &str,
        applied_version: u64,
        applied_hash: &[u8],
    ) -> Option<ControllerMessage> {
        let empty_hash;
        let applied_hash = if applied_version == 0 {
            empty_hash = content_hash(&v1::NodeState::default());
            &empty_hash[..]
        } else {
            applied_hash
        };
        let same = self.content_hash(node)[..] == *applied_hash;
        let current = self.nodes.entry(node.to_string()).or_default();
        let kind = match (same, applied_version.cmp(&current.version)) {
            (true, std::cmp::Ordering::Equal) => return None,
            (true, std::cmp::Ordering::Greater) => {
                current.version = applied_version;
                return None;
            }
            (true, std::cmp::Ordering::Less) => Kind::Delta(v1::Delta {
                version: current.version,
                base_version: applied_version,
                ..v1::Delta::default()
            }),
            (false, _) => {
                current.version = current.version.max(applied_version + 1);
                Kind::Snapshot(node_state(current.version, &current.plan))
            }
        };
        Some(ControllerMessage { kind: Some(kind) })
    }
}

#[cfg(test)]
mod tests;

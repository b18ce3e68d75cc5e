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
//! Content is compared by `ballast_proto::content_hash`, which the agent
//! computes over what it applied. Each node keeps its services' digests
//! and their sum (`ballast_proto::digest`), moved by each delta, so that
//! checking an agent's Ack costs what the change cost, not a re-encoding
//! of the node's whole state.
//!
//! Alongside each version it keeps, per object, the version from which the
//! node's state has held the object's current service ([`ObjectSince`]): an
//! agent that applied that version (or a later one) holds it, which is what
//! the object's `Programmed` status is judged on.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use ballast_proto::v1::{self, ControllerMessage, controller_message::Kind};
use ballast_proto::{ContentHash, DigestSum, content_hash, content_hash_of, service_digest};

use super::delta::node_delta;
use super::encode::{announcements, node_state};
use crate::object_key::{Kind as ObjectKind, ObjectKey};
use crate::plan::{NodePlan, Plan};

/// Per object of a node's state: the first version of the node whose state
/// holds the object's current service. Shared (`Arc`) so that publishing it
/// to readers costs a pointer, not a copy; an update edits it in place
/// unless a reader still holds it (then the reader keeps its copy).
pub type ObjectSince = Arc<BTreeMap<ObjectKey, u64>>;

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
    /// Exactly the keys of `plan.services`.
    since: ObjectSince,
    /// Each service's digest as sent, and their sum: the services' part
    /// of the content hash.
    digests: HashMap<ObjectKey, [u8; 32]>,
    digest_sum: DigestSum,
}

impl NodeVersions {
    pub fn new() -> Self {
        Self::default()
    }

    /// The node's current version; 0 when nothing was ever planned for it.
    pub fn version(&self, node: &str) -> u64 {
        self.nodes.get(node).map_or(0, |c| c.version)
    }

    /// Per object of the node's current state, the version since which that
    /// state holds the object's current service.
    pub fn since(&self, node: &str) -> ObjectSince {
        self.nodes
            .get(node)
            .map(|c| c.since.clone())
            .unwrap_or_default()
    }

    /// [`Self::since`] of every node.
    pub fn all_since(&self) -> impl Iterator<Item = (String, ObjectSince)> + '_ {
        self.nodes
            .iter()
            .map(|(node, c)| (node.clone(), c.since.clone()))
    }

    /// The node's whole state at its current version.
    pub fn snapshot(&self, node: &str) -> v1::NodeState {
        match self.nodes.get(node) {
            Some(c) => node_state(c.version, &c.plan),
            None => node_state(0, &NodePlan::default()),
        }
    }

    /// The content hash of the node's current state: equal to
    /// `content_hash(&self.snapshot(node))`, without encoding the state.
    pub fn content_hash(&self, node: &str) -> ContentHash {
        match self.nodes.get(node) {
            Some(c) => content_hash_of(
                None,
                announcements(&c.plan.l2_announce, &c.plan.bgp_announce).as_ref(),
                &c.digest_sum,
            ),
            None => content_hash(&v1::NodeState::default()),
        }
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
        // Copies the map only while a reader still holds the published one.
        let since = Arc::make_mut(&mut current.since);
        for gone in &delta.removed {
            let key = object_key(gone);
            since.remove(&key);
            if let Some(digest) = current.digests.remove(&key) {
                current.digest_sum.sub(&digest);
            }
        }
        for service in &delta.upserted {
            let key = object_key(service.object.as_ref().expect("encoded with its object"));
            let digest = service_digest(service);
            if let Some(old) = current.digests.insert(key.clone(), digest) {
                current.digest_sum.sub(&old);
            }
            current.digest_sum.add(&digest);
            // The plan's own key: its names are shared, not copied.
            let key = plan
                .services
                .get_key_value(&key)
                .map_or(key, |(k, _)| k.clone());
            since.insert(key, current.version);
        }
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
                // The agent holds all of it, at its own numbering.
                current.version = applied_version;
                current.restamp();
                return None;
            }
            (true, std::cmp::Ordering::Less) => Kind::Delta(v1::Delta {
                version: current.version,
                base_version: applied_version,
                ..v1::Delta::default()
            }),
            (false, _) => {
                current.version = current.version.max(applied_version + 1);
                // The agent holds some other content: only this snapshot
                // brings it any object's current service.
                current.restamp();
                Kind::Snapshot(node_state(current.version, &current.plan))
            }
        };
        Some(ControllerMessage { kind: Some(kind) })
    }
}

impl Current {
    /// Every object's current service arrives with the current version.
    fn restamp(&mut self) {
        let version = self.version;
        self.since = Arc::new(
            self.plan
                .services
                .keys()
                .map(|k| (k.clone(), version))
                .collect(),
        );
    }
}

/// The key of an object the encoder named (so its kind is never UNSPECIFIED).
fn object_key(r: &v1::ObjectRef) -> ObjectKey {
    let kind = match v1::ObjectKind::try_from(r.kind) {
        Ok(v1::ObjectKind::Service) => ObjectKind::Service,
        _ => ObjectKind::VirtualServer,
    };
    ObjectKey::new(kind, &r.namespace, &r.name)
}

#[cfg(test)]
mod tests;

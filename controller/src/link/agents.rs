//! What the agents report over the link, per node: who is connected, what
//! each has applied (version and content hash), what it refused and why,
//! and its latest heartbeat. Written by the link server, read by whoever
//! plans or writes status (planning reads who is connected: director nodes
//! are nodes with a present agent, see `k8s::settle`).
//!
//! Beside the reports, the link publishes what it sent ([`Sent`]): the plan
//! its versions were stamped from and, per node and object, the version
//! since which the node's state holds the object's current service. Both
//! live under one lock so a reader's [`LinkFacts`] never pairs an ack with
//! a version stamp it has not seen.
//!
//! A node's report outlives its stream: a disconnected agent keeps
//! forwarding its last applied state, and a new leader must be able to tell
//! "not reconnected yet" from "never seen".

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use ballast_proto::v1;
use tokio::sync::watch;

use super::versions::ObjectSince;
use crate::plan::Plan;

/// The latest facts an agent gave about its node.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentReport {
    /// True while the node has a stream to this controller.
    pub connected: bool,
    /// When the current (or last) stream started.
    pub connected_at: SystemTime,
    /// When anything was last heard on the stream, or when it ended: an
    /// agent's grace period counts from here.
    pub last_heard: SystemTime,
    /// The agent's build version, from its Hello.
    pub agent_version: String,
    /// The version the agent forwards with (Hello, Ack, Nack or Heartbeat).
    pub applied_version: u64,
    /// Content hash of that version, when the agent said it (Hello or Ack).
    pub applied_hash: Vec<u8>,
    /// The last version refused, with the agent's reasons; cleared by an Ack
    /// of a later version.
    pub refused: Option<Refusal>,
    /// The latest heartbeat (usage and health).
    pub heartbeat: Option<v1::Heartbeat>,
}

/// A version the agent refused.
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal {
    pub version: u64,
    pub errors: Vec<v1::ServiceError>,
    pub message: String,
}

/// What the link has sent, as of its last version stamp.
#[derive(Clone, Debug, Default)]
pub struct Sent {
    /// The plan the nodes' versions were last stamped from; `None` before
    /// the first.
    pub plan: Option<Arc<Plan>>,
    /// Per node, per object of its current state: the version since which
    /// that state holds the object's service as `plan` has it.
    pub since: BTreeMap<String, ObjectSince>,
    /// Grows with every change above, so a reader can tell "same" cheaply.
    pub revision: u64,
}

/// A consistent copy of the reports and of what was sent.
#[derive(Clone, Debug, Default)]
pub struct LinkFacts {
    pub reports: BTreeMap<String, AgentReport>,
    pub sent: Sent,
}

#[derive(Debug, Default)]
struct Inner {
    reports: BTreeMap<String, AgentReport>,
    sent: Sent,
}

/// Every node's report, shared between the link server (writer) and its
/// readers. Cloning shares the same reports.
#[derive(Clone, Debug)]
pub struct AgentReports {
    inner: Arc<RwLock<Inner>>,
    /// Bumped on every change, so a reader can wait for one.
    changes: Arc<watch::Sender<u64>>,
    /// Bumped when a node connects or disconnects (not on heartbeats):
    /// what presence depends on, besides the clock.
    connections: Arc<watch::Sender<u64>>,
}

impl Default for AgentReports {
    fn default() -> Self {
        Self {
            inner: Arc::default(),
            changes: Arc::new(watch::channel(0).0),
            connections: Arc::new(watch::channel(0).0),
        }
    }
}

impl AgentReports {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every node's report as of now.
    pub fn snapshot(&self) -> BTreeMap<String, AgentReport> {
        self.read().reports.clone()
    }

    /// One node's report.
    pub fn get(&self, node: &str) -> Option<AgentReport> {
        self.read().reports.get(node).cloned()
    }

    /// The reports and what was sent, read together.
    pub fn facts(&self) -> LinkFacts {
        let inner = self.read();
        LinkFacts {
            reports: inner.reports.clone(),
            sent: inner.sent.clone(),
        }
    }

    /// The link stamped versions: from `plan` when given, and `since` for
    /// the nodes listed (others keep theirs).
    pub(crate) fn sent(
        &self,
        plan: Option<&Arc<Plan>>,
        since: impl IntoIterator<Item = (String, ObjectSince)>,
    ) {
        self.stamp(plan, || ((), since), false);
    }

    /// Runs `stamp` (which updates the link's versions and returns every
    /// node's `since`) with the published maps let go of first, so that it
    /// edits them in place instead of copying each (a copy of 10k entries
    /// per node per plan otherwise). Readers wait meanwhile; a reader that
    /// holds a [`LinkFacts`] keeps its own copy.
    pub(crate) fn restamp<R>(
        &self,
        plan: &Arc<Plan>,
        stamp: impl FnOnce() -> (R, Vec<(String, ObjectSince)>),
    ) -> R {
        self.stamp(Some(plan), stamp, true)
    }

    fn stamp<R, I>(&self, plan: Option<&Arc<Plan>>, stamp: impl FnOnce() -> (R, I), all: bool) -> R
    where
        I: IntoIterator<Item = (String, ObjectSince)>,
    {
        let r = {
            let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
            let sent = &mut inner.sent;
            if all {
                sent.since.clear();
            }
            let (r, since) = stamp();
            if let Some(plan) = plan {
                sent.plan = Some(plan.clone());
            }
            sent.since.extend(since);
            sent.revision += 1;
            r
        };
        self.changes.send_modify(|n| *n += 1);
        r
    }

    /// Ticks on every change to any report.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Ticks when any node connects or disconnects.
    pub fn connections(&self) -> watch::Receiver<u64> {
        self.connections.subscribe()
    }

    /// A stream for `node` started with `hello`. Written by the link
    /// server; public so that a controller can be run without a link (its
    /// API tests) with agents that count as connected.
    pub fn hello(&self, node: &str, hello: &v1::Hello) {
        let now = SystemTime::now();
        self.edit(node, |r| {
            *r = Some(AgentReport {
                connected: true,
                connected_at: now,
                last_heard: now,
                agent_version: hello.agent_version.clone(),
                applied_version: hello.applied_version,
                applied_hash: hello.applied_hash.clone(),
                // A refusal is about a version this controller sent; a new
                // stream starts from what the agent holds.
                refused: None,
                heartbeat: r.as_ref().and_then(|old| old.heartbeat.clone()),
            });
        });
        self.connections.send_modify(|n| *n += 1);
    }

    pub(crate) fn ack(&self, node: &str, ack: &v1::Ack) {
        self.heard(node, |r| {
            r.applied_version = ack.version;
            r.applied_hash = ack.content_hash.clone();
            if r.refused.as_ref().is_some_and(|x| x.version <= ack.version) {
                r.refused = None;
            }
        });
    }

    pub(crate) fn nack(&self, node: &str, nack: &v1::Nack) {
        self.heard(node, |r| {
            if r.applied_version != nack.applied_version {
                // The agent holds a version whose hash it did not tell us.
                r.applied_hash.clear();
            }
            r.applied_version = nack.applied_version;
            r.refused = Some(Refusal {
                version: nack.version,
                errors: nack.errors.clone(),
                message: nack.message.clone(),
            });
        });
    }

    pub(crate) fn heartbeat(&self, node: &str, heartbeat: &v1::Heartbeat) {
        self.heard(node, |r| {
            if r.applied_version != heartbeat.applied_version {
                r.applied_hash.clear();
            }
            r.applied_version = heartbeat.applied_version;
            r.heartbeat = Some(heartbeat.clone());
        });
    }

    /// The node's stream ended; its last report stays. Public for the
    /// same reason as [`Self::hello`].
    pub fn disconnected(&self, node: &str) {
        let now = SystemTime::now();
        self.edit(node, |r| {
            if let Some(r) = r
                && r.connected
            {
                r.connected = false;
                r.last_heard = now;
            }
        });
        self.connections.send_modify(|n| *n += 1);
    }

    fn heard(&self, node: &str, f: impl FnOnce(&mut AgentReport)) {
        self.edit(node, |r| {
            if let Some(r) = r {
                r.last_heard = SystemTime::now();
                f(r);
            }
        });
    }

    fn edit(&self, node: &str, f: impl FnOnce(&mut Option<AgentReport>)) {
        {
            let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
            let map = &mut inner.reports;
            let mut entry = map.remove(node);
            f(&mut entry);
            if let Some(e) = entry {
                map.insert(node.to_string(), e);
            }
        }
        self.changes.send_modify(|n| *n += 1);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }
}

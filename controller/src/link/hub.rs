//! The link server's shared state: the per-node versions, the one live
//! stream per node, and the rules for what each stream is sent. Every send
//! happens under one lock, so a stream's first message (its resync) and the
//! deltas after it are in version order, and a plan change reaches every
//! stream exactly once.
//!
//! A leader that has not *settled* (see `k8s::settle`: it does not yet know
//! which agents are present) sends nothing: it accepts streams and keeps
//! each one's Hello, and when it settles brings each agent up to date from
//! that Hello, so a controller restart or a leader change moves nothing
//! on the wire.
//!
//! Sends never wait: each stream has a bounded queue with one slot kept for
//! a final error status. An agent too slow to drain its queue has its stream
//! ended with UNAVAILABLE ("fell behind"); it reconnects and resyncs, which
//! costs at most one snapshot instead of unbounded memory here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use ballast_proto::v1::{self, ControllerMessage, controller_message::Kind};
use tokio::sync::{mpsc, oneshot};
use tonic::Status;

use super::agents::AgentReports;
use super::versions::NodeVersions;
use crate::plan::Plan;

/// Messages queued per stream before the agent counts as fallen behind.
pub(crate) const QUEUE: usize = 64;

pub(crate) type Outbound = Result<ControllerMessage, Status>;

pub(crate) struct Hub {
    state: Mutex<State>,
    pub(crate) reports: AgentReports,
}

#[derive(Default)]
struct State {
    versions: NodeVersions,
    /// False until the first plan: a controller that has not planned must
    /// not tell agents anything (an empty state would withdraw everything).
    planned: bool,
    /// Only the leader serves; flipped under the lock so that no stream is
    /// registered after leadership is lost.
    leading: bool,
    /// The leader knows which agents are present (the run loop planned
    /// with it); until then nothing is sent.
    settled: bool,
    /// Who holds the lease, for the refusal message.
    leader_name: Option<String>,
    streams: HashMap<String, Stream>,
    next_id: u64,
}

struct Stream {
    id: u64,
    tx: mpsc::Sender<Outbound>,
    /// The last message sent was a full snapshot (so a nack of it is about
    /// content, and resending it at once would only be refused again).
    last_was_snapshot: bool,
    /// The agent refused a snapshot: its next message is a snapshot of the
    /// next change rather than a delta on a version it does not hold.
    needs_snapshot: bool,
    /// Registered while unsettled: the agent's applied (version, hash) from
    /// its Hello, to resync from at settle time. Nothing is sent meanwhile.
    held: Option<(u64, Vec<u8>)>,
    /// Dropped with the entry: tells the stream's reader to stop reading,
    /// so an ended stream closes at once rather than when the agent does.
    _ended: oneshot::Sender<()>,
}

/// Identifies one registered stream of a node; messages from a stream that
/// was since replaced are ignored.
#[derive(Clone, Debug)]
pub(crate) struct StreamId {
    pub node: String,
    id: u64,
}

impl Hub {
    pub(crate) fn new(reports: AgentReports) -> Self {
        Hub {
            state: Mutex::default(),
            reports,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new plan: stamp versions, publish what each node is sent, and send
    /// each connected node its delta.
    pub(crate) fn apply_plan(&self, plan: &Arc<Plan>) {
        let mut st = self.lock();
        st.planned = true;
        let deltas = self.reports.restamp(plan, || {
            let deltas = st.versions.update_all(plan);
            (deltas, st.versions.all_since().collect())
        });
        let State {
            versions, streams, ..
        } = &mut *st;
        for (node, delta) in deltas {
            let Some(stream) = streams.get_mut(&node).filter(|s| s.held.is_none()) else {
                continue;
            };
            let message = if stream.needs_snapshot {
                stream.needs_snapshot = false;
                Kind::Snapshot(versions.snapshot(&node))
            } else {
                Kind::Delta(delta)
            };
            if !send(stream, message) {
                streams.remove(&node);
                self.reports.disconnected(&node);
            }
        }
    }

    /// Leadership changed. Losing it ends every stream with UNAVAILABLE, so
    /// the agents go looking for the new leader.
    pub(crate) fn set_leadership(&self, leading: bool, leader_name: Option<String>) {
        let mut st = self.lock();
        st.leader_name = leader_name;
        let was = std::mem::replace(&mut st.leading, leading);
        if was && !leading {
            let status = not_leader(&st.leader_name);
            self.end_all(&mut st, status);
        }
    }

    /// Whether the leader knows which agents are present. Settling sends
    /// each held stream what its Hello says it lacks (the caller applies
    /// the plan made with that knowledge first); unsettling, which a term
    /// never does before it ends, ends the live streams so they are held
    /// again on reconnect.
    pub(crate) fn set_settled(&self, settled: bool) {
        let mut st = self.lock();
        if std::mem::replace(&mut st.settled, settled) == settled {
            return;
        }
        let State {
            versions, streams, ..
        } = &mut *st;
        let mut dropped = Vec::new();
        for (node, stream) in streams.iter_mut() {
            if settled {
                let Some((version, hash)) = stream.held.take() else {
                    continue;
                };
                let first = versions.resync(node, version, &hash);
                self.reports
                    .sent(None, [(node.clone(), versions.since(node))]);
                if let Some(kind) = first.and_then(|m| m.kind)
                    && !send(stream, kind)
                {
                    dropped.push(node.clone());
                }
            } else if stream.held.is_none() {
                let _ = stream.tx.try_send(Err(Status::unavailable(
                    "the controller is waiting for agents to reconnect; retry shortly",
                )));
                dropped.push(node.clone());
            }
        }
        for node in dropped {
            streams.remove(&node);
            self.reports.disconnected(&node);
        }
    }

    /// Ends every stream with `status` (shutdown).
    pub(crate) fn close(&self, status: Status) {
        let mut st = self.lock();
        st.leading = false;
        self.end_all(&mut st, status);
    }

    fn end_all(&self, st: &mut State, status: Status) {
        for (node, stream) in st.streams.drain() {
            // The reserved slot: this never finds the queue full.
            let _ = stream.tx.try_send(Err(status.clone()));
            self.reports.disconnected(&node);
        }
    }

    /// An agent said Hello: registers its stream (replacing an older one of
    /// the same node) and queues what brings it up to date.
    pub(crate) fn register(
        &self,
        hello: &v1::Hello,
    ) -> Result<(StreamId, mpsc::Receiver<Outbound>, oneshot::Receiver<()>), Status> {
        let mut st = self.lock();
        if !st.leading {
            return Err(not_leader(&st.leader_name));
        }
        if !st.planned {
            return Err(Status::unavailable(
                "the controller has not planned yet; retry shortly",
            ));
        }
        let node = hello.node_name.clone();
        // One stream per node, the newest wins: an agent opens a new stream
        // when it restarts or believes the old connection dead, and the old
        // one may linger half-open until TCP keepalive notices. The newest
        // Hello is what the agent holds now; two streams would each carry
        // deltas on different bases.
        if let Some(old) = st.streams.remove(&node) {
            let _ = old.tx.try_send(Err(Status::aborted(format!(
                "replaced by a newer stream for node {node}"
            ))));
        }
        st.next_id += 1;
        let id = st.next_id;
        let (tx, rx) = mpsc::channel(QUEUE);
        let (ended_tx, ended) = oneshot::channel();
        let mut stream = Stream {
            id,
            tx,
            last_was_snapshot: false,
            needs_snapshot: false,
            held: None,
            _ended: ended_tx,
        };
        if st.settled {
            let first = st
                .versions
                .resync(&node, hello.applied_version, &hello.applied_hash);
            self.reports
                .sent(None, [(node.clone(), st.versions.since(&node))]);
            if let Some(kind) = first.and_then(|m| m.kind) {
                send(&mut stream, kind);
            }
        } else {
            stream.held = Some((hello.applied_version, hello.applied_hash.clone()));
        }
        st.streams.insert(node.clone(), stream);
        self.reports.hello(&node, hello);
        Ok((StreamId { node, id }, rx, ended))
    }

    /// The agent applied `ack.version`. When that is the current version
    /// but its hash differs from ours, the two disagree about the content:
    /// send the full state.
    pub(crate) fn ack(&self, sid: &StreamId, ack: &v1::Ack) {
        let mut st = self.lock();
        if !is_current(&st, sid) {
            return;
        }
        let current = st.versions.version(&sid.node);
        if ack.version > current {
            // Never sent: versions only grow, and a reconnect adopts the
            // agent's. Not recorded, so status never shows a fiction.
            tracing::warn!(node = %sid.node, version = ack.version, current, "agent acked a version it was not sent; ignored");
            return;
        }
        self.reports.ack(&sid.node, ack);
        if ack.version != current || st.streams[&sid.node].held.is_some() {
            return;
        }
        let fix = st
            .versions
            .resync(&sid.node, ack.version, &ack.content_hash);
        if let Some(kind) = fix.and_then(|m| m.kind) {
            self.reports
                .sent(None, [(sid.node.clone(), st.versions.since(&sid.node))]);
            tracing::warn!(node = %sid.node, version = ack.version, "agent's content hash differs from ours; sending the full state");
            self.send_or_drop(&mut st, &sid.node, kind);
        }
    }

    /// The agent refused a version and keeps `nack.applied_version`. After a
    /// refused delta (perhaps on a base it does not hold) the full state
    /// goes at once; after a refused snapshot, resending the same content
    /// would only be refused again, so the next change goes as a snapshot.
    pub(crate) fn nack(&self, sid: &StreamId, nack: &v1::Nack) {
        let mut st = self.lock();
        if !is_current(&st, sid) {
            return;
        }
        self.reports.nack(&sid.node, nack);
        if nack.applied_version == nack.version {
            // Applied in part (what the agent could not do is named in the
            // errors): it holds this version, so the next change goes as a
            // delta on it, and resending would not make the parts fit.
            tracing::warn!(node = %sid.node, version = nack.version, errors = nack.errors.len(), message = %nack.message, "agent applied a version in part");
            return;
        }
        tracing::warn!(node = %sid.node, version = nack.version, errors = nack.errors.len(), message = %nack.message, "agent refused a version");
        if st.streams[&sid.node].held.is_some() {
            return; // nothing was sent on this stream: the settle resyncs it
        }
        let last_was_snapshot = st.streams[&sid.node].last_was_snapshot;
        if last_was_snapshot {
            if let Some(s) = st.streams.get_mut(&sid.node) {
                s.needs_snapshot = true;
            }
        } else {
            let snapshot = Kind::Snapshot(st.versions.snapshot(&sid.node));
            self.send_or_drop(&mut st, &sid.node, snapshot);
        }
    }

    pub(crate) fn heartbeat(&self, sid: &StreamId, heartbeat: &v1::Heartbeat) {
        let st = self.lock();
        if is_current(&st, sid) {
            self.reports.heartbeat(&sid.node, heartbeat);
        }
    }

    /// The stream ended (agent gone, or ended by us with `status`).
    pub(crate) fn remove(&self, sid: &StreamId, status: Option<Status>) {
        let mut st = self.lock();
        if is_current(&st, sid) {
            let stream = st.streams.remove(&sid.node).expect("current");
            if let Some(status) = status {
                let _ = stream.tx.try_send(Err(status));
            }
            self.reports.disconnected(&sid.node);
        }
    }

    fn send_or_drop(&self, st: &mut State, node: &str, kind: Kind) {
        if let Some(stream) = st.streams.get_mut(node)
            && !send(stream, kind)
        {
            st.streams.remove(node);
            self.reports.disconnected(node);
        }
    }
}

fn is_current(st: &State, sid: &StreamId) -> bool {
    st.streams.get(&sid.node).is_some_and(|s| s.id == sid.id)
}

/// Queues `kind`; false when the stream is gone or fell behind (then it was
/// ended with UNAVAILABLE through the reserved slot).
fn send(stream: &mut Stream, kind: Kind) -> bool {
    if stream.tx.is_closed() {
        return false;
    }
    if stream.tx.capacity() <= 1 {
        let _ = stream.tx.try_send(Err(Status::unavailable(
            "the agent fell behind the controller's updates; reconnect to resync",
        )));
        return false;
    }
    stream.last_was_snapshot = matches!(kind, Kind::Snapshot(_));
    stream
        .tx
        .try_send(Ok(ControllerMessage { kind: Some(kind) }))
        .is_ok()
}

pub(crate) fn not_leader(leader_name: &Option<String>) -> Status {
    Status::unavailable(match leader_name {
        Some(name) => format!("this controller is not the leader; the leader is {name}"),
        None => "this controller is not the leader; no leader is known yet".to_string(),
    })
}

#[cfg(test)]
mod tests;

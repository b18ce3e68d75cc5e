//! Writes planned statuses, with what the agents programmed (server-side
//! apply, one field manager), and records Events. Only the leader calls
//! this.

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ObjectReference, Service, ServiceStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, Resource};
use prometheus::IntGauge;

use ballast_api::{AddressPool, VirtualServer};

use super::programmed;
use super::status::{
    EventNote, SERVICE_CONDITION_PREFIX, apply_body, events, pool_status, service_status,
    service_status_current, virtual_server_status,
};
use super::stores::Stores;
use super::unchanged::Unchanged;
use crate::link::LinkFacts;
use crate::object_key::{Kind, ObjectKey};
use crate::plan::Plan;

pub const FIELD_MANAGER: &str = "ballast-controller";

/// Status patches in flight at once.
pub const CONCURRENT_WRITES: usize = 16;

pub struct Writer {
    client: Client,
    /// Objects the last pass found current, skipped while nothing moves.
    unchanged: Unchanged,
    /// Events to record, in the order their statuses were stored.
    events: tokio::sync::mpsc::UnboundedSender<(ObjectKey, ObjectReference, Vec<EventNote>)>,
    /// How many wait in `events` (the `events_queued` gauge).
    queued: IntGauge,
}

/// What one write pass did.
#[derive(Debug, Default)]
pub struct WriteReport {
    pub writes: u64,
    pub errors: u64,
}

impl Writer {
    /// Events are recorded by a task of their own: kube's `Recorder` walks
    /// its whole cache on every publish, which at 10k objects costs more
    /// than the status write it follows, and the planning loop must not
    /// wait for it (an endpoint change waits behind the write pass).
    pub fn new(client: Client, recorder: Recorder, queued: IntGauge) -> Writer {
        let (events, mut queue) =
            tokio::sync::mpsc::unbounded_channel::<(ObjectKey, ObjectReference, Vec<EventNote>)>();
        let recorded = queued.clone();
        tokio::spawn(async move {
            while let Some((key, reference, notes)) = queue.recv().await {
                record(&recorder, &key, &reference, &notes).await;
                recorded.dec();
            }
        });
        Writer {
            client,
            unchanged: Unchanged::default(),
            events,
            queued,
        }
    }

    fn params() -> PatchParams {
        // force: we are the only manager of these fields; a stale owner
        // (e.g. a manual edit) must not block status forever.
        PatchParams::apply(FIELD_MANAGER).force()
    }

    /// Applies every status that differs from what the stores hold, up to
    /// [`CONCURRENT_WRITES`] at a time: the first pass after a leader change
    /// may touch every object, and 10k sequential round trips would hold
    /// status back for minutes.
    pub async fn write(&mut self, plan: &Plan, stores: &Stores, facts: LinkFacts) -> WriteReport {
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let pending = pending_writes(plan, stores, &facts, &now, &mut self.unchanged);
        self.unchanged.end_pass();
        // Let go before the API round trips: while held, the link copies
        // each node's map it stamps instead of editing it in place.
        drop(facts);
        let writes = pending.len() as u64;
        let errors = futures::stream::iter(pending)
            .map(|w| self.apply(w))
            .buffer_unordered(CONCURRENT_WRITES)
            .filter(|ok| futures::future::ready(!ok))
            .count()
            .await as u64;
        WriteReport { writes, errors }
    }

    /// One status patch, then its Events: an Event says something happened,
    /// so it is recorded only once the status saying so is stored.
    async fn apply(&self, w: PendingWrite) -> bool {
        let params = Self::params();
        let result = match &w.target {
            Target::VirtualServer { namespace } => {
                Api::<VirtualServer>::namespaced(self.client.clone(), namespace)
                    .patch_status(&w.name, &params, &Patch::Apply(&w.body))
                    .await
                    .map(drop)
            }
            Target::Service { namespace } => {
                Api::<Service>::namespaced(self.client.clone(), namespace)
                    .patch_status(&w.name, &params, &Patch::Apply(&w.body))
                    .await
                    .map(drop)
            }
            Target::Pool => Api::<AddressPool>::all(self.client.clone())
                .patch_status(&w.name, &params, &Patch::Apply(&w.body))
                .await
                .map(drop),
        };
        match result {
            Ok(()) => {
                if let Some((key, reference)) = w.subject
                    && !w.notes.is_empty()
                {
                    // Closed only if the task died: events are best effort.
                    // Counted before sending: the task may record it first.
                    self.queued.inc();
                    if self.events.send((key, reference, w.notes)).is_err() {
                        self.queued.dec();
                    }
                }
                true
            }
            Err(e) => {
                tracing::warn!(object = %w.describe(), error = %e, "status write failed");
                false
            }
        }
    }
}

/// Publishes `notes` about `key`; best effort (status carries the same facts).
async fn record(
    recorder: &Recorder,
    key: &ObjectKey,
    reference: &ObjectReference,
    notes: &[EventNote],
) {
    for n in notes {
        let ev = Event {
            type_: if n.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: n.reason.clone(),
            note: Some(n.note.clone()),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&ev, reference).await {
            tracing::debug!(object = %key, error = %e, "event not recorded");
        }
    }
}

/// Which API a pending write goes to.
enum Target {
    VirtualServer { namespace: String },
    Service { namespace: String },
    Pool,
}

/// One status that differs from what is stored, with the Events its
/// change warrants.
struct PendingWrite {
    target: Target,
    name: String,
    body: serde_json::Value,
    /// The object Events are about (pools get none).
    subject: Option<(ObjectKey, ObjectReference)>,
    notes: Vec<EventNote>,
}

impl PendingWrite {
    fn describe(&self) -> String {
        match &self.subject {
            Some((key, _)) => key.to_string(),
            None => format!("AddressPool {}", self.name),
        }
    }
}

/// The statuses in `plan` that differ from the stores' copies. Objects the
/// stores no longer hold are skipped: they were deleted since planning; so
/// are those `unchanged` vouches for.
fn pending_writes(
    plan: &Plan,
    stores: &Stores,
    facts: &LinkFacts,
    now: &Time,
    unchanged: &mut Unchanged,
) -> Vec<PendingWrite> {
    let mut out = Vec::new();
    for (key, planned) in &plan.statuses {
        match key.kind {
            Kind::VirtualServer => {
                let id = ObjectRef::<VirtualServer>::new(&key.name).within(&key.namespace);
                let Some(current) = stores.virtual_servers.get(&id) else {
                    continue;
                };
                // A node line that says this generation is programmed.
                let stored = |node: &str| {
                    let nodes = &current.status.as_ref()?.nodes;
                    let line = nodes.iter().find(|n| n.name == node)?;
                    (line.programmed && line.generation == planned.generation)
                        .then_some(line.applied_version)
                };
                let verdict = programmed::of(key, planned, plan, facts, stored);
                let version = current.metadata.resource_version.as_deref();
                if unchanged.still_current(key, planned, &verdict, version) {
                    continue;
                }
                let desired = virtual_server_status(planned, &verdict, &current, now);
                if current.status.as_ref() == Some(&desired) {
                    unchanged.current(key, planned, verdict, version);
                    continue;
                }
                let old = current.status.clone().unwrap_or_default();
                out.push(PendingWrite {
                    target: Target::VirtualServer {
                        namespace: key.namespace.to_string(),
                    },
                    name: key.name.to_string(),
                    notes: events(
                        &old.addresses,
                        &desired.addresses,
                        &old.conditions,
                        &desired.conditions,
                    ),
                    body: apply_body("ballast.dev/v1alpha1", "VirtualServer", &key.name, &desired),
                    subject: Some((key.clone(), current.object_ref(&()))),
                });
            }
            Kind::Service => {
                let id = ObjectRef::<Service>::new(&key.name).within(&key.namespace);
                let Some(current) = stores.services.get(&id) else {
                    continue;
                };
                // A Service has no node lines: its condition, True at this
                // generation, vouches for every node.
                let kept = current
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .into_iter()
                    .flatten()
                    .any(|c| {
                        c.type_ == format!("{SERVICE_CONDITION_PREFIX}Programmed")
                            && c.status == "True"
                            && c.observed_generation == planned.generation
                    });
                let verdict = programmed::of(key, planned, plan, facts, |_| kept.then_some(0));
                let version = current.metadata.resource_version.as_deref();
                if unchanged.still_current(key, planned, &verdict, version) {
                    continue;
                }
                let desired = service_status(planned, &verdict, &current, now);
                if service_status_current(&desired, &current) {
                    unchanged.current(key, planned, verdict, version);
                    continue;
                }
                let old = current.status.clone().unwrap_or_default();
                let ips = |s: &ServiceStatus| -> Vec<String> {
                    s.load_balancer
                        .iter()
                        .flat_map(|l| l.ingress.iter().flatten())
                        .filter_map(|i| i.ip.clone())
                        .collect()
                };
                out.push(PendingWrite {
                    target: Target::Service {
                        namespace: key.namespace.to_string(),
                    },
                    name: key.name.to_string(),
                    notes: events(
                        &ips(&old),
                        &ips(&desired),
                        old.conditions.as_deref().unwrap_or_default(),
                        desired.conditions.as_deref().unwrap_or_default(),
                    ),
                    body: apply_body("v1", "Service", &key.name, &desired),
                    subject: Some((key.clone(), current.object_ref(&()))),
                });
            }
        }
    }
    for pool in stores.pools.state() {
        let name = pool.metadata.name.clone().unwrap_or_default();
        let Some(planned) = plan.pools.get(&name) else {
            continue;
        };
        let desired = pool_status(planned, &pool, now);
        if pool.status.as_ref() == Some(&desired) {
            continue;
        }
        out.push(PendingWrite {
            target: Target::Pool,
            body: apply_body("ballast.dev/v1alpha1", "AddressPool", &name, &desired),
            name,
            subject: None,
            notes: Vec::new(),
        });
    }
    out
}

//! Writes planned statuses (server-side apply, one field manager) and
//! records Events. Only the leader calls this.

use k8s_openapi::api::core::v1::{ObjectReference, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, Resource};

use ballast_api::{AddressPool, VirtualServer};

use super::status::{
    EventNote, apply_body, events, pool_status, service_status, service_status_current,
    virtual_server_status,
};
use super::stores::Stores;
use crate::object_key::{Kind, ObjectKey};
use crate::plan::Plan;

pub const FIELD_MANAGER: &str = "ballast-controller";

pub struct Writer {
    client: Client,
    recorder: Recorder,
}

/// What one write pass did.
#[derive(Debug, Default)]
pub struct WriteReport {
    pub writes: u64,
    pub errors: u64,
}

impl Writer {
    pub fn new(client: Client, recorder: Recorder) -> Writer {
        Writer { client, recorder }
    }

    fn params() -> PatchParams {
        // force: we are the only manager of these fields; a stale owner
        // (e.g. a manual edit) must not block status forever.
        PatchParams::apply(FIELD_MANAGER).force()
    }

    /// Applies every status that differs from what the stores hold.
    pub async fn write(&self, plan: &Plan, stores: &Stores) -> WriteReport {
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let mut report = WriteReport::default();
        for (key, planned) in &plan.statuses {
            let result = match key.kind {
                Kind::VirtualServer => {
                    let id = ObjectRef::<VirtualServer>::new(&key.name).within(&key.namespace);
                    let Some(current) = stores.virtual_servers.get(&id) else {
                        continue;
                    };
                    let desired = virtual_server_status(planned, &current, &now);
                    if current.status.as_ref() == Some(&desired) {
                        continue;
                    }
                    let old = current.status.clone().unwrap_or_default();
                    let notes = events(
                        &old.addresses,
                        &desired.addresses,
                        &old.conditions,
                        &desired.conditions,
                    );
                    let api: Api<VirtualServer> =
                        Api::namespaced(self.client.clone(), &key.namespace);
                    let body =
                        apply_body("ballast.dev/v1alpha1", "VirtualServer", &key.name, &desired);
                    let r = api
                        .patch_status(&key.name, &Self::params(), &Patch::Apply(body))
                        .await;
                    self.record(key, current.object_ref(&()), notes).await;
                    r.map(|_| ())
                }
                Kind::Service => {
                    let id = ObjectRef::<Service>::new(&key.name).within(&key.namespace);
                    let Some(current) = stores.services.get(&id) else {
                        continue;
                    };
                    let desired = service_status(planned, &current, &now);
                    if service_status_current(&desired, &current) {
                        continue;
                    }
                    let old = current.status.clone().unwrap_or_default();
                    let ips = |s: &k8s_openapi::api::core::v1::ServiceStatus| -> Vec<String> {
                        s.load_balancer
                            .iter()
                            .flat_map(|l| l.ingress.iter().flatten())
                            .filter_map(|i| i.ip.clone())
                            .collect()
                    };
                    let notes = events(
                        &ips(&old),
                        &ips(&desired),
                        old.conditions.as_deref().unwrap_or_default(),
                        desired.conditions.as_deref().unwrap_or_default(),
                    );
                    let api: Api<Service> = Api::namespaced(self.client.clone(), &key.namespace);
                    let body = apply_body("v1", "Service", &key.name, &desired);
                    let r = api
                        .patch_status(&key.name, &Self::params(), &Patch::Apply(body))
                        .await;
                    self.record(key, current.object_ref(&()), notes).await;
                    r.map(|_| ())
                }
            };
            report.writes += 1;
            if let Err(e) = result {
                report.errors += 1;
                tracing::warn!(object = %key, error = %e, "status write failed");
            }
        }
        for pool in stores.pools.state() {
            let name = pool.metadata.name.clone().unwrap_or_default();
            let Some(planned) = plan.pools.get(&name) else {
                continue;
            };
            let desired = pool_status(planned, &pool, &now);
            if pool.status.as_ref() == Some(&desired) {
                continue;
            }
            let api: Api<AddressPool> = Api::all(self.client.clone());
            let body = apply_body("ballast.dev/v1alpha1", "AddressPool", &name, &desired);
            report.writes += 1;
            if let Err(e) = api
                .patch_status(&name, &Self::params(), &Patch::Apply(body))
                .await
            {
                report.errors += 1;
                tracing::warn!(pool = %name, error = %e, "pool status write failed");
            }
        }
        report
    }

    async fn record(&self, key: &ObjectKey, reference: ObjectReference, notes: Vec<EventNote>) {
        for n in notes {
            let ev = Event {
                type_: if n.warning {
                    EventType::Warning
                } else {
                    EventType::Normal
                },
                reason: n.reason.clone(),
                note: Some(n.note),
                action: "Reconcile".into(),
                secondary: None,
            };
            if let Err(e) = self.recorder.publish(&ev, &reference).await {
                // Events are best effort; status carries the same facts.
                tracing::debug!(object = %key, error = %e, "event not recorded");
            }
        }
    }
}

//! Reflectors: one watch per kind, each keeping an in-memory store and
//! poking the planner when anything changes. What changed is recorded too
//! ([`Changes`]): when only EndpointSlices did, the planner re-resolves just
//! the objects that take their backends from those slices' Services
//! (`Planner::apply_endpoint_slice`) instead of planning everything again.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use ballast_api::{AddressPool, VirtualServer};

use crate::plan::{AgentPresence, Observed};

/// The caches of every watched kind.
#[derive(Clone)]
pub struct Stores {
    pub virtual_servers: Store<VirtualServer>,
    pub pools: Store<AddressPool>,
    pub services: Store<Service>,
    pub endpoint_slices: Store<EndpointSlice>,
    pub nodes: Store<Node>,
    pub namespaces: Store<Namespace>,
    changes: Arc<Mutex<Changes>>,
}

/// What the watches saw since the planner last took it.
#[derive(Debug, Default)]
pub struct Changes {
    /// EndpointSlice events, in order.
    pub slices: Vec<SliceChange>,
    /// Anything else changed (another kind, or a relist of any kind): the
    /// whole world must be planned again.
    pub other: bool,
}

/// What the planner reads of a VirtualServer or a Service besides its
/// status, per object: an event that leaves it unchanged is the
/// controller's own status write coming back, which must not make every
/// endpoint change after it plan the whole world again.
#[derive(Debug, Default)]
struct Seen(std::collections::HashMap<(String, String, String), u64>);

impl Seen {
    /// Records `meta` (and `spec`, a digest of the spec where the API
    /// server keeps no generation for it) and says whether anything but
    /// the status changed: the spec, labels, annotations or deletion.
    fn changed(&mut self, kind: &str, meta: &ObjectMeta, spec: Option<u64>) -> bool {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (
            spec,
            meta.generation,
            &meta.labels,
            &meta.annotations,
            meta.deletion_timestamp.is_some(),
        )
            .hash(&mut h);
        let key = (
            kind.to_string(),
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
        );
        self.0.insert(key, h.finish()) != Some(h.finish())
    }

    fn forget(&mut self, kind: &str, meta: &ObjectMeta) {
        self.0.remove(&(
            kind.to_string(),
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
        ));
    }
}

#[derive(Debug)]
pub enum SliceChange {
    Applied(Arc<EndpointSlice>),
    Deleted(Arc<EndpointSlice>),
}

impl Changes {
    /// Records one watch event of kind `K`. Only EndpointSlice adds and
    /// edits and deletes are kept one by one; a relist (init events) is a
    /// change of the whole kind.
    fn record<K: Resource<DynamicType = ()> + 'static>(
        &mut self,
        seen: &mut Seen,
        event: &watcher::Event<K>,
    ) {
        let slice = |k: &K| {
            (k as &dyn std::any::Any)
                .downcast_ref::<EndpointSlice>()
                .map(|s| Arc::new(s.clone()))
        };
        // A Service's generation is not a spec change counter on every API
        // server version: its spec is compared itself (it is small). Of a
        // Node's status the planner reads only whether it is Ready; the
        // kubelet rewrites the rest every few minutes.
        let spec = |k: &K| {
            use std::hash::{Hash, Hasher};
            let any = k as &dyn std::any::Any;
            let mut h = std::collections::hash_map::DefaultHasher::new();
            if let Some(svc) = any.downcast_ref::<Service>() {
                serde_json::to_string(&svc.spec)
                    .unwrap_or_default()
                    .hash(&mut h);
            } else if let Some(node) = any.downcast_ref::<Node>() {
                crate::plan::is_ready(node).hash(&mut h);
            } else {
                return None;
            }
            Some(h.finish())
        };
        let kind = K::kind(&());
        // Kinds whose events mostly carry status the planner does not read:
        // its own status writes coming back (VirtualServers, Services,
        // AddressPools) and kubelets' Node status updates.
        let ours = matches!(
            kind.as_ref(),
            "VirtualServer" | "Service" | "AddressPool" | "Node"
        );
        match event {
            watcher::Event::Apply(k) => match slice(k) {
                Some(s) => self.slices.push(SliceChange::Applied(s)),
                None if ours => self.other |= seen.changed(&kind, k.meta(), spec(k)),
                None => self.other = true,
            },
            watcher::Event::Delete(k) => {
                seen.forget(&kind, k.meta());
                match slice(k) {
                    Some(s) => self.slices.push(SliceChange::Deleted(s)),
                    None => self.other = true,
                }
            }
            watcher::Event::InitApply(k) => {
                if ours {
                    seen.changed(&kind, k.meta(), spec(k));
                }
                self.other = true
            }
            watcher::Event::Init | watcher::Event::InitDone => self.other = true,
        }
    }
}

impl Stores {
    /// Starts the reflectors in `tasks`; `changed` is notified after every
    /// event of any kind.
    pub fn start(client: &Client, tasks: &mut JoinSet<()>, changed: Arc<Notify>) -> Stores {
        let changes = Arc::new(Mutex::new(Changes {
            slices: Vec::new(),
            other: true,
        }));
        let poke = (changed, changes.clone());
        Stores {
            virtual_servers: reflect(Api::all(client.clone()), tasks, &poke),
            pools: reflect(Api::all(client.clone()), tasks, &poke),
            services: reflect(Api::all(client.clone()), tasks, &poke),
            endpoint_slices: reflect(Api::all(client.clone()), tasks, &poke),
            nodes: reflect(Api::all(client.clone()), tasks, &poke),
            namespaces: reflect(Api::all(client.clone()), tasks, &poke),
            changes,
        }
    }

    /// Whether anything the planner reads changed since the last
    /// [`Self::take_changes`].
    pub fn has_changes(&self) -> bool {
        let c = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        c.other || !c.slices.is_empty()
    }

    /// What changed since the last call (the first call: everything).
    pub fn take_changes(&self) -> Changes {
        std::mem::take(&mut *self.changes.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Resolves once every store has completed its initial list, so the
    /// first plan never sees a half-loaded world (which would look like
    /// objects disappearing and hand their addresses to others).
    pub async fn wait_until_ready(&self) {
        let _ = tokio::join!(
            self.virtual_servers.wait_until_ready(),
            self.pools.wait_until_ready(),
            self.services.wait_until_ready(),
            self.endpoint_slices.wait_until_ready(),
            self.nodes.wait_until_ready(),
            self.namespaces.wait_until_ready(),
        );
    }

    pub fn observed(&self) -> Observed {
        Observed {
            virtual_servers: self.virtual_servers.state(),
            services: self.services.state(),
            endpoint_slices: self.endpoint_slices.state(),
            nodes: self.nodes.state(),
            pools: self.pools.state(),
            namespaces: self.namespaces.state(),
            // The agents are not in the API: the run loop fills this in.
            agents: AgentPresence::Unknown,
        }
    }
}

fn reflect<K>(
    api: Api<K>,
    tasks: &mut JoinSet<()>,
    (changed, changes): &(Arc<Notify>, Arc<Mutex<Changes>>),
) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let changed = changed.clone();
    let changes = changes.clone();
    let mut seen = Seen::default();
    let kind = K::kind(&()).to_string();
    // Watch errors (including 410 Gone) are retried with backoff by the
    // watcher, which relists; they are logged, never fatal.
    let stream = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default()).default_backoff(),
    );
    tasks.spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(event) => {
                    // Recorded before the poke, so the planner that wakes
                    // finds it.
                    changes
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .record(&mut seen, &event);
                    changed.notify_one()
                }
                Err(e) => tracing::warn!(kind, error = %e, "watch error; retrying"),
            }
        }
    });
    reader
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn slice(name: &str) -> EndpointSlice {
        serde_json::from_value(json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": "default"}, "addressType": "IPv4", "endpoints": []}))
        .unwrap()
    }

    #[test]
    fn endpoint_slice_events_are_kept_one_by_one_and_anything_else_replans() {
        let mut c = Changes::default();
        let mut seen = Seen::default();
        c.record(&mut seen, &watcher::Event::Apply(slice("a")));
        c.record(&mut seen, &watcher::Event::Delete(slice("b")));
        assert!(!c.other);
        let names: Vec<(&str, String)> = c
            .slices
            .iter()
            .map(|s| match s {
                SliceChange::Applied(s) => ("applied", s.metadata.name.clone().unwrap()),
                SliceChange::Deleted(s) => ("deleted", s.metadata.name.clone().unwrap()),
            })
            .collect();
        assert_eq!(
            names,
            [("applied", "a".to_string()), ("deleted", "b".to_string())]
        );

        let node: Node = serde_json::from_value(json!({"metadata": {"name": "n"}})).unwrap();
        c.record(&mut seen, &watcher::Event::Apply(node));
        assert!(c.other, "a Node changed: plan everything");

        let mut relist = Changes::default();
        relist.record(&mut seen, &watcher::Event::<EndpointSlice>::InitDone);
        assert!(relist.other, "a relist may have missed deletions");
    }

    #[test]
    fn a_status_only_event_of_our_objects_plans_nothing_more() {
        let svc = |generation: i64, annotation: &str, ready: &str| -> Service {
            serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "default",
                "generation": generation, "annotations": {"ballast.dev/address-pool": annotation}},
                "status": {"conditions": [{"type": "ballast.dev/Ready", "status": ready,
                    "reason": "r", "message": "", "lastTransitionTime": "2026-12-01T00:00:00Z"}]}}))
            .unwrap()
        };
        let mut seen = Seen::default();
        let mut first = Changes::default();
        first.record(&mut seen, &watcher::Event::Apply(svc(1, "a", "False")));
        assert!(first.other, "a new Service");
        let mut status = Changes::default();
        status.record(&mut seen, &watcher::Event::Apply(svc(1, "a", "True")));
        assert!(!status.other, "only the status this controller wrote");
        let mut spec = Changes::default();
        spec.record(&mut seen, &watcher::Event::Apply(svc(2, "a", "True")));
        assert!(spec.other, "the spec changed (generation)");
        let mut annotation = Changes::default();
        annotation.record(&mut seen, &watcher::Event::Apply(svc(2, "b", "True")));
        assert!(annotation.other, "an annotation the planner reads changed");
        let mut ports = svc(2, "b", "True");
        ports.spec = Some(serde_json::from_value(json!({"ports": [{"port": 80}]})).unwrap());
        let mut spec_only = Changes::default();
        spec_only.record(&mut seen, &watcher::Event::Apply(ports));
        assert!(
            spec_only.other,
            "the spec changed though the generation did not"
        );
    }
}

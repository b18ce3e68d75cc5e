//! Reflectors: one watch per kind, each keeping an in-memory store and
//! poking the planner when anything changes.

use std::fmt::Debug;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
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
}

impl Stores {
    /// Starts the reflectors in `tasks`; `changed` is notified after every
    /// event of any kind.
    pub fn start(client: &Client, tasks: &mut JoinSet<()>, changed: Arc<Notify>) -> Stores {
        Stores {
            virtual_servers: reflect(Api::all(client.clone()), tasks, &changed),
            pools: reflect(Api::all(client.clone()), tasks, &changed),
            services: reflect(Api::all(client.clone()), tasks, &changed),
            endpoint_slices: reflect(Api::all(client.clone()), tasks, &changed),
            nodes: reflect(Api::all(client.clone()), tasks, &changed),
            namespaces: reflect(Api::all(client.clone()), tasks, &changed),
        }
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

fn reflect<K>(api: Api<K>, tasks: &mut JoinSet<()>, changed: &Arc<Notify>) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let changed = changed.clone();
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
                Ok(_) => changed.notify_one(),
                Err(e) => tracing::warn!(kind, error = %e, "watch error; retrying"),
            }
        }
    });
    reader
}

//! An in-process Kubernetes API server for tests that use the real
//! [`kube::Client`] and `kube::runtime` watchers.
//!
//! [`FakeApiServer::start`] serves plain HTTP on `127.0.0.1:<random port>`;
//! [`FakeApiServer::client`] is a `kube::Client` pointed at it. The server
//! speaks the wire protocol kube-client 5 and kube-runtime 5 use, with the
//! semantics a real apiserver has for them, so that a test that passes here
//! passes against a cluster.
//!
//! # Implemented
//!
//! * **Kinds**: the built-ins in [`resources::BUILTINS`] (core `namespaces`,
//!   `services`, `nodes`, `secrets`, `events`; `discovery.k8s.io/v1` `endpointslices`;
//!   `coordination.k8s.io/v1` `leases`; `events.k8s.io/v1` `events`;
//!   `apiextensions.k8s.io/v1` `customresourcedefinitions`) and every kind
//!   declared by a CRD, installed with [`FakeApiServer::install_crd`] or by
//!   creating the CRD through the API. A CRD serves each `served` version
//!   (same objects, apiVersion rewritten: the `None` conversion), with its
//!   scope and per-version status subresource, and is marked `Established`
//!   by a status write right after creation. Deleting it deletes its custom
//!   resources, ends their watches and stops serving them.
//! * **Discovery**: `/version`, `/api`, `/api/v1`, `/apis`, `/apis/{g}`,
//!   `/apis/{g}/{v}` (with `.../status` subresources), and the aggregated v2
//!   documents when the `Accept` header asks for `APIGroupDiscoveryList`.
//! * **Objects**: uid, creationTimestamp, a single global resourceVersion
//!   counter, generation for the kinds whose strategy keeps one (custom
//!   resources, CRDs, EndpointSlices; not Services, Leases, Nodes,
//!   Namespaces or Events): 1 on create, +1 when `spec` changes (for kinds
//!   without `spec`, anything outside metadata/status), `generateName`, name
//!   validation (422), namespaced objects only in existing namespaces
//!   (`default`, `kube-system`, `kube-public`, `kube-node-lease` exist from
//!   the start), `metadata.managedFields`.
//! * **Verbs**: get, list, watch, create, update (PUT; creates a missing
//!   object only for kinds that allow create-on-update: Leases and Events),
//!   patch (merge, strategic, JSON patch, server-side apply), delete (with
//!   uid and resourceVersion preconditions), deletecollection, `dryRun`, and
//!   the `/status` subresource: main-resource writes keep the stored status,
//!   status writes change only status, creates drop status.
//! * **Finalizers**: deleting an object with `metadata.finalizers` only sets
//!   its `deletionTimestamp` (a MODIFIED event, the object in the answer);
//!   no finalizer may be added then, and the update that removes the last
//!   one deletes it (DELETED event).
//! * **Concurrency**: a stale `metadata.resourceVersion` in a PUT or patch
//!   body is a 409 Conflict; a write that leaves the object unchanged keeps
//!   its resourceVersion and emits no event.
//! * **Lists**: label selectors (`=`, `==`, `!=`, `in`, `notin`, exists,
//!   `!`, `>`, `<`), field selectors (`metadata.name`, `metadata.namespace`
//!   and each kind's selectable fields), `limit`/`continue` paging from one
//!   snapshot, `remainingItemCount`, `resourceVersion` + `resourceVersionMatch`
//!   (most recent, any, not-older-than, exact; 410 Expired before the
//!   compaction point, 504 for versions from the future), metadata-only
//!   responses (`Accept: ...;as=PartialObjectMetadataList`).
//! * **Watches**: newline-delimited events over a chunked response; from a
//!   resourceVersion (replaying history), from "now" with synthetic ADDED
//!   events (`resourceVersion` absent or `0`), or as a streaming list
//!   (`sendInitialEvents=true`, ended by a BOOKMARK annotated
//!   `k8s.io/initial-events-end`); selectors that turn updates moving an
//!   object in or out of the selection into ADDED or DELETED; BOOKMARKs every
//!   second when progress is unseen and before `timeoutSeconds` ends the
//!   stream; 410 ERROR events for versions older than the last
//!   [`FakeApiServer::compact`], which also ends every open watch that way.
//! * **Test hooks**: [`FakeApiServer::requests`] (a log of every request),
//!   [`FakeApiServer::fail_next`] (fault injection), [`FakeApiServer::object`]
//!   (direct reads), [`FakeApiServer::compact`].
//!
//! # Deliberate simplifications
//!
//! * **Server-side apply**: every list is atomic (no merge by `name`/`type`
//!   keys as structured-merge-diff does for `ports` or `conditions`);
//!   ownership is tracked per leaf field; the identity of a manager is
//!   (name, operation, subresource). Only `labels`, `annotations`,
//!   `finalizers` and `ownerReferences` of metadata are owned. Client-sent
//!   `managedFields` are ignored.
//! * **Strategic merge patch** is applied as a JSON merge patch: lists are
//!   replaced wholesale and `$patch`-style directives are dropped. Custom
//!   resources reject it with 415, as the apiserver does.
//! * **Deletion has no grace period** and no garbage collection through
//!   ownerReferences. Deleting a namespace or a CRD removes the objects in
//!   it at once (ignoring their finalizers) instead of going through
//!   `Terminating`.
//! * **No schema**: no OpenAPI validation, defaulting or pruning of unknown
//!   fields, for built-ins or CRDs; no conversion webhooks; no per-kind
//!   defaulting (e.g. Services get no clusterIP).
//! * The two Event kinds (`v1` and `events.k8s.io/v1`) are stored separately
//!   (a real apiserver serves one storage through both).
//! * List items always carry `apiVersion` and `kind` (real apiservers omit
//!   them for built-in kinds; clients do not depend on either).
//! * A watcher that falls more than [`store::BROADCAST_CAPACITY`] events
//!   behind is closed without an error, like a real watch-cache eviction; the
//!   client resumes from its last resourceVersion, which the complete
//!   history still holds.
//! * [`FakeApiServer::compact`] also advances the resourceVersion by one, as
//!   if an unrelated write happened, so that every version handed out so far
//!   is too old while a fresh list returns a servable one.
//! * Non-apply writes without `fieldManager` are managed by the User-Agent's
//!   product name, or `unknown` (kube-client sends no User-Agent).
//! * `fieldValidation` is accepted and ignored (no unknown-field detection).
//! * No authentication, authorization, admission webhooks, or protobuf / CBOR.

#![warn(missing_docs)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;
use tokio::sync::watch as signal;
use tokio::task::JoinHandle;

pub mod apply;
pub mod clock;
pub mod discovery;
mod faults;
pub mod fixtures;
mod hooks;
pub mod list;
pub mod managed;
pub mod objects;
pub mod patch;
mod paths;
pub mod recorder;
pub mod resources;
mod routes;
pub mod selectors;
mod state;
pub mod status;
pub mod store;
mod verbs;
mod watch;

pub use recorder::{ApiRequest, RequestRecord};
pub use status::ApiError;

use crate::managed::Subresource;
use crate::objects::{View, render};
use crate::resources::{GroupResource, split_api_version};
use crate::routes::Shared;
use crate::store::Notice;
use crate::verbs::{DeleteOptions, WriteOptions};

/// The manager name the server uses for writes made through its handle.
pub const HANDLE_MANAGER: &str = "ballast-fake-apiserver";

struct Inner {
    shared: Arc<Shared>,
    stop: signal::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Inner {
    fn signal_stop(&self) {
        let _ = self.stop.send(true);
        // Ends open watches so the graceful shutdown does not wait for them.
        self.shared.lock().store.notify(Notice::Shutdown);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.signal_stop();
    }
}

/// A running fake apiserver. Cheap to clone; it stops serving when the last
/// clone is dropped or [`FakeApiServer::shutdown`] is called.
#[derive(Clone)]
pub struct FakeApiServer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FakeApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeApiServer")
            .field("url", &self.url())
            .finish()
    }
}

impl FakeApiServer {
    /// Binds `127.0.0.1:0` and serves in a background tokio task.
    ///
    /// # Panics
    /// If the loopback port cannot be bound.
    pub async fn start() -> FakeApiServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr: SocketAddr = listener.local_addr().expect("bound address");
        let shared = Arc::new(Shared {
            state: Mutex::new(state::State::default()),
            log: Default::default(),
            faults: Default::default(),
            addr,
        });
        let (stop, mut stopped) = signal::channel(false);
        let app = routes::router(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|s| *s).await;
            });
            if let Err(e) = serve.await {
                tracing::warn!("fake apiserver stopped: {e}");
            }
        });
        FakeApiServer {
            inner: Arc::new(Inner {
                shared,
                stop,
                task: Mutex::new(Some(task)),
            }),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.inner.shared.addr)
    }

    /// A `kube::Client` for this server, default namespace `default`.
    ///
    /// # Panics
    /// Never in practice: the URL is always valid plain HTTP.
    pub fn client(&self) -> kube::Client {
        let uri = self.url().parse().expect("valid URL");
        let config = kube::Config::new(uri);
        kube::Client::try_from(config).expect("plain HTTP client")
    }

    fn write_options(&self) -> WriteOptions {
        WriteOptions {
            field_manager: Some(HANDLE_MANAGER.into()),
            default_manager: HANDLE_MANAGER.into(),
            ..Default::default()
        }
    }

    /// Creates (or replaces) the CRD object, which makes its group/version/plural
    /// served and discoverable, with the CRD's scope and status subresources.
    ///
    /// # Panics
    /// If the CRD is invalid (the error the apiserver would answer with).
    pub fn install_crd(&self, crd: &CustomResourceDefinition) {
        let mut body = serde_json::to_value(crd).expect("CRDs serialize");
        body["apiVersion"] = "apiextensions.k8s.io/v1".into();
        body["kind"] = "CustomResourceDefinition".into();
        let name = crd.metadata.name.clone().unwrap_or_default();
        let mut state = self.inner.shared.lock();
        let served = state
            .registry
            .lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions")
            .expect("CRDs are built in");
        let opts = self.write_options();
        let result = if verbs::get(&state, &served, "", &name).is_ok() {
            if let Some(meta) = body["metadata"].as_object_mut() {
                meta.remove("resourceVersion");
            }
            verbs::replace(
                &mut state,
                &served,
                "",
                &name,
                Subresource::Main,
                body,
                &opts,
            )
            .map(|w| w.object)
        } else {
            verbs::create(&mut state, &served, "", body, &opts)
        };
        if let Err(e) = result {
            panic!("install_crd({name}): {e}");
        }
    }

    /// Deletes the CRD `name` (e.g. `virtualservers.ballast.dev`): its custom
    /// resources are deleted, their watches end, and the kind is no longer
    /// served (404) nor discoverable. Does nothing if it is not installed.
    pub fn uninstall_crd(&self, name: &str) {
        let mut state = self.inner.shared.lock();
        let served = state
            .registry
            .lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions")
            .expect("CRDs are built in");
        let _ = verbs::delete(&mut state, &served, "", name, &DeleteOptions::default());
    }

    /// Compacts the history: every resourceVersion issued so far becomes too
    /// old. Lists and watches naming one get 410 Expired (watches as an ERROR
    /// event), continue tokens expire, and every open watch receives a 410
    /// ERROR event and ends, so kube-runtime watchers relist.
    pub fn compact(&self) {
        self.inner.shared.lock().store.compact();
    }

    /// The stored object, as served at `api_version` (`v1`, `coordination.k8s.io/v1`, ...),
    /// or `None`. `namespace` is `None` for cluster-scoped kinds.
    pub fn object(
        &self,
        api_version: &str,
        kind_plural: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let (group, _) = split_api_version(api_version);
        let state = self.inner.shared.lock();
        let obj = state.store.get(
            &GroupResource::new(group, kind_plural),
            namespace.unwrap_or_default(),
            name,
        )?;
        Some(render(&obj.value, api_version, View::Full))
    }

    /// All objects of a kind (in every namespace), as served at `api_version`.
    pub fn objects(&self, api_version: &str, kind_plural: &str) -> Vec<Value> {
        let (group, _) = split_api_version(api_version);
        let state = self.inner.shared.lock();
        state
            .store
            .objects(&GroupResource::new(group, kind_plural), None)
            .map(|(_, o)| render(&o.value, api_version, View::Full))
            .collect()
    }

    /// The current (latest issued) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.inner.shared.lock().store.current_rv()
    }

    /// Every request answered so far, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.inner.shared.log.snapshot()
    }

    /// Forgets the request log.
    pub fn clear_requests(&self) {
        self.inner.shared.log.clear();
    }

    /// Makes the next `times` requests with `method` (case-insensitive, `"*"`
    /// for any) whose `path?query` contains `path_contains` fail with a Status
    /// of code `status` (reason from the code, e.g. 503 ServiceUnavailable).
    ///
    /// The query is matched as sent: kube writes list and watch queries as
    /// `?&limit=500`, `?&watch=true&...`, so match a parameter (`"limit=500"`,
    /// `"watch=true"`) rather than `"?limit"`. Note that kube's default client
    /// retries 429, 503 and 504 by itself, so those surface only after 15
    /// consecutive failures.
    pub fn fail_next(&self, method: &str, path_contains: &str, status: u16, times: usize) {
        self.inner
            .shared
            .faults
            .add(method, path_contains, status, times);
    }

    /// Stops serving: open watches end, the listener closes, and this waits
    /// (up to 5 s) for in-flight requests. Other clones stop working too.
    pub async fn shutdown(self) {
        self.inner.signal_stop();
        let task = self
            .inner
            .task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = task {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

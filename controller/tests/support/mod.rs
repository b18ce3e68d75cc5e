//! What the controller's API tests share: an API server with our CRDs,
//! controller options, objects to apply, and polling until something holds.

#![allow(dead_code)] // each test binary uses a part

use std::future::Future;
use std::time::Duration;

use ballast_api::{AddressPool, VirtualServer};
use ballast_controller::k8s::leader::LeaseConfig;
use ballast_controller::k8s::run::Options;
use ballast_controller::link::AgentReports;
use ballast_controller::plan::PlanOptions;
use ballast_fake_apiserver::FakeApiServer;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Client;
use kube::CustomResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

/// Options for controller `identity` on the Lease `default/ballast-controller`.
pub fn options_with_lease(identity: &str, duration: Duration, retry_period: Duration) -> Options {
    Options {
        plan: PlanOptions::default(),
        lease: LeaseConfig {
            namespace: "default".into(),
            name: "ballast-controller".into(),
            identity: identity.into(),
            duration,
        },
        retry_period,
        debounce: Duration::from_millis(20),
        resync: Duration::from_secs(1),
        agent_grace: Duration::from_secs(1),
    }
}

/// Reports in which each of `nodes` has an agent connected, for tests of
/// the controller's API side, which run no link: their nodes direct, and a
/// new leader settles at once.
pub fn connected_agents(nodes: &[&str]) -> AgentReports {
    let reports = AgentReports::new();
    for node in nodes {
        let hello = ballast_proto::v1::Hello {
            node_name: node.to_string(),
            agent_version: "test".into(),
            applied_version: 0,
            applied_hash: Vec::new(),
        };
        reports.hello(node, &hello);
    }
    reports
}

/// An API server with our CRDs installed.
pub async fn server() -> FakeApiServer {
    let s = FakeApiServer::start().await;
    s.install_crd(&VirtualServer::crd());
    s.install_crd(&AddressPool::crd());
    s
}

/// Polls `check` until it returns `Some`, or fails after 15 s with `what`.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    for _ in 0..300 {
        if let Some(v) = check().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// Server-side applies `body` (any kind used here) as manager "test".
pub async fn apply(client: &Client, body: Value) {
    let name = body["metadata"]["name"].as_str().unwrap().to_string();
    let ns = body["metadata"]["namespace"].as_str().map(str::to_string);
    let ns = ns.as_deref();
    let c = client.clone();
    match body["kind"].as_str().unwrap() {
        "VirtualServer" => {
            patch(
                Api::<VirtualServer>::namespaced(c, ns.unwrap()),
                &name,
                body,
            )
            .await
        }
        "AddressPool" => patch(Api::<AddressPool>::all(c), &name, body).await,
        "Service" => patch(Api::<Service>::namespaced(c, ns.unwrap()), &name, body).await,
        "EndpointSlice" => {
            patch(
                Api::<EndpointSlice>::namespaced(c, ns.unwrap()),
                &name,
                body,
            )
            .await
        }
        other => panic!("unexpected kind {other}"),
    }
}

pub async fn patch<K>(api: Api<K>, name: &str, body: Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let pp = PatchParams::apply("test").force();
    api.patch(name, &pp, &Patch::Apply(body)).await.unwrap();
}

#[allow(unused_imports)] // as dead_code above: each test binary uses a part
pub use ballast_fake_apiserver::fixtures::ready_node;

pub fn pool(addresses: &[&str]) -> Value {
    json!({"apiVersion": "ballast.dev/v1alpha1", "kind": "AddressPool",
           "metadata": {"name": "public"}, "spec": {"addresses": addresses}})
}

pub fn vs(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "ballast.dev/v1alpha1", "kind": "VirtualServer",
           "metadata": {"name": name, "namespace": "default"}, "spec": spec})
}

pub fn static_spec(port: u16) -> Value {
    json!({"ports": [{"port": port}], "backends": {"static": [{"address": "198.51.100.11"}]}})
}

/// `static_spec(80)` with a second backend, 198.51.100.12.
pub fn two_backends_spec() -> Value {
    json!({"ports": [{"port": 80}], "backends": {"static": [
        {"address": "198.51.100.11"}, {"address": "198.51.100.12"}]}})
}

/// Deletes the object `body` names (a kind [`apply`] handles).
pub async fn delete(client: &Client, body: &Value) {
    use kube::api::DeleteParams;
    let name = body["metadata"]["name"].as_str().unwrap();
    let ns = body["metadata"]["namespace"].as_str().unwrap_or("default");
    let c = client.clone();
    let dp = DeleteParams::default();
    match body["kind"].as_str().unwrap() {
        "VirtualServer" => {
            Api::<VirtualServer>::namespaced(c, ns)
                .delete(name, &dp)
                .await
                .unwrap();
        }
        "AddressPool" => {
            Api::<AddressPool>::all(c).delete(name, &dp).await.unwrap();
        }
        "Service" => {
            Api::<Service>::namespaced(c, ns)
                .delete(name, &dp)
                .await
                .unwrap();
        }
        other => panic!("unexpected kind {other}"),
    }
}

//! The benchmark's cluster objects, written through the fake API server
//! with the real `kube::Client`: one Ready node, an address pool, `objects`
//! VirtualServers. All but one have four static backends; the one named
//! [`EDITED`] takes its backends from Service `web`'s EndpointSlice, which
//! the latency phase edits one endpoint at a time.

use std::net::Ipv4Addr;

use ballast_api::{AddressPool, VirtualServer};
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, CustomResourceExt};
use serde_json::{Value, json};

pub const NODE: &str = "bench-node";
pub const NAMESPACE: &str = "default";
/// The serviceRef-backed VirtualServer whose endpoints change.
pub const EDITED: &str = "edited";
pub const SLICE: &str = "web-1";
pub const VIP_PORT: u16 = 80;
pub const BACKEND_PORT: u16 = 8080;
pub const BACKENDS: usize = 4;
/// Requests in flight while the world is created.
const CONCURRENT: usize = 32;

/// Static backend `b` of object `i`: every object has addresses of its own
/// (40k distinct for 10k objects), as pods of distinct workloads would.
pub fn static_backend(i: usize, b: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, (i >> 8) as u8, (i & 0xff) as u8, b as u8 + 1)
}

/// The endpoints of Service `web` after change `k` (k = 0: the initial
/// set): change k replaces endpoint `k % 4` with an address never used
/// before, so every change is one endpoint out and one in.
pub fn endpoints_after(k: usize) -> [Ipv4Addr; BACKENDS] {
    let mut eps: [Ipv4Addr; BACKENDS] =
        std::array::from_fn(|b| Ipv4Addr::new(172, 16, 0, b as u8 + 1));
    for j in 1..=k {
        eps[j % BACKENDS] = Ipv4Addr::new(172, 17, (j >> 8) as u8, (j & 0xff) as u8);
    }
    eps
}

pub fn endpoint_slice(eps: &[Ipv4Addr]) -> Value {
    let endpoints: Vec<Value> = eps
        .iter()
        .map(|a| json!({"addresses": [a.to_string()], "conditions": {"ready": true}}))
        .collect();
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": SLICE, "namespace": NAMESPACE,
                     "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": BACKEND_PORT, "protocol": "TCP"}],
        "endpoints": endpoints})
}

/// Server-side applies Service `web`'s EndpointSlice; returns the
/// resourceVersion the API server gave the write.
pub async fn apply_slice(client: &Client, eps: &[Ipv4Addr]) -> String {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), NAMESPACE);
    let written = api
        .patch(
            SLICE,
            &PatchParams::apply("bench").force(),
            &Patch::Apply(endpoint_slice(eps)),
        )
        .await
        .expect("applying the EndpointSlice");
    written
        .metadata
        .resource_version
        .expect("a written object has a resourceVersion")
}

fn virtual_server(name: &str, backends: Value) -> VirtualServer {
    serde_json::from_value(
        json!({"apiVersion": "ballast.dev/v1alpha1", "kind": "VirtualServer",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"ports": [{"port": VIP_PORT, "targetPort": BACKEND_PORT}], "backends": backends}}),
    )
    .expect("valid VirtualServer")
}

/// The name of static object `i`.
pub fn static_name(i: usize) -> String {
    format!("vs-{i:05}")
}

/// Creates the world: `objects` VirtualServers in all (one of them
/// [`EDITED`]), before any controller runs.
pub async fn create(server: &ballast_fake_apiserver::FakeApiServer, objects: usize) {
    server.install_crd(&VirtualServer::crd());
    server.install_crd(&AddressPool::crd());
    let client = server.client();
    let pp = PostParams::default();
    let node: Node = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}}),
    )
    .unwrap();
    let nodes: Api<Node> = Api::all(client.clone());
    nodes.create(&pp, &node).await.expect("creating the Node");
    nodes
        .patch_status(
            NODE,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}})),
        )
        .await
        .expect("the Node Ready");
    // A /18: room for 16k VIPs, as the controller's scale fixtures use.
    let pool: AddressPool = serde_json::from_value(json!({"apiVersion": "ballast.dev/v1alpha1",
        "kind": "AddressPool", "metadata": {"name": "bench"},
        "spec": {"addresses": ["198.18.0.0/18"]}}))
    .unwrap();
    Api::<AddressPool>::all(client.clone())
        .create(&pp, &pool)
        .await
        .expect("creating the pool");
    let web: Service = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": NAMESPACE},
        "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": BACKEND_PORT}]}}))
    .unwrap();
    Api::<Service>::namespaced(client.clone(), NAMESPACE)
        .create(&pp, &web)
        .await
        .expect("creating Service web");
    apply_slice(&client, &endpoints_after(0)).await;

    let vss: Api<VirtualServer> = Api::namespaced(client.clone(), NAMESPACE);
    vss.create(
        &pp,
        &virtual_server(
            EDITED,
            json!({"serviceRef": {"name": "web", "port": "http"}}),
        ),
    )
    .await
    .expect("creating the edited VirtualServer");
    let mut next = 0..objects - 1;
    let mut running = tokio::task::JoinSet::new();
    loop {
        while running.len() < CONCURRENT
            && let Some(i) = next.next()
        {
            let statics: Vec<Value> = (0..BACKENDS)
                .map(|b| json!({"address": static_backend(i, b).to_string()}))
                .collect();
            let vs = virtual_server(&static_name(i), json!({"static": statics}));
            let vss = vss.clone();
            running.spawn(async move { vss.create(&PostParams::default(), &vs).await });
        }
        match running.join_next().await {
            Some(done) => {
                done.expect("create task")
                    .expect("creating a VirtualServer");
            }
            None => break,
        }
    }
}

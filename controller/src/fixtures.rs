//! Builders for the objects the planner reads, shared by the unit tests,
//! the integration tests and the planning benchmark. Not part of the API.

use std::sync::Arc;

use ballast_api::{AddressPool, VirtualServer};
use k8s_openapi::api::core::v1::{Namespace, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{Value, json};

use crate::plan::Observed;

/// A VirtualServer from a `spec` JSON value, created at `created` (seconds
/// after an epoch; older objects win clashes).
pub fn virtual_server(
    namespace: &str,
    name: &str,
    created: u32,
    spec: Value,
) -> Arc<VirtualServer> {
    Arc::new(
        serde_json::from_value(json!({
            "apiVersion": "ballast.dev/v1alpha1",
            "kind": "VirtualServer",
            "metadata": {
                "name": name, "namespace": namespace, "generation": 1,
                "creationTimestamp": timestamp(created),
            },
            "spec": spec,
        }))
        .expect("valid VirtualServer JSON"),
    )
}

/// A Service of type LoadBalancer and class `ballast.dev/xdp` unless `spec`
/// overrides them; `annotations` may be `json!({})`.
pub fn service(
    namespace: &str,
    name: &str,
    created: u32,
    annotations: Value,
    spec: Value,
) -> Arc<Service> {
    let mut full = json!({"type": "LoadBalancer", "loadBalancerClass": "ballast.dev/xdp"});
    merge(&mut full, spec);
    Arc::new(
        serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": name, "namespace": namespace,
                "creationTimestamp": timestamp(created),
                "annotations": annotations,
            },
            "spec": full,
        }))
        .expect("valid Service JSON"),
    )
}

/// An EndpointSlice of `service` with one port and endpoints given as
/// (address, node, ready, terminating).
pub fn endpoint_slice(
    namespace: &str,
    name: &str,
    service: &str,
    port: (&str, u16),
    endpoints: &[(&str, &str, bool, bool)],
) -> Arc<EndpointSlice> {
    let eps: Vec<Value> = endpoints
        .iter()
        .map(|(addr, node, ready, terminating)| {
            json!({
                "addresses": [addr],
                "nodeName": node,
                "conditions": {"ready": ready, "serving": *ready || *terminating, "terminating": terminating},
            })
        })
        .collect();
    let family = if endpoints.first().is_some_and(|e| e.0.contains(':')) {
        "IPv6"
    } else {
        "IPv4"
    };
    Arc::new(
        serde_json::from_value(json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": name, "namespace": namespace,
                "labels": {"kubernetes.io/service-name": service},
            },
            "addressType": family,
            "ports": [{"name": port.0, "port": port.1, "protocol": "TCP"}],
            "endpoints": eps,
        }))
        .expect("valid EndpointSlice JSON"),
    )
}

pub fn node(name: &str, ready: bool, labels: Value) -> Arc<Node> {
    Arc::new(
        serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": labels},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        }))
        .expect("valid Node JSON"),
    )
}

pub fn pool(name: &str, spec: Value) -> Arc<AddressPool> {
    Arc::new(
        serde_json::from_value(json!({
            "apiVersion": "ballast.dev/v1alpha1",
            "kind": "AddressPool",
            "metadata": {"name": name},
            "spec": spec,
        }))
        .expect("valid AddressPool JSON"),
    )
}

pub fn namespace(name: &str, labels: Value) -> Arc<Namespace> {
    Arc::new(
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": labels},
        }))
        .expect("valid Namespace JSON"),
    )
}

/// The scale world of the benchmarks: `objects` VirtualServers in namespace
/// `bench`, each with a serviceRef to its own Service `app-<i>` whose
/// EndpointSlice `app-<i>-1` has `endpoints` ready endpoints spread over
/// `nodes` Ready nodes; addresses from one pool.
pub fn scale_world(objects: u32, endpoints: u32, nodes: u32) -> Observed {
    let mut w = Observed {
        pools: vec![pool("bench", json!({"addresses": ["198.18.0.0/18"]}))],
        ..Observed::default()
    };
    for n in 0..nodes {
        w.nodes.push(node(&format!("node-{n}"), true, json!({})));
    }
    for i in 0..objects {
        let name = format!("app-{i}");
        w.services.push(service(
            "bench",
            &name,
            i,
            json!({}),
            json!({"type": "ClusterIP", "loadBalancerClass": null, "ports": [{"name": "http", "port": 80}]}),
        ));
        let eps: Vec<(String, String)> = (0..endpoints)
            .map(|e| (scale_endpoint(i, e), format!("node-{}", e % nodes)))
            .collect();
        let eps: Vec<(&str, &str, bool, bool)> = eps
            .iter()
            .map(|(a, n)| (a.as_str(), n.as_str(), true, false))
            .collect();
        w.endpoint_slices.push(endpoint_slice(
            "bench",
            &format!("{name}-1"),
            &name,
            ("http", 8080),
            &eps,
        ));
        w.virtual_servers.push(virtual_server(
            "bench",
            &name,
            i,
            json!({"ports": [{"port": 443}], "backends": {"serviceRef": {"name": name, "port": "http"}}}),
        ));
    }
    w
}

/// Address of endpoint `e` of object `i` in [`scale_world`].
pub fn scale_endpoint(i: u32, e: u32) -> String {
    format!("10.{}.{}.{}", i / 256, i % 256, e + 1)
}

/// Object `i`'s EndpointSlice in [`scale_world`] after one change: its
/// first endpoint `ready` or not, and a single other ready endpoint.
pub fn scale_endpoint_change(i: u32, ready: bool) -> Arc<EndpointSlice> {
    let name = format!("app-{i}");
    let first = scale_endpoint(i, 0);
    endpoint_slice(
        "bench",
        &format!("{name}-1"),
        &name,
        ("http", 8080),
        &[
            (&first, "node-0", ready, false),
            ("10.255.255.1", "node-1", true, false),
        ],
    )
}

/// RFC 3339 time `seconds` after 2025-01-01T00:00:00Z.
pub fn timestamp(seconds: u32) -> String {
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    let (d, h) = (1 + h / 24, h % 24);
    format!("2025-01-{d:02}T{h:02}:{m:02}:{s:02}Z")
}

fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p,
    }
}

/// One object's service plan: `vip`:80/TCP, FullNAT, to every backend at
/// :8080 with weight 1, no other options.
pub fn tcp80_service_plan(
    vip: std::net::IpAddr,
    backends: impl IntoIterator<Item = std::net::IpAddr>,
) -> crate::plan::ServicePlan {
    use crate::plan::{BackendPlan, PortPlan, ServicePlan};
    ServicePlan {
        vips: vec![vip],
        ports: vec![PortPlan {
            port: 80,
            protocol: ballast_api::Protocol::Tcp,
            backends: backends
                .into_iter()
                .map(|address| BackendPlan {
                    address,
                    port: 8080,
                    weight: 1,
                })
                .collect(),
        }],
        forwarding: ballast_api::Forwarding::FullNat,
        toa: false,
        persistence_timeout_s: 0,
        source_ranges: vec![],
        health_check: None,
    }
}

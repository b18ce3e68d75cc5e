//! Ballast controller: watches VirtualServers, AddressPools, Services,
//! EndpointSlices, Nodes and Namespaces, and computes per-node plans and
//! object statuses. The planning core ([`plan`]) and the wire form of its
//! per-node plans ([`link`]: encoding, deltas, versions) are pure; the
//! Kubernetes side lives in [`k8s`].

pub mod crdgen;
pub mod endpoints;
#[doc(hidden)]
pub mod fixtures;
pub mod frontend;
pub mod http;
pub mod ipam;
pub mod k8s;
pub mod link;
pub mod metrics;
pub mod object_key;
pub mod plan;
pub mod selector;

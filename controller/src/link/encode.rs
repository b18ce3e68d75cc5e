//! A node's plan as the wire carries it: [`NodePlan`] -> `ballast.v1.NodeState`,
//! in the canonical order `ballast_proto::state` defines (services by object,
//! announcements by address; empty sub-messages absent), so that the content
//! hash the agent computes over what it applied matches ours.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ballast_api::{Forwarding, HealthCheckSpec, Probe, Protocol};
use ballast_proto::v1;
use ipnet::IpNet;

use crate::object_key::{Kind, ObjectKey};
use crate::plan::{BackendPlan, NodePlan, PortPlan, ServicePlan};

/// The whole state of a node at `version`. The controller has no per-node
/// settings yet, so `settings` is absent (the agent's defaults: SNAT from the
/// node's InternalIP and its configured port range).
pub fn node_state(version: u64, plan: &NodePlan) -> v1::NodeState {
    v1::NodeState {
        version,
        settings: None,
        // BTreeMap order is ObjectKey order, which is the canonical order.
        services: plan
            .services
            .iter()
            .map(|(key, sp)| service(key, sp))
            .collect(),
        announcements: announcements(&plan.l2_announce, &plan.bgp_announce),
    }
}

/// Absent when the node announces nothing (the canonical form of "none").
pub fn announcements(l2: &BTreeSet<IpAddr>, bgp: &BTreeSet<IpAddr>) -> Option<v1::Announcements> {
    if l2.is_empty() && bgp.is_empty() {
        return None;
    }
    // `IpAddr`'s order (IPv4 first, then numeric) is the canonical order.
    Some(v1::Announcements {
        l2: l2.iter().map(|ip| ip_bytes(*ip)).collect(),
        bgp: bgp.iter().map(|ip| ip_bytes(*ip)).collect(),
    })
}

pub fn object_ref(key: &ObjectKey) -> v1::ObjectRef {
    v1::ObjectRef {
        kind: match key.kind {
            Kind::VirtualServer => v1::ObjectKind::VirtualServer,
            Kind::Service => v1::ObjectKind::Service,
        } as i32,
        namespace: key.namespace.to_string(),
        name: key.name.to_string(),
    }
}

/// One object's service on the node.
pub fn service(key: &ObjectKey, sp: &ServicePlan) -> v1::Service {
    v1::Service {
        object: Some(object_ref(key)),
        vips: sp.vips.iter().map(|ip| ip_bytes(*ip)).collect(),
        ports: sp.ports.iter().map(port).collect(),
        forwarding: forwarding(sp.forwarding) as i32,
        toa: sp.toa,
        persistence_timeout_s: sp.persistence_timeout_s,
        source_ranges: sp.source_ranges.iter().map(prefix).collect(),
        health_check: sp.health_check.as_ref().map(health_check),
    }
}

/// Network-order bytes: 4 for IPv4, 16 for IPv6.
pub fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn port(p: &PortPlan) -> v1::Port {
    v1::Port {
        port: u32::from(p.port),
        protocol: match p.protocol {
            Protocol::Tcp => v1::Protocol::Tcp,
            Protocol::Udp => v1::Protocol::Udp,
        } as i32,
        backends: p.backends.iter().map(backend).collect(),
    }
}

fn backend(b: &BackendPlan) -> v1::Backend {
    v1::Backend {
        address: ip_bytes(b.address),
        port: u32::from(b.port),
        weight: b.weight,
    }
}

fn forwarding(f: Forwarding) -> v1::Forwarding {
    match f {
        Forwarding::FullNat => v1::Forwarding::FullNat,
        Forwarding::Dr => v1::Forwarding::Dr,
        Forwarding::Nat => v1::Forwarding::Nat,
    }
}

/// Source ranges are validated with host bits zero (VirtualServers) or
/// truncated (Services), so the address is the network address.
fn prefix(n: &IpNet) -> v1::IpPrefix {
    v1::IpPrefix {
        address: ip_bytes(n.addr()),
        prefix_len: u32::from(n.prefix_len()),
    }
}

fn health_check(hc: &HealthCheckSpec) -> v1::HealthCheck {
    v1::HealthCheck {
        probe: Some(match &hc.probe {
            Probe::Tcp => v1::health_check::Probe::Tcp(v1::TcpProbe {}),
            Probe::Http {
                path,
                expect_status,
            } => v1::health_check::Probe::Http(v1::HttpProbe {
                path: path.clone(),
                expect_status: u32::from(*expect_status),
            }),
            Probe::Udp { payload, expect } => v1::health_check::Probe::Udp(v1::UdpProbe {
                payload: payload.clone(),
                expect: expect.clone().unwrap_or_default(),
            }),
        }),
        interval_ms: millis(hc.interval),
        timeout_ms: millis(hc.timeout),
        healthy_threshold: hc.healthy_threshold,
        unhealthy_threshold: hc.unhealthy_threshold,
    }
}

/// Validation bounds intervals and timeouts to an hour, far below
/// `u32::MAX` milliseconds (49 days); saturating only guards the type.
fn millis(d: std::time::Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests;

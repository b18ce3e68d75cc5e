//! Stage C of planning: one frontend with its addresses → the service plan
//! each of its director nodes runs, and its status (minus announcement,
//! which needs every frontend on a VIP).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;

use super::model::{BackendPlan, Cond, CondStatus, PortPlan, ServicePlan};
use super::nodes::{NodeInfo, selected};
use crate::endpoints::{Endpoint, EndpointIndex, service_port_name};
use crate::frontend::{BackendPort, BackendSource, Frontend};
use crate::ipam::{AddressProblem, Allocation};
use crate::selector::map_matches;

/// What one frontend contributes: its addresses, the service plan each of
/// its director nodes runs, and its status.
#[derive(Clone, Debug, PartialEq)]
pub struct FrontendPlan {
    pub addresses: Vec<IpAddr>,
    /// Director node → its service plan (one shared `Arc` unless
    /// externalTrafficPolicy Local makes them differ).
    pub per_node: BTreeMap<Arc<str>, Arc<ServicePlan>>,
    /// Nodes the object selects that have no agent present, and why.
    pub absent: Vec<(Arc<str>, String)>,
    pub accepted: Cond,
    pub ready: Cond,
    pub backends: Option<(usize, usize)>,
}

/// namespace → name → Service; nested so lookups need no owned key.
pub type ServiceIndex = HashMap<String, HashMap<String, Arc<Service>>>;

pub struct Context<'a> {
    pub endpoints: &'a EndpointIndex,
    pub services: &'a ServiceIndex,
    /// Director candidates: usable nodes with a present agent.
    pub nodes: &'a [NodeInfo],
    /// Usable nodes without one, and why.
    pub absent: &'a [(NodeInfo, Arc<str>)],
}

/// Problems the user must fix in the object (vs. capacity problems).
fn is_spec_problem(p: &AddressProblem) -> bool {
    !matches!(
        p,
        AddressProblem::Exhausted { .. } | AddressProblem::NoPool { .. }
    )
}

fn join(problems: &[&AddressProblem]) -> String {
    problems
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// An endpoint with the weight it gets: the static list's weight, or 1 for
/// a ready EndpointSlice endpoint and 0 (drain) for the rest.
struct Weighted<'a> {
    endpoint: Endpoint<'a>,
    weight: u32,
}

pub fn resolve(f: &Frontend, alloc: &Allocation, ctx: &Context<'_>) -> FrontendPlan {
    let spec_problems: Vec<&AddressProblem> = alloc
        .problems
        .iter()
        .filter(|p| is_spec_problem(p))
        .collect();
    let capacity_problems: Vec<&AddressProblem> = alloc
        .problems
        .iter()
        .filter(|p| !is_spec_problem(p))
        .collect();

    let mut out = FrontendPlan {
        addresses: alloc.addresses.clone(),
        per_node: BTreeMap::new(),
        absent: Vec::new(),
        accepted: Cond::new(CondStatus::True, "Accepted", "spec is valid"),
        ready: Cond::new(CondStatus::False, "Pending", ""),
        backends: None,
    };
    if let Some(first) = spec_problems.first() {
        out.accepted = Cond::new(CondStatus::False, first.reason(), join(&spec_problems));
        out.ready = Cond::new(
            CondStatus::False,
            "NotAccepted",
            "the object is not accepted; see the Accepted condition",
        );
        return out;
    }

    // Backends per port, with their weights.
    let mut ports: Vec<(usize, Vec<Weighted<'_>>)> = Vec::with_capacity(f.ports.len());
    match &f.backends {
        BackendSource::Static(list) => {
            for (i, p) in f.ports.iter().enumerate() {
                let BackendPort::Fixed(port) = p.backend_port else {
                    unreachable!("static backends always have a fixed port")
                };
                ports.push((
                    i,
                    list.iter()
                        .map(|b| Weighted {
                            endpoint: Endpoint {
                                address: b.address,
                                port,
                                ready: b.weight > 0,
                                node: None,
                            },
                            weight: b.weight,
                        })
                        .collect(),
                ));
            }
        }
        BackendSource::Service { name, port } => {
            let ns = &f.key.namespace;
            // A VirtualServer's serviceRef names a Service port; a Service
            // frontend's ports name their endpoint ports directly.
            let ref_port_name = match port {
                None => None,
                Some(port) => {
                    let svc = ctx
                        .services
                        .get(ns.as_ref())
                        .and_then(|m| m.get(name.as_str()));
                    match service_port_name(svc.map(|s| s.as_ref()), name, port) {
                        Ok(n) => Some(n),
                        Err(e) => {
                            let reason = match e {
                                crate::endpoints::ServiceRefError::ServiceNotFound(_) => {
                                    "ServiceNotFound"
                                }
                                crate::endpoints::ServiceRefError::PortNotFound { .. } => {
                                    "ServicePortNotFound"
                                }
                            };
                            out.ready = Cond::new(CondStatus::False, reason, e.to_string());
                            out.backends = Some((0, 0));
                            return out;
                        }
                    }
                }
            };
            for (i, p) in f.ports.iter().enumerate() {
                let (port_name, fixed) = match &p.backend_port {
                    BackendPort::Fixed(n) => {
                        (ref_port_name.as_deref().unwrap_or_default(), Some(*n))
                    }
                    BackendPort::Endpoint(n) => (ref_port_name.as_deref().unwrap_or(n), None),
                };
                let eps = ctx
                    .endpoints
                    .endpoints(ns, name, port_name, p.protocol, fixed);
                ports.push((
                    i,
                    eps.into_iter()
                        .map(|e| Weighted {
                            weight: u32::from(e.ready),
                            endpoint: e,
                        })
                        .collect(),
                ));
            }
        }
    }

    // Distinct backend addresses over all ports; ready if ready on any.
    let mut addrs: Vec<(IpAddr, bool)> = ports
        .iter()
        .flat_map(|(_, eps)| eps.iter().map(|w| (w.endpoint.address, !w.endpoint.ready)))
        .collect();
    addrs.sort_unstable();
    addrs.dedup_by_key(|(a, _)| *a);
    let total = addrs.len();
    let ready = addrs.iter().filter(|(_, not_ready)| !not_ready).count();
    out.backends = Some((ready, total));

    if let Some(first) = capacity_problems.first() {
        out.ready = Cond::new(CondStatus::False, first.reason(), join(&capacity_problems));
        return out;
    }

    let candidates: Vec<&NodeInfo> = selected(ctx.nodes, &f.node_selector).collect();
    out.absent = ctx
        .absent
        .iter()
        .filter(|(n, _)| map_matches(&f.node_selector, &n.labels))
        .map(|(n, why)| (n.name.clone(), why.to_string()))
        .collect();
    let plan_for = |keep: &dyn Fn(&Endpoint<'_>) -> bool| -> ServicePlan {
        ServicePlan {
            vips: out.addresses.clone(),
            ports: ports
                .iter()
                .map(|(i, eps)| PortPlan {
                    port: f.ports[*i].port,
                    protocol: f.ports[*i].protocol,
                    backends: eps
                        .iter()
                        .filter(|w| keep(&w.endpoint))
                        .map(|w| BackendPlan {
                            address: w.endpoint.address,
                            port: w.endpoint.port,
                            weight: w.weight,
                        })
                        .collect(),
                })
                .collect(),
            forwarding: f.forwarding,
            toa: f.toa,
            persistence_timeout_s: f.persistence_timeout_s,
            source_ranges: f.source_ranges.clone(),
            health_check: f.health_check.clone(),
        }
    };

    if f.local_only {
        for n in candidates {
            let local = |e: &Endpoint<'_>| e.node == Some(&*n.name);
            let has_ready = ports
                .iter()
                .any(|(_, eps)| eps.iter().any(|w| w.endpoint.ready && local(&w.endpoint)));
            if has_ready {
                out.per_node
                    .insert(n.name.clone(), Arc::new(plan_for(&local)));
            }
        }
    } else if !candidates.is_empty() {
        let shared = Arc::new(plan_for(&|_| true));
        out.per_node = candidates
            .into_iter()
            .map(|n| (n.name.clone(), shared.clone()))
            .collect();
    }

    let ports_without_ready: Vec<String> = ports
        .iter()
        .filter(|(_, eps)| !eps.iter().any(|w| w.endpoint.ready))
        .map(|(i, _)| format!("{}/{}", f.ports[*i].port, f.ports[*i].protocol))
        .collect();
    out.ready = if out.per_node.is_empty() && !out.absent.is_empty() {
        let nodes: Vec<String> = out
            .absent
            .iter()
            .map(|(node, why)| format!("{node}: {why}"))
            .collect();
        Cond::new(
            CondStatus::False,
            "NoAgent",
            format!(
                "no director node has a Ballast agent connected ({})",
                nodes.join("; ")
            ),
        )
    } else if out.per_node.is_empty() {
        let why = if f.local_only {
            "externalTrafficPolicy Local: no usable node has a ready local endpoint"
        } else if f.node_selector.is_empty() {
            "no node is Ready and eligible (not labelled exclude-from-external-load-balancers)"
        } else {
            "no Ready node matches spec.nodeSelector"
        };
        Cond::new(CondStatus::False, "NoDirectorNodes", why)
    } else if !ports_without_ready.is_empty() {
        Cond::new(
            CondStatus::False,
            "NoReadyBackends",
            format!(
                "no ready backend for port {}",
                ports_without_ready.join(", ")
            ),
        )
    } else {
        Cond::new(
            CondStatus::True,
            "Ready",
            format!(
                "{} address(es), {} director node(s), {}/{} backends ready",
                out.addresses.len(),
                out.per_node.len(),
                ready,
                total
            ),
        )
    };
    out
}

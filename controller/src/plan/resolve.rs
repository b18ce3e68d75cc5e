//! Stage C of planning: one frontend with its addresses → the service plan
//! each of its director nodes runs, and its status (minus announcement,
//! which needs every frontend on a VIP).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;

use super::model::{BackendPlan, Cond, CondStatus, PortPlan, ServicePlan};
use super::nodes::{NodeInfo, selected};
use crate::endpoints::{Endpoint, EndpointIndex, service_port_name};
use crate::frontend::{BackendPort, BackendSource, Frontend};
use crate::ipam::{AddressProblem, Allocation};

/// What one frontend contributes.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolved {
    pub addresses: Vec<IpAddr>,
    /// Director node → its service plan (one shared `Arc` unless
    /// externalTrafficPolicy Local makes them differ).
    pub per_node: BTreeMap<Arc<str>, Arc<ServicePlan>>,
    pub accepted: Cond,
    pub ready: Cond,
    pub backends: Option<(usize, usize)>,
}

/// namespace → name → Service; nested so lookups need no owned key.
pub type ServiceIndex = HashMap<String, HashMap<String, Arc<Service>>>;

pub struct Context<'a> {
    pub endpoints: &'a EndpointIndex,
    pub services: &'a ServiceIndex,
    pub nodes: &'a [NodeInfo],
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

pub fn resolve(f: &Frontend, alloc: &Allocation, ctx: &Context<'_>) -> Resolved {
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

    let mut out = Resolved {
        addresses: alloc.addresses.clone(),
        per_node: BTreeMap::new(),
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

    // Backends per port.
    let mut ports: Vec<(usize, Vec<Endpoint>)> = Vec::with_capacity(f.ports.len());
    match &f.backends {
        BackendSource::Static(list) => {
            for (i, p) in f.ports.iter().enumerate() {
                let BackendPort::Fixed(port) = p.backend_port else {
                    unreachable!("static backends always have a fixed port")
                };
                ports.push((
                    i,
                    list.iter()
                        .map(|b| Endpoint {
                            address: b.address,
                            port,
                            ready: b.weight > 0,
                            node: None,
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
                    BackendPort::Fixed(n) => (ref_port_name.clone().unwrap_or_default(), Some(*n)),
                    BackendPort::Endpoint(n) => (ref_port_name.clone().unwrap_or(n.clone()), None),
                };
                ports.push((
                    i,
                    ctx.endpoints
                        .endpoints(ns, name, &port_name, p.protocol, fixed),
                ));
            }
        }
    }

    let mut all: BTreeSet<IpAddr> = BTreeSet::new();
    let mut ready: BTreeSet<IpAddr> = BTreeSet::new();
    for (_, eps) in &ports {
        for e in eps {
            all.insert(e.address);
            if e.ready {
                ready.insert(e.address);
            }
        }
    }
    out.backends = Some((ready.len(), all.len()));

    if let Some(first) = capacity_problems.first() {
        out.ready = Cond::new(CondStatus::False, first.reason(), join(&capacity_problems));
        return out;
    }

    let candidates: Vec<&NodeInfo> = selected(ctx.nodes, &f.node_selector).collect();
    let weights = |eps: &[Endpoint], static_weights: bool| -> Vec<BackendPlan> {
        eps.iter()
            .map(|e| BackendPlan {
                address: e.address,
                port: e.port,
                weight: if static_weights {
                    match &f.backends {
                        BackendSource::Static(list) => list
                            .iter()
                            .find(|b| b.address == e.address)
                            .map_or(0, |b| b.weight),
                        BackendSource::Service { .. } => u32::from(e.ready),
                    }
                } else {
                    u32::from(e.ready)
                },
            })
            .collect()
    };
    let is_static = matches!(f.backends, BackendSource::Static(_));
    let plan_for = |filter: &dyn Fn(&Endpoint) -> bool| -> ServicePlan {
        ServicePlan {
            vips: out.addresses.clone(),
            ports: ports
                .iter()
                .map(|(i, eps)| {
                    let kept: Vec<Endpoint> = eps.iter().filter(|e| filter(e)).cloned().collect();
                    PortPlan {
                        port: f.ports[*i].port,
                        protocol: f.ports[*i].protocol,
                        backends: weights(&kept, is_static),
                    }
                })
                .collect(),
            forwarding: f.forwarding,
            toa: f.toa,
            persistence_timeout_s: f.persistence_timeout_s,
            source_ranges: f.source_ranges.clone(),
        }
    };

    if f.local_only {
        for n in candidates {
            let local = |e: &Endpoint| e.node.as_deref() == Some(&*n.name);
            let has_ready = ports
                .iter()
                .any(|(_, eps)| eps.iter().any(|e| e.ready && local(e)));
            if has_ready {
                out.per_node
                    .insert(n.name.clone(), Arc::new(plan_for(&local)));
            }
        }
    } else if !candidates.is_empty() {
        let shared = Arc::new(plan_for(&|_| true));
        for n in candidates {
            out.per_node.insert(n.name.clone(), shared.clone());
        }
    }

    let ports_without_ready: Vec<String> = ports
        .iter()
        .filter(|(_, eps)| !eps.iter().any(|e| e.ready))
        .map(|(i, _)| format!("{}/{}", f.ports[*i].port, f.ports[*i].protocol))
        .collect();
    out.ready = if out.per_node.is_empty() {
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
                ready.len(),
                all.len()
            ),
        )
    };
    out
}

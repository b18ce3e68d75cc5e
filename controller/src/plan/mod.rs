//! Planning: observed cluster state → per-node plans and per-object status.
//!
//! [`plan`] is the whole thing as one pure function. [`Planner`] is the same
//! computation kept in stages so that an endpoint change recomputes only the
//! objects it touches; a test checks both always agree.
//!
//! Stages: (A) read each object into a [`Frontend`] or an invalid-object
//! status; (B) allocate addresses (global: objects share pools); (C) resolve
//! each frontend's backends and director nodes; (D) assemble node plans and
//! pick the L2 owner of each VIP (global per VIP: objects may share one).

mod announce;
mod model;
mod nodes;
mod resolve;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use ballast_api::{AddressPool, VirtualServer};
use k8s_openapi::api::core::v1::{Namespace, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

pub use announce::l2_owner;
pub use model::{
    BackendPlan, Cond, CondStatus, DirectorStatus, NodePlan, ObjectStatus, Plan, PoolStatus,
    PortPlan, ServicePlan,
};
pub use nodes::{EXCLUDE_LABEL, NodeInfo, usable_nodes};

use crate::endpoints::EndpointIndex;
use crate::frontend::{self, BackendSource, Frontend, Source};
use crate::ipam::{Pool, allocate};
use crate::object_key::ObjectKey;
use crate::selector::Labels;
use resolve::{Context, Resolved, ServiceIndex, resolve};

/// Everything the planner looks at (reflector store contents).
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub virtual_servers: Vec<Arc<VirtualServer>>,
    pub services: Vec<Arc<Service>>,
    pub endpoint_slices: Vec<Arc<EndpointSlice>>,
    pub nodes: Vec<Arc<Node>>,
    pub pools: Vec<Arc<AddressPool>>,
    pub namespaces: Vec<Arc<Namespace>>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlanOptions {
    /// Also serve LoadBalancer Services that name no loadBalancerClass.
    pub default_class: bool,
}

/// The pure planning function.
pub fn plan(observed: &Observed, options: PlanOptions) -> Plan {
    Planner::new(observed, options).into_plan()
}

/// Planning state kept between runs for incremental endpoint updates.
pub struct Planner {
    frontends: BTreeMap<ObjectKey, Frontend>,
    resolved: BTreeMap<ObjectKey, Resolved>,
    /// Stage B's result per frontend, reused when only endpoints change.
    allocations: BTreeMap<ObjectKey, crate::ipam::Allocation>,
    invalid: BTreeMap<ObjectKey, ObjectStatus>,
    endpoints: EndpointIndex,
    services: ServiceIndex,
    nodes: Vec<NodeInfo>,
    /// (namespace, service) → frontends whose backends come from it.
    dependents: HashMap<(String, String), BTreeSet<ObjectKey>>,
    pools: BTreeMap<String, PoolStatus>,
    plan: Plan,
}

impl Planner {
    pub fn new(observed: &Observed, options: PlanOptions) -> Planner {
        // Stage A.
        let mut frontends = BTreeMap::new();
        let mut invalid = BTreeMap::new();
        let mut reserved = Vec::new();
        let sources = observed
            .virtual_servers
            .iter()
            .map(|vs| frontend::from_virtual_server(vs))
            .chain(
                observed
                    .services
                    .iter()
                    .map(|s| frontend::from_service(s, options.default_class)),
            );
        for source in sources {
            match source {
                Source::Frontend(f) => {
                    frontends.insert(f.key.clone(), *f);
                }
                Source::Invalid {
                    key,
                    generation,
                    errors,
                    previous,
                } => {
                    invalid.insert(key.clone(), invalid_status(generation, &errors, &previous));
                    if !previous.is_empty() {
                        reserved.push((key, previous));
                    }
                }
                Source::NotOurs => {}
            }
        }

        // Stage B.
        let mut pools: Vec<Pool> = observed.pools.iter().map(|p| Pool::parse(p)).collect();
        pools.sort_by(|a, b| a.name.cmp(&b.name));
        let namespaces: BTreeMap<String, Labels> = observed
            .namespaces
            .iter()
            .map(|n| {
                (
                    n.metadata.name.clone().unwrap_or_default(),
                    n.metadata.labels.clone().unwrap_or_default(),
                )
            })
            .collect();
        let list: Vec<&Frontend> = frontends.values().collect();
        let allocations = allocate(&list, &reserved, &pools, &namespaces);
        let pool_status = pools
            .iter()
            .map(|p| {
                let (allocated, total) = allocations.usage[&p.name];
                (
                    p.name.clone(),
                    PoolStatus {
                        allocated,
                        total,
                        errors: p.errors.clone(),
                    },
                )
            })
            .collect();

        // Stage C.
        let endpoints = EndpointIndex::build(&observed.endpoint_slices);
        let mut services = ServiceIndex::new();
        for s in &observed.services {
            services
                .entry(s.metadata.namespace.clone().unwrap_or_default())
                .or_default()
                .insert(s.metadata.name.clone().unwrap_or_default(), s.clone());
        }
        let nodes = usable_nodes(&observed.nodes);
        let mut dependents: HashMap<(String, String), BTreeSet<ObjectKey>> = HashMap::new();
        for f in frontends.values() {
            if let BackendSource::Service { name, .. } = &f.backends {
                dependents
                    .entry((f.key.namespace.to_string(), name.clone()))
                    .or_default()
                    .insert(f.key.clone());
            }
        }
        let ctx = Context {
            endpoints: &endpoints,
            services: &services,
            nodes: &nodes,
        };
        let resolved = frontends
            .iter()
            .zip(&allocations.per_frontend)
            .map(|((key, f), alloc)| (key.clone(), resolve(f, alloc, &ctx)))
            .collect();
        let allocations = frontends
            .keys()
            .cloned()
            .zip(allocations.per_frontend)
            .collect();

        let mut planner = Planner {
            frontends,
            resolved,
            allocations,
            invalid,
            endpoints,
            services,
            nodes,
            dependents,
            pools: pool_status,
            plan: Plan::default(),
        };
        planner.assemble();
        planner
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    pub fn into_plan(self) -> Plan {
        self.plan
    }

    /// An EndpointSlice was added or changed: re-resolve only the objects
    /// whose backends come from its Service. Endpoints never affect address
    /// allocation, so stage B is skipped.
    pub fn apply_endpoint_slice(&mut self, slice: Arc<EndpointSlice>) {
        if let Some(owner) = self.endpoints.insert(slice) {
            self.refresh_dependents(&owner);
        }
    }

    /// An EndpointSlice was deleted.
    pub fn remove_endpoint_slice(&mut self, slice: &EndpointSlice) {
        if let Some(owner) = self.endpoints.remove(slice) {
            self.refresh_dependents(&owner);
        }
    }

    fn refresh_dependents(&mut self, owner: &(String, String)) {
        let Some(keys) = self.dependents.get(owner) else {
            return;
        };
        let keys: Vec<ObjectKey> = keys.iter().cloned().collect();
        let ctx = Context {
            endpoints: &self.endpoints,
            services: &self.services,
            nodes: &self.nodes,
        };
        let mut touched_vips: BTreeSet<IpAddr> = BTreeSet::new();
        let mut changed = Vec::new();
        for key in keys {
            let f = &self.frontends[&key];
            let old = &self.resolved[&key];
            let new = resolve(f, &self.allocations[&key], &ctx);
            if &new != old {
                changed.push((key, new));
            }
        }
        for (key, new) in changed {
            let old = self
                .resolved
                .insert(key.clone(), new)
                .expect("resolved before");
            for node in old.per_node.keys() {
                if let Some(np) = self.plan.nodes.get_mut(&**node) {
                    np.services.remove(&key);
                }
            }
            let new = &self.resolved[&key];
            for (node, sp) in &new.per_node {
                self.plan
                    .nodes
                    .entry(node.to_string())
                    .or_default()
                    .services
                    .insert(key.clone(), sp.clone());
            }
            touched_vips.extend(new.addresses.iter().copied());
            touched_vips.extend(old.addresses.iter().copied());
            self.plan.statuses.insert(key.clone(), self.status_of(&key));
        }
        if !touched_vips.is_empty() {
            self.announce(&touched_vips);
            self.plan.nodes.retain(|_, np| !np.services.is_empty());
        }
    }

    /// Stage D over everything.
    fn assemble(&mut self) {
        // Resolved is iterated in key order, so each node's list comes out
        // sorted and the maps are bulk-built rather than inserted into.
        let mut per_node: BTreeMap<&str, Vec<(ObjectKey, Arc<ServicePlan>)>> = BTreeMap::new();
        for (key, r) in &self.resolved {
            for (node, sp) in &r.per_node {
                per_node
                    .entry(&**node)
                    .or_default()
                    .push((key.clone(), sp.clone()));
            }
        }
        let nodes = per_node
            .into_iter()
            .map(|(node, list)| {
                (
                    node.to_string(),
                    NodePlan {
                        services: list.into_iter().collect(),
                        ..NodePlan::default()
                    },
                )
            })
            .collect();
        self.plan = Plan {
            nodes,
            pools: self.pools.clone(),
            statuses: self.invalid.clone(),
        };
        let all: BTreeSet<IpAddr> = self
            .resolved
            .values()
            .flat_map(|r| r.addresses.iter().copied())
            .collect();
        // Sets the status of every object holding an address...
        self.announce(&all);
        // ...and these are the rest.
        let rest: Vec<ObjectKey> = self
            .resolved
            .iter()
            .filter(|(_, r)| r.addresses.is_empty())
            .map(|(k, _)| k.clone())
            .collect();
        for key in rest {
            let s = self.status_of(&key);
            self.plan.statuses.insert(key, s);
        }
    }

    /// Recomputes who announces each of `vips`, and the statuses of the
    /// objects on them (their `directors` list carries the announcing flag).
    fn announce(&mut self, vips: &BTreeSet<IpAddr>) {
        // VIP → frontends holding it.
        let mut holders: BTreeMap<IpAddr, Vec<&ObjectKey>> = BTreeMap::new();
        for (key, r) in &self.resolved {
            for a in &r.addresses {
                if vips.contains(a) {
                    holders.entry(*a).or_default().push(key);
                }
            }
        }
        for np in self.plan.nodes.values_mut() {
            np.l2_announce.retain(|v| !vips.contains(v));
            np.bgp_announce.retain(|v| !vips.contains(v));
        }
        let mut affected: BTreeSet<ObjectKey> = BTreeSet::new();
        for (vip, keys) in holders {
            // L2: one owner among the nodes directing *every* object on the
            // VIP, since the owner receives all of the VIP's traffic. If the
            // objects' node sets are disjoint, fall back to all of them.
            let l2_keys: Vec<&&ObjectKey> = keys
                .iter()
                .filter(|k| self.frontends[**k].announce.l2)
                .collect();
            let owner = match l2_keys.as_slice() {
                [] => None,
                // The common case, without building sets.
                [only] => l2_owner(vip, self.resolved[**only].per_node.keys().map(|n| &**n)),
                many => {
                    let sets: Vec<BTreeSet<&str>> = many
                        .iter()
                        .map(|k| self.resolved[**k].per_node.keys().map(|n| &**n).collect())
                        .collect();
                    let mut common = sets[0].clone();
                    for s in &sets[1..] {
                        common = common.intersection(s).copied().collect();
                    }
                    if common.is_empty() {
                        common = sets.iter().flatten().copied().collect();
                    }
                    l2_owner(vip, common.iter().copied())
                }
            };
            if let Some(owner) = owner {
                // The owner directs the VIP, so its node plan normally exists.
                match self.plan.nodes.get_mut(owner) {
                    Some(np) => np.l2_announce.insert(vip),
                    None => self
                        .plan
                        .nodes
                        .entry(owner.to_string())
                        .or_default()
                        .l2_announce
                        .insert(vip),
                };
            }
            for k in &keys {
                if self.frontends[*k].announce.bgp {
                    for node in self.resolved[*k].per_node.keys() {
                        self.plan
                            .nodes
                            .entry(node.to_string())
                            .or_default()
                            .bgp_announce
                            .insert(vip);
                    }
                }
                affected.insert((*k).clone());
            }
        }
        for key in affected {
            let s = self.status_of(&key);
            self.plan.statuses.insert(key, s);
        }
    }

    fn status_of(&self, key: &ObjectKey) -> ObjectStatus {
        let f = &self.frontends[key];
        let r = &self.resolved[key];
        let directors = r
            .per_node
            .keys()
            .map(|node| {
                let np = self.plan.nodes.get(&**node);
                DirectorStatus {
                    node: node.clone(),
                    announcing: np.is_some_and(|np| {
                        r.addresses
                            .iter()
                            .any(|a| np.l2_announce.contains(a) || np.bgp_announce.contains(a))
                    }),
                }
            })
            .collect();
        ObjectStatus {
            generation: f.generation,
            addresses: r.addresses.clone(),
            accepted: r.accepted.clone(),
            ready: r.ready.clone(),
            programmed: programmed_pending(),
            backends: r.backends,
            directors,
        }
    }
}

/// Until agents report back over gRPC, nothing is known to be programmed.
fn programmed_pending() -> Cond {
    Cond::new(
        CondStatus::Unknown,
        "AwaitingAgents",
        "no agent has reported applying this object yet",
    )
}

/// An invalid object keeps the addresses it held (reserved, not served), so
/// fixing it restores the same VIP.
fn invalid_status(generation: Option<i64>, errors: &[String], held: &[IpAddr]) -> ObjectStatus {
    ObjectStatus {
        generation,
        addresses: held.to_vec(),
        accepted: Cond::new(CondStatus::False, "Invalid", errors.join("; ")),
        ready: Cond::new(
            CondStatus::False,
            "NotAccepted",
            "the object is not accepted; see the Accepted condition",
        ),
        programmed: Cond::new(
            CondStatus::False,
            "NotAccepted",
            "nothing is programmed for an invalid object",
        ),
        backends: None,
        directors: Vec::new(),
    }
}

#[cfg(test)]
mod tests;

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
mod presence;
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
pub use nodes::{EXCLUDE_LABEL, NodeInfo, is_ready, usable_nodes};
pub use presence::{AgentPresence, NodeAgent};

use crate::endpoints::EndpointIndex;
use crate::frontend::{self, BackendSource, Frontend, Source};
use crate::ipam::{Pool, allocate};
use crate::object_key::ObjectKey;
use crate::selector::Labels;
use resolve::{Context, FrontendPlan, ServiceIndex, resolve};

/// Everything the planner looks at (reflector store contents).
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub virtual_servers: Vec<Arc<VirtualServer>>,
    pub services: Vec<Arc<Service>>,
    pub endpoint_slices: Vec<Arc<EndpointSlice>>,
    pub nodes: Vec<Arc<Node>>,
    pub pools: Vec<Arc<AddressPool>>,
    pub namespaces: Vec<Arc<Namespace>>,
    /// Which nodes have an agent to direct with.
    pub agents: AgentPresence,
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
    resolved: BTreeMap<ObjectKey, FrontendPlan>,
    /// Stage B's result per frontend, reused when only endpoints change.
    allocations: BTreeMap<ObjectKey, crate::ipam::Allocation>,
    invalid: BTreeMap<ObjectKey, ObjectStatus>,
    endpoints: EndpointIndex,
    services: ServiceIndex,
    /// Usable nodes with a present agent: the director candidates.
    nodes: Vec<NodeInfo>,
    /// Usable nodes without one, and why.
    absent: Vec<(NodeInfo, Arc<str>)>,
    /// (namespace, service) → frontends whose backends come from it.
    dependents: HashMap<(String, String), BTreeSet<ObjectKey>>,
    pools: BTreeMap<String, PoolStatus>,
    /// (object, VIP) → why the VIP's L2 owner does not direct the object:
    /// objects sharing a VIP whose director sets have no node in common.
    l2_stranded: BTreeMap<(ObjectKey, IpAddr), String>,
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
        let (nodes, absent) = observed.agents.split(usable_nodes(&observed.nodes));
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
            absent: &absent,
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
            absent,
            dependents,
            pools: pool_status,
            l2_stranded: BTreeMap::new(),
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
            absent: &self.absent,
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
            self.plan
                .statuses
                .insert(key.clone(), Arc::new(self.status_of(&key)));
        }
        if !touched_vips.is_empty() {
            for key in self.announce(Some(&touched_vips)) {
                let s = self.status_of(&key);
                self.plan.statuses.insert(key, Arc::new(s));
            }
            self.plan.nodes.retain(|_, np| !np.services.is_empty());
        }
    }

    /// Stage D over everything.
    fn assemble(&mut self) {
        // `resolved` is iterated in key order, so each node's list comes out
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
            statuses: BTreeMap::new(),
        };
        self.announce(None);
        // Every status, bulk-built from two sorted, disjoint key sets.
        let valid = self
            .frontends
            .iter()
            .zip(self.resolved.values())
            .map(|((key, f), r)| {
                let stranded = stranded_on(&self.l2_stranded, key);
                (
                    key.clone(),
                    Arc::new(status_of(f, r, &self.plan.nodes, stranded)),
                )
            });
        self.plan.statuses = self
            .invalid
            .iter()
            .map(|(k, s)| (k.clone(), Arc::new(s.clone())))
            .chain(valid)
            .collect();
    }

    /// Recomputes who announces `vips` (every VIP for `None`), and returns
    /// the objects holding them, whose statuses carry the announcing flag.
    fn announce(&mut self, vips: Option<&BTreeSet<IpAddr>>) -> Vec<ObjectKey> {
        // VIP → (key, frontend, resolved) of the objects holding it.
        type Holder<'a> = (&'a ObjectKey, &'a Frontend, &'a FrontendPlan);
        let mut holders: BTreeMap<IpAddr, Vec<Holder<'_>>> = BTreeMap::new();
        // Same keys in the same order: one walk, no lookups.
        for ((key, f), r) in self.frontends.iter().zip(self.resolved.values()) {
            for a in &r.addresses {
                if vips.is_none_or(|v| v.contains(a)) {
                    holders.entry(*a).or_default().push((key, f, r));
                }
            }
        }
        match vips {
            Some(vips) => {
                for np in self.plan.nodes.values_mut() {
                    np.l2_announce.retain(|v| !vips.contains(v));
                    np.bgp_announce.retain(|v| !vips.contains(v));
                }
                self.l2_stranded.retain(|(_, v), _| !vips.contains(v));
            }
            None => self.l2_stranded.clear(),
        }
        let mut affected = Vec::new();
        for (vip, objects) in holders {
            // L2: one owner among the nodes directing *every* object on the
            // VIP, since the owner receives all of the VIP's traffic. If the
            // objects' node sets are disjoint, fall back to all of them.
            let l2: Vec<&Holder<'_>> = objects.iter().filter(|(_, f, _)| f.announce.l2).collect();
            let owner = match l2.as_slice() {
                [] => None,
                // The common case, without building sets.
                [(_, _, only)] => l2_owner(vip, only.per_node.keys().map(|n| &**n)),
                many => {
                    let sets: Vec<BTreeSet<&str>> = many
                        .iter()
                        .map(|(_, _, r)| r.per_node.keys().map(|n| &**n).collect())
                        .collect();
                    let mut common = sets[0].clone();
                    for s in &sets[1..] {
                        common = common.intersection(s).copied().collect();
                    }
                    if common.is_empty() {
                        // Still announce, so the objects the owner directs
                        // keep working; the others are told why they don't.
                        common = sets.iter().flatten().copied().collect();
                    }
                    let owner = l2_owner(vip, common.iter().copied());
                    if let Some(owner) = owner {
                        for (key, _, r) in many {
                            if !r.per_node.is_empty() && !r.per_node.contains_key(owner) {
                                self.l2_stranded.insert(
                                    ((*key).clone(), vip),
                                    format!(
                                        "{vip} is shared with objects whose director nodes have \
                                         none in common with this one's; its L2 owner {owner} \
                                         does not direct this object: make the nodeSelectors overlap"
                                    ),
                                );
                            }
                        }
                    }
                    owner
                }
            };
            if let Some(owner) = owner {
                node_plan(&mut self.plan.nodes, owner)
                    .l2_announce
                    .insert(vip);
            }
            for (key, f, r) in objects {
                if f.announce.bgp {
                    for node in r.per_node.keys() {
                        node_plan(&mut self.plan.nodes, node)
                            .bgp_announce
                            .insert(vip);
                    }
                }
                affected.push(key.clone());
            }
        }
        affected.sort_unstable();
        affected.dedup();
        affected
    }

    fn status_of(&self, key: &ObjectKey) -> ObjectStatus {
        status_of(
            &self.frontends[key],
            &self.resolved[key],
            &self.plan.nodes,
            stranded_on(&self.l2_stranded, key),
        )
    }
}

/// The plan of `node`, created empty if it has none yet (the owner of a VIP
/// directs it, so its plan normally exists already).
fn node_plan<'a>(nodes: &'a mut BTreeMap<String, NodePlan>, node: &str) -> &'a mut NodePlan {
    if !nodes.contains_key(node) {
        nodes.insert(node.to_string(), NodePlan::default());
    }
    nodes.get_mut(node).expect("inserted above")
}

/// The first reason `key` is stranded on one of its VIPs, if any.
fn stranded_on<'a>(
    stranded: &'a BTreeMap<(ObjectKey, IpAddr), String>,
    key: &ObjectKey,
) -> Option<&'a String> {
    if stranded.is_empty() {
        return None; // the common case, without cloning the key
    }
    let from = (key.clone(), IpAddr::from([0u8; 4]));
    stranded
        .range(from..)
        .next()
        .filter(|((k, _), _)| k == key)
        .map(|(_, why)| why)
}

fn status_of(
    f: &Frontend,
    r: &FrontendPlan,
    nodes: &BTreeMap<String, NodePlan>,
    stranded: Option<&String>,
) -> ObjectStatus {
    let directors = r
        .per_node
        .keys()
        .map(|node| {
            let np = nodes.get(&**node);
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
        ready: match stranded {
            Some(why) if r.ready.status == CondStatus::True => {
                Cond::new(CondStatus::False, "NoCommonDirector", why.clone())
            }
            _ => r.ready.clone(),
        },
        programmed: programmed_pending(),
        backends: r.backends,
        directors,
        absent: r.absent.clone(),
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
        absent: Vec::new(),
    }
}

#[cfg(test)]
mod presence_tests;
#[cfg(test)]
mod tests;

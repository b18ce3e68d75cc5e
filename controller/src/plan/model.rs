//! What the planner produces: per-node plans and per-object status.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use ballast_api::{Forwarding, HealthCheckSpec, Protocol};
use ipnet::IpNet;

use crate::object_key::ObjectKey;

/// Everything the planner decides.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Director node name → what it serves and announces. Nodes that direct
    /// nothing are absent.
    pub nodes: BTreeMap<String, NodePlan>,
    /// Every object that is ours, valid or not. Shared (`Arc`) so that
    /// publishing a plan after an endpoint change copies pointers, not 10k
    /// statuses' strings.
    pub statuses: BTreeMap<ObjectKey, Arc<ObjectStatus>>,
    /// Pool name → usage.
    pub pools: BTreeMap<String, PoolStatus>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodePlan {
    pub services: BTreeMap<ObjectKey, Arc<ServicePlan>>,
    /// VIPs this node answers ARP/NDP for.
    pub l2_announce: BTreeSet<IpAddr>,
    /// VIPs this node advertises over BGP.
    pub bgp_announce: BTreeSet<IpAddr>,
}

/// One object's share of a node's plan: VIPs × ports with their backends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePlan {
    pub vips: Vec<IpAddr>,
    pub ports: Vec<PortPlan>,
    pub forwarding: Forwarding,
    pub toa: bool,
    pub persistence_timeout_s: u32,
    /// Empty: every client may connect.
    pub source_ranges: Vec<IpNet>,
    /// Run by the agent against every backend; `None`: weights alone decide.
    pub health_check: Option<HealthCheckSpec>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortPlan {
    pub port: u16,
    pub protocol: Protocol,
    pub backends: Vec<BackendPlan>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct BackendPlan {
    pub address: IpAddr,
    pub port: u16,
    /// 0: drain (open flows finish, no new ones).
    pub weight: u32,
}

/// `True`/`False`/`Unknown` with a reason and message, before timestamps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cond {
    pub status: CondStatus,
    pub reason: String,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CondStatus {
    True,
    False,
    Unknown,
}

impl CondStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CondStatus::True => "True",
            CondStatus::False => "False",
            CondStatus::Unknown => "Unknown",
        }
    }
}

impl Cond {
    pub fn new(status: CondStatus, reason: &str, message: impl Into<String>) -> Self {
        Cond {
            status,
            reason: reason.to_string(),
            message: message.into(),
        }
    }
}

/// A director node of one object, for `status.nodes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectorStatus {
    pub node: Arc<str>,
    pub announcing: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectStatus {
    pub generation: Option<i64>,
    pub addresses: Vec<IpAddr>,
    pub accepted: Cond,
    pub ready: Cond,
    pub programmed: Cond,
    /// (ready, total); `None` when the object is not accepted.
    pub backends: Option<(usize, usize)>,
    pub directors: Vec<DirectorStatus>,
    /// Nodes that would direct the object (usable, matching its
    /// nodeSelector) but have no agent present, each with why.
    pub absent: Vec<(Arc<str>, String)>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolStatus {
    pub allocated: u64,
    pub total: u128,
    /// Entries of spec.addresses that could not be used.
    pub errors: Vec<String>,
}

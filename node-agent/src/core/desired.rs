//! What a node should do, typed: the one shape both sources (standalone
//! files, the controller stream) produce and the [`super::Agent`] applies.
//! ABI integers appear only when it is lowered ([`super::lower`]).
//!
//! [`validate`] is pure and checks a whole `NodeDesired` before anything is
//! written: every problem it finds is one typed [`ApplyError`] naming the
//! object, VIP, port and protocol, so that a version with any of them is
//! refused whole and the one before keeps serving.
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ballast_api::{Forwarding, HealthCheckSpec, Protocol};
use ipnet::IpNet;

use super::report::{AnnounceProblem, ApplyError, ServiceProblem, ServiceRef, SettingsError};
use crate::abi;

/// One version of a node's desired state.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct NodeDesired {
    /// Only grows per source; what an [`super::ApplyReport`] names.
    pub version: u64,
    pub settings: Settings,
    /// One entry per (VIP, port, protocol); an object with several VIPs and
    /// ports has several.
    pub services: Vec<Service>,
    pub announce: Announcements,
}

/// Node-wide settings that may change at run time. The MAC is not here: it
/// comes from the interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Source addresses of FullNAT flows.
    pub snat_addrs: Vec<Ipv4Addr>,
    /// SNAT source ports, inclusive.
    pub snat_ports: (u16, u16),
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            snat_addrs: Vec::new(),
            snat_ports: (10_000, 65_000),
        }
    }
}

/// One (VIP, port, protocol) the node directs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// `namespace/name` of the object it comes from (errors, stats).
    pub object: String,
    /// The port's name in the object, or empty (stats name it by number).
    pub port_name: String,
    pub vip: Ipv4Addr,
    pub port: u16,
    pub protocol: Protocol,
    pub forwarding: Forwarding,
    /// Insert the client address as a TCP option (FullNAT + TCP only).
    pub toa: bool,
    /// Client affinity in seconds; 0: none.
    pub persistence_timeout_s: u32,
    /// Clients allowed to start a flow, host bits zero; empty: everyone.
    pub source_ranges: Vec<IpNet>,
    /// None: every backend is used, weight alone decides.
    pub health_check: Option<HealthCheckSpec>,
    /// In order; empty refuses new clients.
    pub backends: Vec<Backend>,
    /// This node's hot-standby priority for the VIP (`announce.l2.priority`,
    /// standalone with `--peers`); None: the default. Announcement only:
    /// the data plane never sees it.
    pub l2_priority: Option<u8>,
}

impl Service {
    /// A service of `object` on an unnamed port with no TOA, no
    /// persistence, no source ranges and no health check.
    pub fn new(
        object: impl Into<String>,
        (vip, port, protocol): (Ipv4Addr, u16, Protocol),
        forwarding: Forwarding,
        backends: impl IntoIterator<Item = Backend>,
    ) -> Self {
        Service {
            object: object.into(),
            port_name: String::new(),
            vip,
            port,
            protocol,
            forwarding,
            toa: false,
            persistence_timeout_s: 0,
            source_ranges: Vec::new(),
            health_check: None,
            backends: backends.into_iter().collect(),
            l2_priority: None,
        }
    }

    /// How errors name this service.
    pub fn id(&self) -> ServiceRef {
        ServiceRef {
            object: self.object.clone(),
            vip: self.vip,
            port: self.port,
            protocol: self.protocol,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    pub address: Ipv4Addr,
    pub port: u16,
    /// 0 = draining: keeps its flows, gets no new one.
    pub weight: u32,
}

/// Which VIPs this node announces, and how.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Announcements {
    /// Answered in ARP by this node's data plane.
    pub l2: BTreeSet<Ipv4Addr>,
    /// Advertised over BGP: declared, refused until the agent has a speaker.
    pub bgp: BTreeSet<Ipv4Addr>,
}

/// Why an address cannot be a VIP, a backend or a SNAT source, if it
/// cannot.
fn unusable(a: Ipv4Addr) -> Option<&'static str> {
    if a.is_unspecified() {
        Some("the unspecified address")
    } else if a.is_broadcast() {
        Some("the broadcast address")
    } else if a.is_multicast() {
        Some("a multicast address")
    } else {
        None
    }
}

pub(super) fn check_settings(s: &Settings) -> Vec<ApplyError> {
    let mut out = Vec::new();
    if s.snat_addrs.len() > abi::MAX_SNAT_ADDRS {
        out.push(SettingsError::TooManySnatAddresses {
            count: s.snat_addrs.len(),
            max: abi::MAX_SNAT_ADDRS,
        });
    }
    for &address in &s.snat_addrs {
        if let Some(what) = unusable(address) {
            out.push(SettingsError::SnatAddress { address, what });
        }
    }
    let (min, max) = s.snat_ports;
    if min == 0 || max < min {
        out.push(SettingsError::SnatPortRange { min, max });
    }
    out.into_iter().map(ApplyError::Settings).collect()
}

fn check_health(h: &HealthCheckSpec) -> Option<ServiceProblem> {
    let reason = if h.interval.is_zero() {
        "interval is zero"
    } else if h.timeout.is_zero() {
        "timeout is zero"
    } else if h.timeout > h.interval {
        "timeout is longer than the interval"
    } else if h.healthy_threshold == 0 || h.unhealthy_threshold == 0 {
        "a threshold is zero"
    } else {
        return None;
    };
    Some(ServiceProblem::HealthCheck(reason))
}

/// Everything wrong with one service on its own or against the settings.
pub(super) fn check_service(s: &Service, settings: &Settings) -> Vec<ServiceProblem> {
    let mut out = Vec::new();
    if let Some(what) = unusable(s.vip) {
        out.push(ServiceProblem::BadVip(what));
    }
    if settings.snat_addrs.contains(&s.vip) {
        out.push(ServiceProblem::VipIsSnatAddress);
    }
    if s.port == 0 {
        out.push(ServiceProblem::PortZero);
    }
    if s.toa && s.protocol != Protocol::Tcp {
        out.push(ServiceProblem::ToaNeedsTcp);
    }
    if s.toa && s.forwarding != Forwarding::FullNat {
        out.push(ServiceProblem::ToaNeedsFullNat(s.forwarding));
    }
    if s.forwarding == Forwarding::FullNat && settings.snat_addrs.is_empty() {
        out.push(ServiceProblem::NoSnatAddress);
    }
    if s.backends.len() > abi::MAX_BACKENDS as usize {
        out.push(ServiceProblem::TooManyBackends {
            count: s.backends.len(),
            max: abi::MAX_BACKENDS as usize,
        });
    }
    let mut seen = BTreeSet::new();
    for (index, b) in s.backends.iter().enumerate() {
        if let Some(what) = unusable(b.address) {
            out.push(ServiceProblem::BadBackend { index, what });
        } else if settings.snat_addrs.contains(&b.address) {
            out.push(ServiceProblem::BadBackend {
                index,
                what: "a SNAT address of this node (the director would forward to itself)",
            });
        } else if b.port == 0 {
            out.push(ServiceProblem::BadBackend {
                index,
                what: "port 0",
            });
        } else if !seen.insert((b.address, b.port)) {
            out.push(ServiceProblem::BadBackend {
                index,
                what: "listed twice",
            });
        }
    }
    for (index, r) in s.source_ranges.iter().enumerate() {
        if r.trunc() != *r {
            out.push(ServiceProblem::SourceRangeHostBits { index, range: *r });
        }
    }
    out.extend(s.health_check.as_ref().and_then(check_health));
    out
}

/// Every problem of `d`, in a stable order (settings, services in order,
/// announcements); empty: it can be applied.
pub fn validate(d: &NodeDesired) -> Vec<ApplyError> {
    let mut out = check_settings(&d.settings);
    if d.services.len() > abi::MAX_SERVICES as usize {
        out.push(ApplyError::TooManyServices {
            count: d.services.len(),
            max: abi::MAX_SERVICES as usize,
        });
    }
    let mut first: BTreeMap<(Ipv4Addr, u16, Protocol), &str> = BTreeMap::new();
    for s in &d.services {
        let mut problems = check_service(s, &d.settings);
        match first.get(&(s.vip, s.port, s.protocol)) {
            Some(other) => problems.push(ServiceProblem::Duplicate {
                first: other.to_string(),
            }),
            None => {
                first.insert((s.vip, s.port, s.protocol), &s.object);
            }
        }
        out.extend(problems.into_iter().map(|problem| ApplyError::Service {
            service: s.id(),
            problem,
        }));
    }
    let served: BTreeSet<Ipv4Addr> = d.services.iter().map(|s| s.vip).collect();
    for &vip in &d.announce.l2 {
        if !served.contains(&vip) {
            out.push(ApplyError::Announce {
                vip,
                problem: AnnounceProblem::NotServed,
            });
        }
    }
    for &vip in &d.announce.bgp {
        out.push(ApplyError::Announce {
            vip,
            problem: AnnounceProblem::BgpUnsupported,
        });
    }
    out
}

#[cfg(test)]
mod tests;

//! What validation returns: the object checked and normalised, for either
//! address family, and the enums its fields use.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::health::HealthCheckSpec;
use crate::virtual_server::ForwardingMode;

/// Transport protocol of a data-plane service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Forwarding {
    FullNat,
    Dr,
    Nat,
}

impl fmt::Display for Forwarding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Forwarding::FullNat => "FullNAT",
            Forwarding::Dr => "DR",
            Forwarding::Nat => "NAT",
        })
    }
}

impl From<ForwardingMode> for Forwarding {
    fn from(m: ForwardingMode) -> Self {
        match m {
            ForwardingMode::FullNat => Forwarding::FullNat,
            ForwardingMode::Dr => Forwarding::Dr,
            ForwardingMode::Nat => Forwarding::Nat,
        }
    }
}

/// An object that passed every rule, normalised. IPv4 and IPv6 both pass
/// here unless the caller said it serves IPv4 only (see
/// [`super::Families`]); expanding it into what a data plane programs is the
/// consumer's business.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedSpec {
    /// `namespace/name`.
    pub object: String,
    /// `spec.addresses` parsed, in order; may be empty in
    /// [`super::ValidationContext::Controller`] (the controller allocates).
    pub addresses: Vec<IpAddr>,
    pub ports: Vec<CheckedPort>,
    pub forwarding: Forwarding,
    /// `clientAddress: TOA` (applies to the TCP ports only).
    pub toa: bool,
    /// 0 = no client affinity.
    pub persistence_timeout_s: u32,
    pub source_ranges: Vec<IpNet>,
    /// `spec.backends.static`; empty for `serviceRef`.
    pub static_backends: Vec<CheckedBackend>,
    pub health_check: Option<HealthCheckSpec>,
    /// `announce.l2.priority` (standalone hot standby only).
    pub l2_priority: Option<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CheckedPort {
    /// Empty when the port is unnamed.
    pub name: String,
    pub port: u16,
    pub protocol: Protocol,
    pub target_port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CheckedBackend {
    pub address: IpAddr,
    /// 0 = draining.
    pub weight: u32,
}

//! What applying a [`super::NodeDesired`] answers: the version now applied
//! and every problem, typed. Strings are made of them only where they are
//! logged (or, next, put on the wire as a `ServiceError`).
use std::fmt;
use std::net::Ipv4Addr;

use ballast_api::{Forwarding, Protocol};
use ipnet::IpNet;

use crate::dataplane::PlanError;

/// The answer to one apply.
#[derive(Debug, PartialEq, Eq)]
pub struct ApplyReport {
    /// The version the data plane now forwards with: the one applied, or,
    /// when validation refused it, the one before (0: none yet).
    pub applied_version: u64,
    /// Validation problems (then nothing changed), or the services the data
    /// plane could not take (the rest of the version is applied).
    pub errors: Vec<ApplyError>,
    /// Services programmed after this apply.
    pub programmed: usize,
}

impl ApplyReport {
    /// True when the version was refused whole (nothing changed): an
    /// applied version reports capacity errors only. A version resent after
    /// it was applied is refused as stale though it names the same number.
    pub fn refused(&self, version: u64) -> bool {
        self.applied_version != version
            || self
                .errors
                .iter()
                .any(|e| !matches!(e, ApplyError::Capacity { .. }))
    }
}

/// A data-plane service, as errors and status name it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServiceRef {
    /// `namespace/name` of the object.
    pub object: String,
    pub vip: Ipv4Addr,
    pub port: u16,
    pub protocol: Protocol,
}

impl fmt::Display for ServiceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}:{}/{}",
            self.object, self.vip, self.port, self.protocol
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("version {version} is not above the applied version {applied}")]
    StaleVersion { version: u64, applied: u64 },
    #[error("node settings: {0}")]
    Settings(SettingsError),
    #[error("{count} services, the data plane holds at most {max}")]
    TooManyServices { count: usize, max: usize },
    #[error("{service}: {problem}")]
    Service {
        service: ServiceRef,
        problem: ServiceProblem,
    },
    #[error("announcement of {vip}: {problem}")]
    Announce {
        vip: Ipv4Addr,
        problem: AnnounceProblem,
    },
    /// Valid, but the data plane had no room for it (ring, slots, source
    /// ranges); it keeps what it had, if anything.
    #[error("{service}: not programmed: {source}")]
    Capacity {
        service: ServiceRef,
        source: PlanError,
    },
}

impl ApplyError {
    /// The service this error is about, when it is about one.
    pub fn service(&self) -> Option<&ServiceRef> {
        match self {
            ApplyError::Service { service, .. } | ApplyError::Capacity { service, .. } => {
                Some(service)
            }
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("{count} SNAT addresses, the data plane holds at most {max}")]
    TooManySnatAddresses { count: usize, max: usize },
    #[error("SNAT address {address} is {what}: it cannot be a packet's source")]
    SnatAddress {
        address: Ipv4Addr,
        what: &'static str,
    },
    #[error("SNAT port range {min}-{max} is empty or starts at 0")]
    SnatPortRange { min: u16, max: u16 },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceProblem {
    #[error("the VIP is {0}")]
    BadVip(&'static str),
    #[error(
        "the VIP is a SNAT address of this node: FullNAT replies and new flows would be indistinguishable"
    )]
    VipIsSnatAddress,
    #[error("port 0")]
    PortZero,
    #[error("TOA needs TCP")]
    ToaNeedsTcp,
    #[error("TOA needs FullNAT forwarding, not {0}")]
    ToaNeedsFullNat(Forwarding),
    #[error("FullNAT needs a SNAT address and the node settings have none")]
    NoSnatAddress,
    #[error("{count} backends, the data plane holds at most {max}")]
    TooManyBackends { count: usize, max: usize },
    #[error("backends[{index}]: {what}")]
    BadBackend { index: usize, what: &'static str },
    #[error("source_ranges[{index}]: {range} has host bits set")]
    SourceRangeHostBits { index: usize, range: IpNet },
    #[error("health check: {0}")]
    HealthCheck(&'static str),
    #[error("defined twice: {first} already serves this VIP, port and protocol")]
    Duplicate { first: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnnounceProblem {
    #[error("no service of this state serves it")]
    NotServed,
    #[error("BGP is not supported yet: this agent has no BGP speaker (announce it over L2)")]
    BgpUnsupported,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_means_nothing_changed() {
        let report = |applied_version, errors| ApplyReport {
            applied_version,
            errors,
            programmed: 0,
        };
        let stale = ApplyError::StaleVersion {
            version: 3,
            applied: 3,
        };
        let capacity = ApplyError::Capacity {
            service: ServiceRef {
                object: "default/web".into(),
                vip: Ipv4Addr::new(203, 0, 113, 10),
                port: 80,
                protocol: Protocol::Tcp,
            },
            source: PlanError::TooManyServices {
                service: "default/web:80".into(),
                key: Default::default(),
                max: 1,
            },
        };
        assert!(!report(3, vec![]).refused(3));
        assert!(!report(3, vec![capacity]).refused(3), "applied, in part");
        assert!(report(2, vec![]).refused(3));
        assert!(report(3, vec![stale]).refused(3), "resent: stale");
    }
}

//! Semantic validation of `VirtualServer` objects: every rule the agent and
//! the controller share, applied in one pass that collects every problem,
//! returning the object checked and normalised ([`CheckedSpec`]).
//!
//! Everything here is pure so the node agent (standalone mode), the controller
//! and tests all apply exactly the same rules. What a consumer makes of the
//! result is its own business: the controller plans it, the agent expands it
//! into the (VIP, port, protocol) entries its data plane programs. A
//! consumer's limits (the agent's data plane serves IPv4 only) are its own
//! too; it states them through [`Families`] so they are reported with the
//! other problems.
//!
//! One concern per file: `error` (what is reported, and the accumulator the
//! rule files share), `types` (what is returned), and a file per group of
//! fields: `addresses`, `ports`, `backends`, `options` (clientAddress,
//! scheduler, persistence, source ranges, health check) and `placement`
//! (node selector, address pool, announcement).

mod addresses;
mod backends;
mod error;
mod options;
mod placement;
mod ports;
#[cfg(test)]
mod tests;
mod types;

use std::net::IpAddr;

use crate::health::HealthCheckSpec;
use crate::virtual_server::{ClientAddressMode, VirtualServer};

pub use backends::MAX_WEIGHT;
use error::Errors;
pub use error::{FieldError, ValidationError};
pub use options::MAX_PERSISTENCE_TIMEOUT_S;
pub use types::{CheckedBackend, CheckedPort, CheckedSpec, Forwarding, Protocol};

/// Who validates the object, which decides where its backends and addresses
/// may come from and what it may ask for: the same object is valid under the
/// controller and not on a standalone node when it needs something only the
/// controller provides. (Not "mode": that word is the forwarding mode.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValidationContext {
    /// Files on a node: nothing can resolve a Service or allocate an address
    /// or speak BGP, so only `static` backends and listed addresses work.
    Standalone,
    /// The controller resolves `serviceRef` to endpoints and allocates
    /// addresses itself.
    Controller,
}

/// The address families the caller can serve. The rules themselves hold
/// for both; a caller that cannot program IPv6 yet (the agent's data plane)
/// says so, with the reason to give, and IPv6 addresses are then refused at
/// their fields together with every other problem, so that a user fixes a
/// file in one round trip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Families {
    Both,
    Ipv4Only {
        /// Reported at each IPv6 address.
        ipv6_refused: &'static str,
    },
}

impl Families {
    /// Why `ip` cannot be served, when its family is not.
    fn refuses(self, ip: IpAddr) -> Option<&'static str> {
        match self {
            Families::Ipv4Only { ipv6_refused } if ip.is_ipv6() => Some(ipv6_refused),
            _ => None,
        }
    }

    /// What an address must be, for "... is not <this>" messages.
    fn expected(self) -> &'static str {
        match self {
            Families::Both => "an IP address",
            Families::Ipv4Only { .. } => "an IPv4 address",
        }
    }
}

/// The namespace an object is in: `default` when unset, as the apiserver
/// defaults it.
fn namespace_of(vs: &VirtualServer) -> &str {
    vs.metadata
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or("default")
}

/// `namespace/name`, the name every error and status uses for an object;
/// `None` without a name (validation then reports `metadata.name`).
pub fn object_key(vs: &VirtualServer) -> Option<String> {
    let name = vs.metadata.name.as_deref().filter(|n| !n.is_empty())?;
    Some(format!("{}/{name}", namespace_of(vs)))
}

/// Checks every rule of `vs` (collecting all problems) and returns it
/// normalised.
pub fn check(
    vs: &VirtualServer,
    ctx: ValidationContext,
    families: Families,
) -> Result<CheckedSpec, ValidationError> {
    let name = vs.metadata.name.as_deref().filter(|n| !n.is_empty());
    let object = object_key(vs).unwrap_or_else(|| format!("{}/<unnamed>", namespace_of(vs)));
    let mut errs = Errors::default();

    if name.is_none() {
        errs.push("metadata.name", "required");
    }
    let spec = &vs.spec;
    let addresses = addresses::check_addresses(spec, ctx, families, &mut errs);
    let ports = ports::check_ports(spec, &mut errs);
    options::check_general(spec, &mut errs);
    let static_backends = backends::check_backends(spec, ctx, families, &addresses, &mut errs);
    let source_ranges = options::source_ranges(&spec.source_ranges, &mut errs);
    let health_check = options::health_check(spec.health_check.as_ref(), &mut errs);
    if let Some(HealthCheckSpec {
        probe: crate::health::Probe::Udp { .. },
        ..
    }) = &health_check
        && let Some(tcp) = ports.iter().position(|p| p.protocol == Protocol::Tcp)
    {
        errs.push(
            "spec.healthCheck.udp",
            format!(
                "a UDP probe checks UDP ports, and spec.ports[{tcp}] is TCP: give the TCP ports \
                 their own VirtualServer, or probe with tcp (a server listening on both)"
            ),
        );
    }
    placement::node_selector(&spec.node_selector, &mut errs);
    placement::address_pool(spec, ctx, &mut errs);
    placement::announce(spec, ctx, &mut errs);

    if !errs.0.is_empty() {
        return Err(ValidationError {
            object,
            errors: errs.0,
        });
    }
    Ok(CheckedSpec {
        object,
        addresses,
        ports,
        forwarding: Forwarding::from(spec.forwarding),
        toa: spec.client_address == ClientAddressMode::Toa,
        persistence_timeout_s: spec
            .persistence
            .as_ref()
            .map_or(0, |p| p.timeout_seconds as u32),
        source_ranges,
        static_backends,
        health_check,
        l2_priority: spec
            .announce
            .as_ref()
            .and_then(|a| a.l2.as_ref())
            .and_then(|l2| l2.priority),
    })
}

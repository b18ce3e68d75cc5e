//! The rules, table-tested: `rules` breaks one rule at a time of the design's
//! example as a standalone node validates it; `contexts` what depends on who
//! validates (standalone or controller) and on the families served.

mod contexts;
mod rules;

use super::{CheckedSpec, ValidationError};
use super::{Families, ValidationContext, check};
use crate::virtual_server::{PortProtocol, StaticBackend, VirtualServer, VirtualServerPort};

/// The example from the VirtualServer design, verbatim (the agent's tests
/// read the same file).
const EXAMPLE: &str = include_str!("../../../examples/virtual-server.yaml");

/// As the agent says it: its data plane serves IPv4 only (the agent's own
/// reason is tested with the agent).
const IPV4_ONLY: Families = Families::Ipv4Only {
    ipv6_refused: "IPv6 is not supported by the data plane yet",
};

fn example() -> VirtualServer {
    serde_yaml::from_str(EXAMPLE).expect("example parses")
}

/// As a standalone agent checks an object.
fn standalone(vs: &VirtualServer) -> Result<CheckedSpec, ValidationError> {
    check(vs, ValidationContext::Standalone, IPV4_ONLY)
}

fn port(
    name: Option<&str>,
    port: i32,
    protocol: PortProtocol,
    target: Option<i32>,
) -> VirtualServerPort {
    VirtualServerPort {
        name: name.map(str::to_string),
        port,
        protocol,
        target_port: target,
    }
}

fn backend(address: &str, weight: i64) -> StaticBackend {
    StaticBackend {
        address: address.to_string(),
        weight,
    }
}

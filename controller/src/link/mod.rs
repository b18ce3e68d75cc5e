//! The controller's side of the controller -> agent link. Pure: what a
//! node's plan looks like on the wire ([`encode`]), the change between two
//! plans of a node ([`delta`]), and the per-node version numbers and content
//! hashes that let an agent and the controller agree on what is applied
//! ([`versions`]). I/O: the gRPC server that streams them ([`server`], with
//! its shared state in `hub`), its mutual TLS ([`tls`]; with
//! `--tls-bootstrap`, the certificates the controller issues itself:
//! [`issue`], pure), and what agents report back ([`agents`]).

pub mod agents;
pub mod delta;
pub mod encode;
mod hub;
pub mod issue;
pub mod server;
pub mod tls;
pub mod versions;

pub use agents::{AgentReport, AgentReports, LinkFacts, Refusal, Sent};
pub use delta::node_delta;
pub use encode::node_state;
pub use server::{LinkInputs, Security, serve};
pub use versions::{NodeVersions, ObjectSince};

use ballast_proto::v1::{ControllerMessage, Delta, controller_message::Kind};
use prost::Message;

use crate::plan::NodePlan;

/// Encoded sizes, in bytes, of the two messages that can bring an agent from
/// `old` to `new`: the delta, and the full snapshot of `new` (each as the
/// `ControllerMessage` the stream carries, before gRPC's 5-byte framing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireSizes {
    pub delta: usize,
    pub snapshot: usize,
}

/// What [`WireSizes`] says for `old` -> `new`, with the versions a running
/// controller would stamp (so varint widths are realistic).
pub fn wire_sizes(old: &NodePlan, new: &NodePlan, old_version: u64) -> WireSizes {
    let delta = Delta {
        version: old_version + 1,
        base_version: old_version,
        ..node_delta(old, new)
    };
    let message = |kind| ControllerMessage { kind: Some(kind) }.encoded_len();
    WireSizes {
        delta: message(Kind::Delta(delta)),
        snapshot: message(Kind::Snapshot(node_state(old_version + 1, new))),
    }
}

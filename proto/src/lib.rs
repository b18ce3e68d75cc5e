//! The controller -> agent link's contract: the types and tonic stubs
//! generated from `ballast.proto` (package `ballast.v1`), and the rules both
//! ends share about node states ([`state`]: canonical order, content hash,
//! applying a delta).
//!
//! The agent dials and the controller streams: the controller implements
//! [`v1::node_sync_server::NodeSync`], the agent uses
//! [`v1::node_sync_client::NodeSyncClient`].

pub mod state;

/// Generated from `ballast.proto` by `tonic-prost-build` (via `protox`).
#[allow(clippy::all)]
pub mod v1 {
    tonic::include_proto!("ballast.v1");
}

pub use state::{ContentHash, DeltaError, apply_delta, canonicalize, content_hash, delta_is_empty};

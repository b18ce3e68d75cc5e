//! The controller -> agent link's contract: the types and tonic stubs
//! generated from `ballast.proto` (package `ballast.v1`), and the rules both
//! ends share about node states ([`state`]: canonical order, applying a
//! delta; [`digest`]: the content hash, kept incrementally).
//!
//! The agent dials and the controller streams: the controller implements
//! [`v1::node_sync_server::NodeSync`], the agent uses
//! [`v1::node_sync_client::NodeSyncClient`].

pub mod digest;
pub mod state;

/// Generated from `ballast.proto` by `tonic-prost-build` (via `protox`).
#[allow(clippy::all)]
pub mod v1 {
    tonic::include_proto!("ballast.v1");
}

pub use digest::{ContentHash, DigestSum, content_hash, content_hash_of, service_digest};
pub use state::{
    DeltaError, announcements_after, apply_delta, canonicalize, check_delta, delta_is_empty,
    find_service,
};

//! The agent's end of the controller -> agent link (`ballast.v1`).
//!
//! - `convert`: a received `NodeState` checked field by field and turned
//!   into the typed [`crate::core::NodeDesired`] the core applies (pure).
//! - `wire_errors`: what the core and `convert` refuse, put back on the wire
//!   as `ServiceError`s and a Nack message (pure).
pub mod convert;
pub mod wire_errors;

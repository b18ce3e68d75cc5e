//! The agent's end of the controller -> agent link (`ballast.v1.NodeSync`):
//! the agent dials the controller, receives its node's state and applies it
//! through the agent core.
//!
//! - `convert`: the wire's node state -> the core's typed `NodeDesired`,
//!   every unreadable field refused with a typed error (pure).
//! - `wire_errors`: the core's apply errors -> the wire's `ServiceError`s
//!   (pure).
//! - `session`: what the agent holds and how it answers each controller
//!   message (pure).
//! - `heartbeat`: the core's usage report -> the wire's `Heartbeat` (pure).
//! - `persist`: the applied state kept across agent restarts.
//! - `tls`: the client certificate, key and CA files, re-read on change.
//! - `dial`: `--controller` entries -> the addresses to dial, resolved at
//!   every round (the resolver injected, so the expansion is tested pure).
//! - `client`: the stream itself: dial, Hello, apply, answer, heartbeat,
//!   reconnect with backoff and jitter.
pub mod client;
pub mod convert;
pub mod dial;
pub mod heartbeat;
pub mod persist;
pub mod session;
pub mod tls;
pub mod wire_errors;

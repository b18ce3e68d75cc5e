//! The agent core, one for both sources: a typed [`NodeDesired`] (from the
//! standalone files today, from the controller stream next) applied by the
//! [`Agent`] as one transaction and answered with an [`ApplyReport`].
//!
//! - `desired`: the typed state and its whole-version validation (pure).
//! - `held`: the applied state per object, and a version as a change to
//!   it, validated by what it touches (pure).
//! - `lower`: that state lowered to the map-writing plan's ABI integers
//!   (pure).
//! - `wanted`: the applied state per data-plane key, lowered, with checks,
//!   names and health applied, changed key by key (pure).
//! - `report`: what an apply answers, every error typed.
//! - `cost`: what an apply cost, phase by phase, and what it wrote.
//! - `agent`: the data plane, health checks, inventory, sweeper and
//!   `/metrics`, and the run loop (`run(requests, shutdown)`).
pub mod agent;
pub mod cost;
pub mod desired;
pub mod held;
pub mod lower;
pub mod report;
pub mod retire;
pub mod usage;
pub mod wanted;

pub use agent::{Agent, AgentError, AgentHandle, AgentOptions, InventoryPlace, Requests, channel};
pub use cost::ApplyPhases;
pub use desired::{Announcements, Backend, NodeDesired, Service, Settings, validate};
pub use held::{HeldDesired, NodeChange};
pub use report::{
    AnnounceProblem, ApplyError, ApplyReport, ServiceProblem, ServiceRef, SettingsError,
};
pub use usage::{BackendVerdict, SnatUsage, Usage};

//! Active health checks of backends, as keepalived does for LVS: probes
//! from this director to each backend's address and target port, a verdict
//! per backend, and DOWN backends taken out of new flows.
//!
//! Part of the agent core, shared by standalone and Kubernetes modes:
//! `crate::core::Agent` feeds [`HealthChecker::set_targets`] from
//! [`targets`] on every applied version, re-applies [`apply_health`] of it
//! when [`HealthChecker::subscribe`] fires, and shows the verdicts with
//! [`annotate`].
//!
//! - `state`: the pure per-target state machine (thresholds, starts UP).
//! - `probe`: one TCP or HTTP probe, bounded by its timeout.
//! - `checker`: the tokio tasks, spread over the interval, bounded in number.
//! - `apply`: pure mapping of verdicts onto the desired services.
pub mod apply;
pub mod checker;
pub mod probe;
pub mod state;

pub use apply::{
    ServiceChecks, ServiceKey, annotate, apply_health, apply_health_one, describe, target_of,
    targets, without_backends,
};
pub use checker::{HealthChecker, MAX_PROBES_IN_FLIGHT, Target, Verdicts, phase_offset};
pub use probe::ProbeError;
pub use state::{Health, Transition};

//! The flow-table sweeper: deletes expired entries from `conntrack` and
//! `persist`, which the data plane only judges expired when a packet looks
//! them up (conntrack.h, select.h) and which are otherwise evicted by the
//! LRU, possibly in favour of dead ones.
//!
//! - `rules`: the data plane's expiry rules, pure (tests/expiry_rules.rs
//!   checks them against the C);
//! - `walk`: one sweep, each table read in batched chunks and judged;
//! - `delete`: deleting an expired entry only if still unchanged;
//! - `pacer`: the sweep's CPU share;
//! - `report`: what a sweep did;
//! - `snat`: SNAT ports in use, counted from the conntrack pass;
//! - `periodic`: the sweeping thread and its totals.
//!
//! Time is the data plane's own clock, jiffies, read through the pinned
//! `ballast_clock` program (clock.rs); `config.hz` converts timeouts.
mod delete;
mod pacer;
mod periodic;
mod report;
mod rules;
mod snat;
mod walk;

pub use pacer::Pacer;
pub use periodic::{PeriodicSweeper, SweepTotals};
pub use report::{SweepReport, TABLES, TableSweep};
pub use rules::{
    ForwardEntry, PersistOwner, Verdict, ct_expired, ct_timeout, ct_verdict, persist_expired,
    reply_belongs_to,
};
pub use walk::{SweepOptions, sweep, sweep_table};

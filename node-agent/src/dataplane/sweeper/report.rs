//! What a sweep reports: per table, entries read, expired, deleted, left
//! because they changed, and held; the tables' occupancy; SNAT ports in
//! use.
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use serde::Serialize;

use crate::dataplane::maps::FlowTable;

/// The swept tables, in sweep order.
pub const TABLES: [&str; 2] = ["conntrack", "persist"];

/// What one sweep did to one table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TableSweep {
    /// Entries read.
    pub scanned: u64,
    /// Judged expired when read.
    pub expired: u64,
    /// Deleted: expired, and unchanged when re-read right before deleting.
    pub deleted: u64,
    /// Expired when read but refreshed, replaced or gone by the time they
    /// were re-read: left to the data plane and the next sweep.
    pub changed: u64,
    /// Reply entries expired by their own stamp but kept for a live flow.
    pub held: u64,
    /// The table's max_entries.
    pub capacity: u32,
}

impl TableSweep {
    pub(super) fn add(&mut self, o: &TableSweep) {
        self.scanned += o.scanned;
        self.expired += o.expired;
        self.deleted += o.deleted;
        self.changed += o.changed;
        self.held += o.held;
        self.capacity = o.capacity;
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SweepReport {
    pub conntrack: TableSweep,
    pub persist: TableSweep,
    /// Wall time of the sweep, pauses included.
    pub elapsed: Duration,
    /// Time spent working (reading, judging, deleting), pauses excluded.
    pub busy: Duration,
    /// False when cancelled part way.
    pub complete: bool,
    /// SNAT ports held by live flows, per SNAT address that has any, as
    /// the conntrack pass counted them (snat.rs says which count).
    pub snat_in_use: BTreeMap<Ipv4Addr, u32>,
}

impl SweepReport {
    /// (table name, its figures), in `TABLES` order.
    pub fn tables(&self) -> [(&'static str, &TableSweep); 2] {
        [(TABLES[0], &self.conntrack), (TABLES[1], &self.persist)]
    }

    /// How full the tables were when the sweep ended (entries added while
    /// it ran not counted).
    pub fn occupancy(&self) -> Vec<FlowTable> {
        self.tables()
            .into_iter()
            .map(|(table, t)| FlowTable {
                table,
                entries: t.scanned - t.deleted,
                capacity: t.capacity,
            })
            .collect()
    }
}

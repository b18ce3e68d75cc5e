//! Counters joined with the inventory: one snapshot type that feeds the
//! `stats` table, its JSON form and the Prometheus metrics.
use serde::Serialize;

use crate::abi::{self, TrafficCounters};
use crate::dataplane::DataplaneError;
use crate::dataplane::maps::{FlowTable, Maps};
use crate::dataplane::sweeper::SweepTotals;
use crate::inventory::{BackendHealth, InventoryService};

#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub services: Vec<ServiceStats>,
    /// (reason, is_drop, count)
    pub reasons: Vec<ReasonCount>,
    /// How full conntrack (one entry per flow direction) and persist are.
    pub tables: Vec<FlowTable>,
    /// The conntrack sweeper's totals, when it runs in this process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sweeper: Option<SweepTotals>,
    /// The hot-standby announcer's counters, when it runs in this process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub standby: Option<crate::announce::l2::StandbySnapshot>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReasonCount {
    pub reason: &'static str,
    pub drop: bool,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceStats {
    pub name: String,
    pub vip: String,
    pub mode: String,
    pub counters: Counters,
    pub backends: Vec<BackendStats>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BackendStats {
    pub address: String,
    pub weight: u32,
    pub counters: Counters,
    /// Present when the service has a health check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<BackendHealth>,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
    pub reply_packets: u64,
    pub reply_bytes: u64,
}

impl From<TrafficCounters> for Counters {
    fn from(c: TrafficCounters) -> Self {
        Self {
            packets: c.packets,
            bytes: c.bytes,
            new_flows: c.new_flows,
            reply_packets: c.reply_packets,
            reply_bytes: c.reply_bytes,
        }
    }
}

/// Counters and flow-table occupancy (counted now: a third of a second per
/// million entries).
pub fn snapshot(maps: &Maps, inventory: &[InventoryService]) -> Result<Snapshot, DataplaneError> {
    let mut s = counters(maps, inventory)?;
    s.tables = maps.flow_tables()?;
    Ok(s)
}

/// Counters only: `tables` empty, for callers that know the occupancy
/// otherwise (the sweeper's last pass).
pub fn counters(maps: &Maps, inventory: &[InventoryService]) -> Result<Snapshot, DataplaneError> {
    let svc = maps.service_counters(inventory.iter().map(|s| s.id))?;
    let be = maps.backend_counters(
        inventory
            .iter()
            .flat_map(|s| s.backends.iter().map(|b| b.id)),
    )?;
    let services = inventory
        .iter()
        .map(|s| ServiceStats {
            name: s.name.clone(),
            vip: format!("{}:{}/{}", s.vip, s.port, s.protocol),
            mode: s.mode.clone(),
            counters: svc.get(&s.id).copied().unwrap_or_default().into(),
            backends: s
                .backends
                .iter()
                .map(|b| BackendStats {
                    address: format!("{}:{}", b.address, b.port),
                    weight: b.weight,
                    counters: be.get(&b.id).copied().unwrap_or_default().into(),
                    health: b.health.clone(),
                })
                .collect(),
        })
        .collect();
    let reasons = maps
        .reason_counters()?
        .into_iter()
        .zip(abi::REASONS)
        .map(|(count, (reason, drop))| ReasonCount {
            reason,
            drop,
            count,
        })
        .collect();
    Ok(Snapshot {
        services,
        reasons,
        tables: Vec::new(),
        sweeper: None,
        standby: None,
    })
}

/// `up (tcp)`, `DOWN (tcp; 1 transition; last failure: connect: connection
/// refused)`, or `-` for a backend without a health check.
fn health_cell(h: Option<&BackendHealth>) -> String {
    let Some(h) = h else { return "-".into() };
    let mut s = format!("{} ({}", if h.up { "up" } else { "DOWN" }, h.check);
    if h.transitions > 0 {
        let plural = if h.transitions == 1 { "" } else { "s" };
        s.push_str(&format!("; {} transition{plural}", h.transitions));
    }
    if let Some(r) = &h.last_failure {
        s.push_str(&format!("; last failure: {r}"));
    }
    s.push(')');
    s
}

/// The human table printed by `ballast-agent stats` and the demo.
pub fn render_table(s: &Snapshot) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<28} {:<26} {:>7} {:>10} {:>12} {:>10} {:>7}  HEALTH",
        "SERVICE / BACKEND", "ADDRESS", "WEIGHT", "FLOWS", "PACKETS", "REPLIES", "SHARE"
    );
    for svc in &s.services {
        let _ = writeln!(
            out,
            "{:<28} {:<26} {:>7} {:>10} {:>12} {:>10} {:>7}",
            format!("{} ({})", svc.name, svc.mode),
            svc.vip,
            "",
            svc.counters.new_flows,
            svc.counters.packets,
            svc.counters.reply_packets,
            ""
        );
        let total: u64 = svc.backends.iter().map(|b| b.counters.new_flows).sum();
        for b in &svc.backends {
            let share = if total > 0 {
                format!("{:.1}%", 100.0 * b.counters.new_flows as f64 / total as f64)
            } else {
                "-".into()
            };
            let _ = writeln!(
                out,
                "  {:<26} {:<26} {:>7} {:>10} {:>12} {:>10} {:>7}  {}",
                "",
                b.address,
                b.weight,
                b.counters.new_flows,
                b.counters.packets,
                b.counters.reply_packets,
                share,
                health_cell(b.health.as_ref())
            );
        }
    }
    if !s.tables.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<28} {:>12} {:>12} {:>7}",
            "TABLE", "ENTRIES", "CAPACITY", "USED"
        );
        for t in &s.tables {
            let used = if t.capacity > 0 {
                format!("{:.1}%", 100.0 * t.entries as f64 / f64::from(t.capacity))
            } else {
                "-".into()
            };
            let _ = writeln!(
                out,
                "{:<28} {:>12} {:>12} {:>7}",
                t.table, t.entries, t.capacity, used
            );
        }
    }
    let nonzero: Vec<_> = s.reasons.iter().filter(|r| r.count > 0).collect();
    if !nonzero.is_empty() {
        let _ = writeln!(out, "\n{:<28} {:>12}", "VERDICT", "PACKETS");
        for r in nonzero {
            let _ = writeln!(
                out,
                "{:<28} {:>12}",
                format!("{}{}", if r.drop { "drop: " } else { "" }, r.reason),
                r.count
            );
        }
    }
    out
}

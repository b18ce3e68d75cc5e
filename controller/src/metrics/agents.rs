//! Per-node gauges from what the agents report over the link: presence,
//! applied version and refusals, and from each node's last heartbeat its
//! conntrack fill, SNAT ports, drop counters and backend health.
//!
//! Series labelled by something a heartbeat carries (an address, a drop
//! reason, a backend) come and go with it: [`AgentSeries`] remembers which
//! were set so that one missing from the next reports is removed, rather
//! than repeating its last value forever. A node keeps its series after its
//! agent disconnects (its report keeps the last heartbeat, and the agent
//! keeps forwarding with it); `agent_connected` says whether they are live.
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use ballast_proto::v1;
use prometheus::IntGaugeVec;

use super::Metrics;
use crate::link::{AgentReport, AgentReports};

/// Most `agent_backend_up` series one node exports. A node checking more
/// backends exports none of them (a partial set would make sums and
/// counts over the series wrong without saying so), as the agent's own
/// `/metrics` drops its per-backend series past its cap;
/// `agent_backends_down` counts the node's down backends whatever their
/// number, so alerts keep working.
pub const MAX_BACKEND_SERIES_PER_NODE: usize = 1_000;

/// Label values of every series [`record_agents`] set last time, per gauge.
#[derive(Debug, Default)]
pub struct AgentSeries(BTreeMap<&'static str, BTreeSet<Vec<String>>>);

/// Sets the per-node agent gauges from `reports`, removing the series
/// `series` remembers that the reports no longer carry.
pub fn record_agents(
    metrics: &Metrics,
    reports: &BTreeMap<String, AgentReport>,
    series: &mut AgentSeries,
) {
    let mut wanted: BTreeMap<&'static str, BTreeMap<Vec<String>, i64>> = BTreeMap::new();
    let mut set = |gauge: &'static str, labels: &[&str], value: i64| {
        wanted
            .entry(gauge)
            .or_default()
            .insert(labels.iter().map(|l| l.to_string()).collect(), value);
    };
    for (node, r) in reports {
        let node = node.as_str();
        set("connected", &[node], i64::from(r.connected));
        set("applied_version", &[node], clamp(r.applied_version));
        set("refused", &[node], i64::from(r.refused.is_some()));
        let Some(hb) = &r.heartbeat else { continue };
        if let Some(ct) = &hb.conntrack {
            set("conntrack_entries", &[node], clamp(ct.entries));
            set("conntrack_capacity", &[node], clamp(ct.capacity));
        }
        for s in &hb.snat {
            let address = ip_label(&s.address);
            set("snat_in_use", &[node, &address], i64::from(s.ports_in_use));
            set("snat_total", &[node, &address], i64::from(s.ports_total));
        }
        for d in &hb.drops {
            set("dropped", &[node, &d.reason], clamp(d.packets));
        }
        let down = hb.health.iter().filter(|h| !h.healthy).count();
        set("backends_down", &[node], clamp(down as u64));
        if hb.health.len() <= MAX_BACKEND_SERIES_PER_NODE {
            for h in &hb.health {
                let object = object_label(h.object.as_ref());
                let backend = backend_label(&h.address, h.port);
                set(
                    "backend_up",
                    &[node, &object, &backend],
                    i64::from(h.healthy),
                );
            }
        }
    }
    for (name, gauge) in gauges(metrics) {
        let now = wanted.remove(name).unwrap_or_default();
        let before = series.0.entry(name).or_default();
        for gone in before.iter().filter(|l| !now.contains_key(*l)) {
            let labels: Vec<&str> = gone.iter().map(String::as_str).collect();
            let _ = gauge.remove_label_values(&labels);
        }
        for (labels, value) in &now {
            let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
            gauge.with_label_values(&labels).set(*value);
        }
        *before = now.into_keys().collect();
    }
}

/// Every gauge `record_agents` writes, by the name it uses for it.
fn gauges(m: &Metrics) -> [(&'static str, &IntGaugeVec); 10] {
    [
        ("connected", &m.agent_connected),
        ("applied_version", &m.agent_applied_version),
        ("refused", &m.agent_refused),
        ("conntrack_entries", &m.agent_conntrack_entries),
        ("conntrack_capacity", &m.agent_conntrack_capacity),
        ("snat_in_use", &m.agent_snat_ports_in_use),
        ("snat_total", &m.agent_snat_ports_total),
        ("dropped", &m.agent_dropped_packets),
        ("backends_down", &m.agent_backends_down),
        ("backend_up", &m.agent_backend_up),
    ]
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// An address as the wire carries it (4 or 16 bytes); anything else is
/// shown as its length, so a bad report is visible but cannot mint
/// arbitrary label values.
fn ip_label(bytes: &[u8]) -> String {
    match ip_of(bytes) {
        Some(ip) => ip.to_string(),
        None => format!("invalid({} bytes)", bytes.len()),
    }
}

fn ip_of(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => Some(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?).into()),
        16 => Some(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?).into()),
        _ => None,
    }
}

/// "addr:port", IPv6 in brackets.
fn backend_label(address: &[u8], port: u32) -> String {
    match ip_of(address) {
        Some(IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
        _ => format!("{}:{port}", ip_label(address)),
    }
}

/// "Kind namespace/name", as the controller names objects elsewhere
/// (`ObjectKey`'s Display).
fn object_label(object: Option<&v1::ObjectRef>) -> String {
    let Some(o) = object else {
        return "unknown".into();
    };
    let kind = match v1::ObjectKind::try_from(o.kind) {
        Ok(v1::ObjectKind::VirtualServer) => "VirtualServer",
        Ok(v1::ObjectKind::Service) => "Service",
        _ => "Unknown",
    };
    format!("{kind} {}/{}", o.namespace, o.name)
}

/// Keeps the agent gauges current, at most once a second (heartbeats from
/// many agents would otherwise rewrite every series many times a second).
pub async fn export_agents(metrics: Arc<Metrics>, reports: AgentReports) {
    let mut changes = reports.changes();
    let mut series = AgentSeries::default();
    loop {
        record_agents(&metrics, &reports.snapshot(), &mut series);
        if changes.changed().await.is_err() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests;

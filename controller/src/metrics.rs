//! Prometheus metrics of the controller.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::link::{AgentReport, AgentReports};

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    pub registry: Registry,
    pub reconciles: IntCounter,
    pub reconcile_errors: IntCounter,
    pub reconcile_duration: Histogram,
    pub status_writes: IntCounter,
    pub leader: IntGauge,
    pub pool_allocated: IntGaugeVec,
    pub pool_total: IntGaugeVec,
    pub objects: IntGaugeVec,
    /// Per node, from the agents' link reports (see [`record_agents`]).
    pub agent_connected: IntGaugeVec,
    pub agent_applied_version: IntGaugeVec,
    pub agent_refused: IntGaugeVec,
    pub agent_conntrack_entries: IntGaugeVec,
    pub agent_conntrack_capacity: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry =
            Registry::new_custom(Some("ballast_controller".into()), None).expect("valid prefix");
        let m = Metrics {
            reconciles: IntCounter::new("reconciles_total", "Planning runs").unwrap(),
            reconcile_errors: IntCounter::new(
                "reconcile_errors_total",
                "Status writes or events that failed",
            )
            .unwrap(),
            reconcile_duration: Histogram::with_opts(
                HistogramOpts::new("reconcile_duration_seconds", "Planning + writing time")
                    .buckets(vec![
                        0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    ]),
            )
            .unwrap(),
            status_writes: IntCounter::new("status_writes_total", "Status patches sent").unwrap(),
            leader: IntGauge::new("leader", "1 while this replica holds the lease").unwrap(),
            pool_allocated: IntGaugeVec::new(
                Opts::new("pool_addresses_allocated", "Addresses in use per pool"),
                &["pool"],
            )
            .unwrap(),
            pool_total: IntGaugeVec::new(
                Opts::new("pool_addresses_total", "Addresses per pool (saturating)"),
                &["pool"],
            )
            .unwrap(),
            objects: IntGaugeVec::new(
                Opts::new("objects", "Objects by condition Ready status"),
                &["ready"],
            )
            .unwrap(),
            agent_connected: node_gauge(
                "agent_connected",
                "1 while the node's agent has a link stream to this controller",
            ),
            agent_applied_version: node_gauge(
                "agent_applied_version",
                "Version of the node state the agent last reported applied",
            ),
            agent_refused: node_gauge(
                "agent_refused",
                "1 when the agent refused the last version it was sent",
            ),
            agent_conntrack_entries: node_gauge(
                "agent_conntrack_entries",
                "Conntrack entries in use, from the agent's last heartbeat",
            ),
            agent_conntrack_capacity: node_gauge(
                "agent_conntrack_capacity",
                "Conntrack capacity, from the agent's last heartbeat",
            ),
            registry,
        };
        for c in [&m.reconciles, &m.reconcile_errors, &m.status_writes] {
            m.registry.register(Box::new(c.clone())).unwrap();
        }
        m.registry
            .register(Box::new(m.reconcile_duration.clone()))
            .unwrap();
        m.registry.register(Box::new(m.leader.clone())).unwrap();
        for g in [
            &m.pool_allocated,
            &m.pool_total,
            &m.objects,
            &m.agent_connected,
            &m.agent_applied_version,
            &m.agent_refused,
            &m.agent_conntrack_entries,
            &m.agent_conntrack_capacity,
        ] {
            m.registry.register(Box::new(g.clone())).unwrap();
        }
        m
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}

fn node_gauge(name: &str, help: &str) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), &["node"]).unwrap()
}

/// Sets the per-node agent gauges from `reports` (every node an agent ever
/// reported for keeps its series: a disconnected node reads connected 0).
pub fn record_agents(metrics: &Metrics, reports: &BTreeMap<String, AgentReport>) {
    let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    for (node, r) in reports {
        let labels = [node.as_str()];
        let set = |g: &IntGaugeVec, v: i64| g.with_label_values(&labels).set(v);
        set(&metrics.agent_connected, i64::from(r.connected));
        set(&metrics.agent_applied_version, clamp(r.applied_version));
        set(&metrics.agent_refused, i64::from(r.refused.is_some()));
        let conntrack = r.heartbeat.as_ref().and_then(|h| h.conntrack.as_ref());
        if let Some(ct) = conntrack {
            set(&metrics.agent_conntrack_entries, clamp(ct.entries));
            set(&metrics.agent_conntrack_capacity, clamp(ct.capacity));
        }
    }
}

/// Keeps the agent gauges current, at most once a second (heartbeats from
/// many agents would otherwise rewrite every series many times a second).
pub async fn export_agents(metrics: Arc<Metrics>, reports: AgentReports) {
    let mut changes = reports.changes();
    loop {
        record_agents(&metrics, &reports.snapshot());
        if changes.changed().await.is_err() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use ballast_proto::v1::{ConntrackUsage, Heartbeat};

    use super::*;

    #[test]
    fn agent_reports_become_per_node_gauges() {
        let report = AgentReport {
            connected: true,
            connected_at: SystemTime::UNIX_EPOCH,
            last_heard: SystemTime::UNIX_EPOCH,
            agent_version: "0.1.0".into(),
            applied_version: 7,
            applied_hash: vec![],
            refused: None,
            heartbeat: Some(Heartbeat {
                applied_version: 7,
                conntrack: Some(ConntrackUsage {
                    entries: 12,
                    capacity: 1000,
                }),
                ..Heartbeat::default()
            }),
        };
        let gone = AgentReport {
            connected: false,
            heartbeat: None,
            ..report.clone()
        };
        let reports = [("node-a".to_string(), report), ("node-b".to_string(), gone)];
        let metrics = Metrics::new();
        record_agents(&metrics, &reports.into_iter().collect());
        let text = metrics.render();
        for line in [
            r#"ballast_controller_agent_connected{node="node-a"} 1"#,
            r#"ballast_controller_agent_connected{node="node-b"} 0"#,
            r#"ballast_controller_agent_applied_version{node="node-a"} 7"#,
            r#"ballast_controller_agent_refused{node="node-a"} 0"#,
            r#"ballast_controller_agent_conntrack_entries{node="node-a"} 12"#,
            r#"ballast_controller_agent_conntrack_capacity{node="node-a"} 1000"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        assert!(
            !text.contains(r#"conntrack_entries{node="node-b"}"#),
            "{text}"
        );
    }
}

//! Prometheus `/metrics`: the data plane counters, read from the maps at
//! scrape time. Per-service series always; per-backend series only while
//! their number stays under a cap, so 10k services do not produce an
//! unbounded number of series.
use std::sync::Arc;

use prometheus::{
    Encoder, Gauge, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::inventory::BackendHealth;
use crate::stats::Snapshot;

pub const DEFAULT_MAX_BACKEND_SERIES: usize = 20_000;

fn counter(
    reg: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    reg.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge(
    reg: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntGaugeVec> {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
    reg.register(Box::new(g.clone()))?;
    Ok(g)
}

/// Flow-table occupancy, and the sweeper's work when it runs: one series
/// per table (two), whatever the traffic.
fn render_tables(reg: &Registry, s: &Snapshot) -> prometheus::Result<()> {
    if !s.tables.is_empty() {
        let entries = gauge(
            reg,
            "ballast_flow_table_entries",
            "Entries in use in conntrack (one per flow direction) and persist (as of the last sweep when the sweeper runs)",
            &["table"],
        )?;
        let capacity = gauge(
            reg,
            "ballast_flow_table_capacity",
            "Maximum entries of the flow table",
            &["table"],
        )?;
        for t in &s.tables {
            entries.with_label_values(&[t.table]).set(t.entries as i64);
            capacity
                .with_label_values(&[t.table])
                .set(i64::from(t.capacity));
        }
    }
    let Some(sw) = &s.sweeper else {
        return Ok(());
    };
    let swept = counter(
        reg,
        "ballast_flow_table_swept_total",
        "Expired entries deleted by the conntrack sweeper",
        &["table"],
    )?;
    let held = counter(
        reg,
        "ballast_flow_table_sweep_held_total",
        "Reply entries expired by their own timestamp but kept because their flow is alive",
        &["table"],
    )?;
    for (i, t) in crate::dataplane::sweeper::TABLES.iter().enumerate() {
        swept.with_label_values(&[*t]).inc_by(sw.tables[i].deleted);
        held.with_label_values(&[*t]).inc_by(sw.tables[i].held);
    }
    let sweeps = IntCounter::new("ballast_flow_table_sweeps_total", "Completed sweeps")?;
    reg.register(Box::new(sweeps.clone()))?;
    sweeps.inc_by(sw.sweeps);
    let failures = IntCounter::new(
        "ballast_flow_table_sweep_failures_total",
        "Sweeps that failed (map errors)",
    )?;
    reg.register(Box::new(failures.clone()))?;
    failures.inc_by(sw.failures);
    let last = Gauge::new(
        "ballast_flow_table_last_sweep_seconds",
        "Wall time of the last sweep, pauses included",
    )?;
    reg.register(Box::new(last.clone()))?;
    last.set(sw.last.as_ref().map_or(0.0, |r| r.elapsed.as_secs_f64()));
    Ok(())
}

/// Per-backend health, for backends of services with a health check; under
/// the same cap as the other per-backend series.
struct BackendHealthSeries {
    up: IntGaugeVec,
    transitions: IntCounterVec,
    last_failure: IntGaugeVec,
}

impl BackendHealthSeries {
    fn register(reg: &Registry) -> prometheus::Result<Self> {
        let bl = ["service", "backend"];
        Ok(Self {
            up: gauge(
                reg,
                "ballast_backend_up",
                "1 while the backend passes its health check (receives new flows), 0 while it is down",
                &bl,
            )?,
            transitions: counter(
                reg,
                "ballast_backend_health_transitions_total",
                "Up/down changes of the backend's health since the agent started probing it",
                &bl,
            )?,
            last_failure: gauge(
                reg,
                "ballast_backend_health_last_failure_info",
                "Always 1; the reason label says why the backend's latest failed probe failed",
                &["service", "backend", "reason"],
            )?,
        })
    }

    fn set(&self, l: &[&str; 2], h: &BackendHealth) {
        self.up.with_label_values(l).set(i64::from(h.up));
        self.transitions.with_label_values(l).inc_by(h.transitions);
        if let Some(reason) = &h.last_failure {
            self.last_failure
                .with_label_values(&[l[0], l[1], reason.as_str()])
                .set(1);
        }
    }
}

/// Renders a snapshot in the Prometheus text format.
pub fn render(s: &Snapshot, max_backend_series: usize) -> prometheus::Result<String> {
    let reg = Registry::new();
    let sl = ["service", "vip", "mode"];
    let packets = counter(
        &reg,
        "ballast_service_packets_total",
        "Packets client to backend",
        &sl,
    )?;
    let bytes = counter(
        &reg,
        "ballast_service_bytes_total",
        "Bytes client to backend",
        &sl,
    )?;
    let flows = counter(
        &reg,
        "ballast_service_new_flows_total",
        "New flows scheduled",
        &sl,
    )?;
    let rpackets = counter(
        &reg,
        "ballast_service_reply_packets_total",
        "Packets backend to client via the director",
        &sl,
    )?;
    let rbytes = counter(
        &reg,
        "ballast_service_reply_bytes_total",
        "Bytes backend to client via the director",
        &sl,
    )?;
    let bl = ["service", "backend"];
    let bpackets = counter(
        &reg,
        "ballast_backend_packets_total",
        "Packets sent to the backend",
        &bl,
    )?;
    let bflows = counter(
        &reg,
        "ballast_backend_new_flows_total",
        "New flows sent to the backend",
        &bl,
    )?;
    let health = BackendHealthSeries::register(&reg)?;
    let verdicts = counter(
        &reg,
        "ballast_packets_verdict_total",
        "Packets by verdict reason (drops carry drop=true)",
        &["reason", "drop"],
    )?;

    let backend_series: usize = s.services.iter().map(|x| x.backends.len()).sum();
    for svc in &s.services {
        let l = [svc.name.as_str(), svc.vip.as_str(), svc.mode.as_str()];
        packets.with_label_values(&l).inc_by(svc.counters.packets);
        bytes.with_label_values(&l).inc_by(svc.counters.bytes);
        flows.with_label_values(&l).inc_by(svc.counters.new_flows);
        rpackets
            .with_label_values(&l)
            .inc_by(svc.counters.reply_packets);
        rbytes
            .with_label_values(&l)
            .inc_by(svc.counters.reply_bytes);
        if backend_series <= max_backend_series {
            for b in &svc.backends {
                let l = [svc.name.as_str(), b.address.as_str()];
                bpackets.with_label_values(&l).inc_by(b.counters.packets);
                bflows.with_label_values(&l).inc_by(b.counters.new_flows);
                if let Some(h) = &b.health {
                    health.set(&l, h);
                }
            }
        }
    }
    for r in &s.reasons {
        verdicts
            .with_label_values(&[r.reason, if r.drop { "true" } else { "false" }])
            .inc_by(r.count);
    }
    render_tables(&reg, s)?;
    if let Some(standby) = &s.standby {
        crate::announce::l2::counters::render(&reg, standby)?;
    }
    let mut buf = Vec::new();
    TextEncoder::new().encode(&reg.gather(), &mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Serves `/metrics` (and `/healthz`; any other path is a 404) on `listener`
/// until the task is dropped. `source` produces a fresh snapshot per scrape.
/// The caller binds, so that a port in use stops the agent at start-up
/// instead of leaving it running unobservable.
pub async fn serve(
    listener: tokio::net::TcpListener,
    source: Arc<dyn Fn() -> anyhow::Result<Snapshot> + Send + Sync>,
    max_backend_series: usize,
) -> anyhow::Result<()> {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let source = source.clone();
                async move {
                    match source().and_then(|s| render(&s, max_backend_series).map_err(Into::into))
                    {
                        // The exposition format's own media type, not axum's
                        // default text/plain for a String.
                        Ok(body) => (
                            StatusCode::OK,
                            [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
                            body,
                        )
                            .into_response(),
                        Err(e) => {
                            (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}\n")).into_response()
                        }
                    }
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }));
    axum::serve(listener, app).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::maps::FlowTable;
    use crate::dataplane::sweeper::{SweepReport, SweepTotals, TableSweep};
    use crate::stats::{BackendStats, Counters, ReasonCount, ServiceStats};

    fn snapshot(services: usize, backends: usize) -> Snapshot {
        let c = Counters {
            packets: 10,
            bytes: 1000,
            new_flows: 2,
            reply_packets: 8,
            reply_bytes: 800,
        };
        Snapshot {
            services: (0..services)
                .map(|i| ServiceStats {
                    name: format!("ns/svc{i}:http"),
                    vip: format!("203.0.113.10:{}/TCP", 1000 + i),
                    mode: "FullNAT".into(),
                    counters: c,
                    backends: (0..backends)
                        .map(|b| BackendStats {
                            address: format!("198.51.100.{b}:8080"),
                            weight: 1,
                            counters: c,
                            health: None,
                        })
                        .collect(),
                })
                .collect(),
            reasons: vec![ReasonCount {
                reason: "no_backend",
                drop: true,
                count: 3,
            }],
            tables: Vec::new(),
            sweeper: None,
            standby: None,
        }
    }

    #[test]
    fn renders_service_backend_and_verdict_series() {
        let text = render(&snapshot(2, 2), 100).unwrap();
        assert!(text.contains(r#"ballast_service_packets_total{mode="FullNAT",service="ns/svc0:http",vip="203.0.113.10:1000/TCP"} 10"#), "{text}");
        assert!(text.contains(r#"ballast_backend_new_flows_total{backend="198.51.100.1:8080",service="ns/svc1:http"} 2"#));
        assert!(
            text.contains(r#"ballast_packets_verdict_total{drop="true",reason="no_backend"} 3"#)
        );
    }

    #[test]
    fn backend_health_series() {
        let mut s = snapshot(1, 3);
        s.services[0].backends[0].health = Some(BackendHealth {
            check: "tcp".into(),
            up: false,
            last_failure: Some("connect: connection refused".into()),
            transitions: 3,
        });
        s.services[0].backends[1].health = Some(BackendHealth {
            check: "tcp".into(),
            up: true,
            last_failure: None,
            transitions: 0,
        });
        let text = render(&s, 100).unwrap();
        for line in [
            r#"ballast_backend_up{backend="198.51.100.0:8080",service="ns/svc0:http"} 0"#,
            r#"ballast_backend_up{backend="198.51.100.1:8080",service="ns/svc0:http"} 1"#,
            r#"ballast_backend_health_transitions_total{backend="198.51.100.0:8080",service="ns/svc0:http"} 3"#,
            r#"ballast_backend_health_last_failure_info{backend="198.51.100.0:8080",reason="connect: connection refused",service="ns/svc0:http"} 1"#,
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        assert!(
            !text.contains(r#"ballast_backend_up{backend="198.51.100.2:8080""#),
            "no check, no health series"
        );
        assert_eq!(
            text.matches("ballast_backend_health_last_failure_info{")
                .count(),
            1
        );
    }

    #[test]
    fn per_backend_series_are_capped() {
        let text = render(&snapshot(10, 3), 20).unwrap();
        assert!(
            !text.contains("ballast_backend_packets_total{"),
            "30 backend series exceed the cap of 20"
        );
        assert_eq!(text.matches("ballast_service_packets_total{").count(), 10);
    }

    #[test]
    fn flow_tables_and_sweeper_series() {
        let mut s = snapshot(1, 1);
        let text = render(&s, 100).unwrap();
        assert!(!text.contains("ballast_flow_table"), "no tables, no series");

        s.tables = ["conntrack", "persist"]
            .iter()
            .enumerate()
            .map(|(i, t)| FlowTable {
                table: t,
                entries: 10 * i as u64,
                capacity: 1000,
            })
            .collect();
        let text = render(&s, 100).unwrap();
        assert!(
            text.contains(r#"ballast_flow_table_entries{table="persist"} 10"#),
            "{text}"
        );
        assert!(text.contains(r#"ballast_flow_table_capacity{table="persist"} 1000"#));
        assert!(
            !text.contains("ballast_flow_table_swept_total"),
            "no sweeper, no sweep series"
        );

        let t = |deleted, held| TableSweep {
            deleted,
            held,
            ..Default::default()
        };
        s.sweeper = Some(SweepTotals {
            sweeps: 4,
            failures: 1,
            tables: [t(7, 2), t(0, 0)],
            last: Some(SweepReport {
                elapsed: std::time::Duration::from_millis(1500),
                ..Default::default()
            }),
        });
        let text = render(&s, 100).unwrap();
        for line in [
            r#"ballast_flow_table_swept_total{table="conntrack"} 7"#,
            r#"ballast_flow_table_swept_total{table="persist"} 0"#,
            r#"ballast_flow_table_sweep_held_total{table="conntrack"} 2"#,
            "ballast_flow_table_sweeps_total 4",
            "ballast_flow_table_sweep_failures_total 1",
            "ballast_flow_table_last_sweep_seconds 1.5",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        // Constant cardinality: one series per table, however many flows.
        assert_eq!(text.matches("ballast_flow_table_swept_total{").count(), 2);
    }
}

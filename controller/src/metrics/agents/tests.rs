use std::time::SystemTime;

use ballast_proto::v1::{
    BackendHealth, ConntrackUsage, DropCounter, Heartbeat, ObjectKind, ObjectRef, SnatUsage,
};

use super::*;

fn report(heartbeat: Option<Heartbeat>) -> AgentReport {
    AgentReport {
        connected: true,
        connected_at: SystemTime::UNIX_EPOCH,
        last_heard: SystemTime::UNIX_EPOCH,
        agent_version: "0.1.0".into(),
        applied_version: 7,
        applied_hash: vec![],
        refused: None,
        heartbeat,
    }
}

fn web() -> Option<ObjectRef> {
    Some(ObjectRef {
        kind: ObjectKind::VirtualServer as i32,
        namespace: "default".into(),
        name: "web".into(),
    })
}

fn backend(address: Vec<u8>, port: u32, healthy: bool) -> BackendHealth {
    BackendHealth {
        object: web(),
        address,
        port,
        healthy,
        since_ms: 0,
        last_error: String::new(),
    }
}

fn snat(last: u8, in_use: u32) -> SnatUsage {
    SnatUsage {
        address: vec![198, 51, 100, last],
        ports_in_use: in_use,
        ports_total: 10_000,
    }
}

fn drop(reason: &str, packets: u64) -> DropCounter {
    DropCounter {
        reason: reason.into(),
        packets,
    }
}

fn heartbeat() -> Heartbeat {
    Heartbeat {
        applied_version: 7,
        conntrack: Some(ConntrackUsage {
            entries: 12,
            capacity: 1000,
        }),
        snat: vec![snat(3, 40), snat(4, 0)],
        health: vec![
            backend(vec![10, 0, 0, 1], 8080, true),
            backend(vec![10, 0, 0, 2], 8080, false),
            backend(
                "2001:db8::1".parse::<Ipv6Addr>().unwrap().octets().to_vec(),
                443,
                true,
            ),
        ],
        drops: vec![drop("no_backend", 5), drop("snat_exhausted", 2)],
    }
}

/// The agent series of the rendered text, without comments, sorted.
fn agent_series(metrics: &Metrics) -> Vec<String> {
    let mut lines: Vec<String> = metrics
        .render()
        .lines()
        .filter(|l| l.starts_with("ballast_controller_agent_"))
        .map(|l| l.strip_prefix("ballast_controller_agent_").unwrap().into())
        .collect();
    lines.sort();
    lines
}

fn record(metrics: &Metrics, series: &mut AgentSeries, reports: Vec<(&str, AgentReport)>) {
    let reports = reports
        .into_iter()
        .map(|(n, r)| (n.to_string(), r))
        .collect();
    record_agents(metrics, &reports, series);
}

#[test]
fn a_heartbeat_becomes_exactly_these_series() {
    let metrics = Metrics::new();
    let mut series = AgentSeries::default();
    let gone = AgentReport {
        connected: false,
        ..report(None)
    };
    record(
        &metrics,
        &mut series,
        vec![("node-a", report(Some(heartbeat()))), ("node-b", gone)],
    );
    assert_eq!(
        agent_series(&metrics),
        [
            r#"applied_version{node="node-a"} 7"#,
            r#"applied_version{node="node-b"} 7"#,
            r#"backend_up{backend="10.0.0.1:8080",node="node-a",object="VirtualServer default/web"} 1"#,
            r#"backend_up{backend="10.0.0.2:8080",node="node-a",object="VirtualServer default/web"} 0"#,
            r#"backend_up{backend="[2001:db8::1]:443",node="node-a",object="VirtualServer default/web"} 1"#,
            r#"backends_down{node="node-a"} 1"#,
            r#"connected{node="node-a"} 1"#,
            r#"connected{node="node-b"} 0"#,
            r#"conntrack_capacity{node="node-a"} 1000"#,
            r#"conntrack_entries{node="node-a"} 12"#,
            r#"dropped_packets{node="node-a",reason="no_backend"} 5"#,
            r#"dropped_packets{node="node-a",reason="snat_exhausted"} 2"#,
            r#"refused{node="node-a"} 0"#,
            r#"refused{node="node-b"} 0"#,
            r#"snat_ports_in_use{address="198.51.100.3",node="node-a"} 40"#,
            r#"snat_ports_in_use{address="198.51.100.4",node="node-a"} 0"#,
            r#"snat_ports_total{address="198.51.100.3",node="node-a"} 10000"#,
            r#"snat_ports_total{address="198.51.100.4",node="node-a"} 10000"#,
        ]
    );
}

#[test]
fn series_a_later_heartbeat_no_longer_carries_are_removed() {
    let metrics = Metrics::new();
    let mut series = AgentSeries::default();
    record(
        &metrics,
        &mut series,
        vec![("node-a", report(Some(heartbeat())))],
    );
    // The agent restarted: no sweep yet (no conntrack, no SNAT), one
    // backend left, one drop reason.
    let later = Heartbeat {
        conntrack: None,
        snat: vec![],
        health: vec![backend(vec![10, 0, 0, 2], 8080, true)],
        drops: vec![drop("no_backend", 1)],
        ..heartbeat()
    };
    record(&metrics, &mut series, vec![("node-a", report(Some(later)))]);
    assert_eq!(
        agent_series(&metrics),
        [
            r#"applied_version{node="node-a"} 7"#,
            r#"backend_up{backend="10.0.0.2:8080",node="node-a",object="VirtualServer default/web"} 1"#,
            r#"backends_down{node="node-a"} 0"#,
            r#"connected{node="node-a"} 1"#,
            r#"dropped_packets{node="node-a",reason="no_backend"} 1"#,
            r#"refused{node="node-a"} 0"#,
        ]
    );
    // A node that leaves the reports loses every series.
    record(&metrics, &mut series, vec![]);
    assert_eq!(agent_series(&metrics), Vec::<String>::new());
}

#[test]
fn past_the_cap_a_node_exports_no_backend_series_but_still_counts_the_down_ones() {
    let metrics = Metrics::new();
    let mut series = AgentSeries::default();
    let many = |n: usize| Heartbeat {
        health: (0..n)
            .map(|i| {
                backend(
                    vec![10, 0, (i / 256) as u8, (i % 256) as u8],
                    80,
                    i % 10 != 0,
                )
            })
            .collect(),
        ..heartbeat()
    };
    let count = |metrics: &Metrics, prefix: &str| {
        agent_series(metrics)
            .iter()
            .filter(|l| l.starts_with(prefix))
            .count()
    };
    record(
        &metrics,
        &mut series,
        vec![("node-a", report(Some(many(MAX_BACKEND_SERIES_PER_NODE))))],
    );
    assert_eq!(count(&metrics, "backend_up{"), MAX_BACKEND_SERIES_PER_NODE);
    record(
        &metrics,
        &mut series,
        vec![(
            "node-a",
            report(Some(many(MAX_BACKEND_SERIES_PER_NODE + 1))),
        )],
    );
    assert_eq!(count(&metrics, "backend_up{"), 0);
    assert!(
        agent_series(&metrics).contains(&r#"backends_down{node="node-a"} 101"#.to_string()),
        "{:?}",
        agent_series(&metrics)
    );
}

#[test]
fn malformed_addresses_and_objects_are_labelled_without_their_content() {
    assert_eq!(ip_label(&[1, 2, 3]), "invalid(3 bytes)");
    assert_eq!(backend_label(&[], 80), "invalid(0 bytes):80");
    assert_eq!(object_label(None), "unknown");
    let odd = ObjectRef {
        kind: 99,
        namespace: "ns".into(),
        name: "x".into(),
    };
    assert_eq!(object_label(Some(&odd)), "Unknown ns/x");
    let dns = ObjectRef {
        kind: ObjectKind::Service as i32,
        ..odd
    };
    assert_eq!(object_label(Some(&dns)), "Service ns/x");
}

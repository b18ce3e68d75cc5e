//! Prometheus metrics of the controller.

mod agents;

pub use agents::{AgentSeries, MAX_BACKEND_SERIES_PER_NODE, export_agents, record_agents};

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    pub registry: Registry,
    pub reconciles: IntCounter,
    /// Planning runs that only re-resolved the objects of changed
    /// EndpointSlices (a subset of `reconciles`).
    pub endpoint_replans: IntCounter,
    pub reconcile_errors: IntCounter,
    pub reconcile_duration: Histogram,
    pub status_writes: IntCounter,
    /// Events whose status is stored, waiting for the Event task.
    pub events_queued: IntGauge,
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
    pub agent_snat_ports_in_use: IntGaugeVec,
    pub agent_snat_ports_total: IntGaugeVec,
    /// A gauge although the agent's figure is a counter: the controller
    /// only learns the agent's running total, which starts again from zero
    /// when the data plane is recreated. A gauge mirrors that total as it
    /// is (a client-side counter cannot be set, nor go down); PromQL's
    /// `rate()` and `increase()` work on it as on any counter, resets
    /// included.
    pub agent_dropped_packets: IntGaugeVec,
    pub agent_backend_up: IntGaugeVec,
    pub agent_backends_down: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry =
            Registry::new_custom(Some("ballast_controller".into()), None).expect("valid prefix");
        let m = Metrics {
            reconciles: IntCounter::new("reconciles_total", "Planning runs").unwrap(),
            endpoint_replans: IntCounter::new(
                "endpoint_replans_total",
                "Planning runs that re-resolved only the objects using changed EndpointSlices",
            )
            .unwrap(),
            reconcile_errors: IntCounter::new(
                "reconcile_errors_total",
                "Status writes or events that failed",
            )
            .unwrap(),
            reconcile_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "reconcile_duration_seconds",
                    "Planning time (status writes run apart)",
                )
                .buckets(vec![
                    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ]),
            )
            .unwrap(),
            status_writes: IntCounter::new("status_writes_total", "Status patches sent").unwrap(),
            events_queued: IntGauge::new(
                "events_queued",
                "Objects whose Events wait to be recorded (after their status write)",
            )
            .unwrap(),
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
            agent_snat_ports_in_use: IntGaugeVec::new(
                Opts::new(
                    "agent_snat_ports_in_use",
                    "SNAT ports of the address held by live flows towards its busiest \
                     backend, from the agent's last heartbeat",
                ),
                &["node", "address"],
            )
            .unwrap(),
            agent_snat_ports_total: IntGaugeVec::new(
                Opts::new(
                    "agent_snat_ports_total",
                    "SNAT ports the address may use (the port range), from the agent's \
                     last heartbeat",
                ),
                &["node", "address"],
            )
            .unwrap(),
            agent_dropped_packets: IntGaugeVec::new(
                Opts::new(
                    "agent_dropped_packets",
                    "Packets the node's data plane dropped since it was created, per \
                     reason: the agent's counter mirrored (use rate() as on a counter)",
                ),
                &["node", "reason"],
            )
            .unwrap(),
            agent_backend_up: IntGaugeVec::new(
                Opts::new(
                    "agent_backend_up",
                    format!(
                        "1 when the node's health check passes for the backend, 0 when it \
                         is taken out of new flows (none for a node checking more than \
                         {MAX_BACKEND_SERIES_PER_NODE} backends)"
                    ),
                ),
                &["node", "object", "backend"],
            )
            .unwrap(),
            agent_backends_down: node_gauge(
                "agent_backends_down",
                "Health-checked backends the node takes out of new flows",
            ),
            registry,
        };
        for c in [
            &m.reconciles,
            &m.endpoint_replans,
            &m.reconcile_errors,
            &m.status_writes,
        ] {
            m.registry.register(Box::new(c.clone())).unwrap();
        }
        m.registry
            .register(Box::new(m.reconcile_duration.clone()))
            .unwrap();
        m.registry.register(Box::new(m.leader.clone())).unwrap();
        m.registry
            .register(Box::new(m.events_queued.clone()))
            .unwrap();
        for g in [
            &m.pool_allocated,
            &m.pool_total,
            &m.objects,
            &m.agent_connected,
            &m.agent_applied_version,
            &m.agent_refused,
            &m.agent_conntrack_entries,
            &m.agent_conntrack_capacity,
            &m.agent_snat_ports_in_use,
            &m.agent_snat_ports_total,
            &m.agent_dropped_packets,
            &m.agent_backend_up,
            &m.agent_backends_down,
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

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

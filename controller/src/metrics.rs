//! Prometheus metrics of the controller.

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
            registry,
        };
        for c in [&m.reconciles, &m.reconcile_errors, &m.status_writes] {
            m.registry.register(Box::new(c.clone())).unwrap();
        }
        m.registry
            .register(Box::new(m.reconcile_duration.clone()))
            .unwrap();
        m.registry.register(Box::new(m.leader.clone())).unwrap();
        for g in [&m.pool_allocated, &m.pool_total, &m.objects] {
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

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

//! What the agent reports about its node between versions (the link's
//! heartbeat): flow-table fill, SNAT ports in use, health verdicts, drop
//! counters. Gathered by the running core from what it already keeps: the
//! sweeper's last count of the tables and of SNAT ports (no extra walk per
//! report), the health checker's verdicts,
//! the data plane's per-CPU reason counters.
use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::report::ServiceRef;
use crate::abi::{self, SvcKey};
use crate::dataplane::DesiredService;
use crate::dataplane::director::NodeSettings;
use crate::health::{ServiceChecks, Verdicts, target_of};

/// One report.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Usage {
    /// The version the data plane forwards with.
    pub applied_version: u64,
    /// Conntrack entries and capacity, as the sweeper last counted them;
    /// None before its first pass (or with sweeping off).
    pub conntrack: Option<(u64, u64)>,
    /// Per configured SNAT address, in configuration order, from the
    /// sweeper's last pass; None before its first pass (or with sweeping
    /// off), as `conntrack`.
    pub snat: Option<Vec<SnatUsage>>,
    /// One per (object, backend address, port) of every health-checked
    /// service, in object order.
    pub health: Vec<BackendVerdict>,
    /// Packets dropped per reason (drop reasons only), summed over CPUs.
    pub drops: Vec<(&'static str, u64)>,
}

/// SNAT port usage of one SNAT address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnatUsage {
    pub address: Ipv4Addr,
    /// Ports held by live flows towards the address's busiest destination
    /// (sweeper/snat.rs says why that one).
    pub in_use: u32,
    /// The SNAT port range's size.
    pub total: u32,
}

/// Every SNAT address of `settings` with the ports the sweeper counted
/// (`counted`, by address; an address it did not see has none in use, and
/// one no longer configured is left out).
pub fn snat(settings: &NodeSettings, counted: &BTreeMap<Ipv4Addr, u32>) -> Vec<SnatUsage> {
    let (lo, hi) = settings.snat_ports;
    let total = (u32::from(hi) + 1).saturating_sub(u32::from(lo));
    settings
        .snat_addrs
        .iter()
        .map(|&address| SnatUsage {
            address,
            in_use: counted.get(&address).copied().unwrap_or(0),
            total,
        })
        .collect()
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendVerdict {
    /// The object as the applied version names it.
    pub object: String,
    pub address: Ipv4Addr,
    pub port: u16,
    pub healthy: bool,
    /// Since the agent first reported this verdict.
    pub since: Duration,
    pub last_error: Option<String>,
}

/// When each backend's verdict was first seen as it is now, so that a
/// report says how long a backend has been down (heartbeat granularity).
#[derive(Debug, Default)]
pub struct VerdictAges(HashMap<(String, Ipv4Addr, u16), (bool, Instant)>);

impl VerdictAges {
    /// The verdicts of every checked backend of `wanted`, aged.
    pub fn report<'a>(
        &mut self,
        wanted: impl IntoIterator<Item = &'a DesiredService>,
        checks: &ServiceChecks,
        names: &BTreeMap<SvcKey, ServiceRef>,
        verdicts: &Verdicts,
        now: Instant,
    ) -> Vec<BackendVerdict> {
        let mut out: BTreeMap<(String, Ipv4Addr, u16), (bool, Option<String>)> = BTreeMap::new();
        for d in wanted {
            let Some(check) = checks.get(&(d.vip, d.port, d.proto)) else {
                continue;
            };
            let Some(name) = names.get(&d.key()) else {
                continue;
            };
            for b in &d.backends {
                let v = verdicts.get(&target_of(b.addr, b.port, check));
                // Not probed yet: UP (see health::state), no error.
                let healthy = v.is_none_or(|h| h.up);
                let error = v.and_then(|h| h.last_failure.clone()).filter(|_| !healthy);
                out.insert((name.object.clone(), b.addr, b.port), (healthy, error));
            }
        }
        self.0.retain(|k, _| out.contains_key(k));
        out.into_iter()
            .map(|(key, (healthy, last_error))| {
                let seen = self.0.entry(key.clone()).or_insert((healthy, now));
                if seen.0 != healthy {
                    *seen = (healthy, now);
                }
                BackendVerdict {
                    object: key.0,
                    address: key.1,
                    port: key.2,
                    healthy,
                    since: now.saturating_duration_since(seen.1),
                    last_error,
                }
            })
            .collect()
    }
}

/// The drop reasons among the data plane's counters, by name.
pub fn drops(counters: &[u64]) -> Vec<(&'static str, u64)> {
    counters
        .iter()
        .zip(abi::REASONS)
        .filter(|(_, (_, drop))| *drop)
        .map(|(&n, (name, _))| (name, n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Health;
    use ballast_api::{HealthCheckSpec, Probe, Protocol};

    const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);

    fn check() -> HealthCheckSpec {
        HealthCheckSpec {
            probe: Probe::Tcp,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            healthy_threshold: 1,
            unhealthy_threshold: 1,
        }
    }

    #[test]
    fn verdicts_are_named_by_object_and_aged_from_their_last_change() {
        let b1 = Ipv4Addr::new(198, 51, 100, 1);
        let b2 = Ipv4Addr::new(198, 51, 100, 2);
        let d = DesiredService::new(
            "default/web:80",
            (VIP, 80, 6),
            abi::MODE_FULLNAT,
            8080,
            [(b1, 1), (b2, 1)],
        );
        let checks = [((VIP, 80, 6), check())].into();
        let names = [(
            d.key(),
            ServiceRef {
                object: "default/web".into(),
                vip: VIP,
                port: 80,
                protocol: Protocol::Tcp,
            },
        )]
        .into();
        let down = Health {
            up: false,
            last_failure: Some("connection refused".into()),
            ..Health::new()
        };
        let verdicts: Verdicts = [(target_of(b2, 8080, &check()), down)].into();
        let mut ages = VerdictAges::default();
        let t0 = Instant::now();
        let first = ages.report(std::slice::from_ref(&d), &checks, &names, &verdicts, t0);
        assert_eq!(first.len(), 2);
        assert_eq!(
            (
                first[0].address,
                first[0].healthy,
                first[0].last_error.as_deref()
            ),
            (b1, true, None)
        );
        assert_eq!(
            (
                first[1].address,
                first[1].port,
                first[1].healthy,
                first[1].last_error.as_deref()
            ),
            (b2, 8080, false, Some("connection refused"))
        );
        assert_eq!(first[1].object, "default/web");
        let later = ages.report(
            std::slice::from_ref(&d),
            &checks,
            &names,
            &verdicts,
            t0 + Duration::from_secs(3),
        );
        assert_eq!(later[1].since, Duration::from_secs(3));
        // b2 recovers: its age restarts.
        let up: Verdicts = HashMap::new();
        let recovered = ages.report(
            std::slice::from_ref(&d),
            &checks,
            &names,
            &up,
            t0 + Duration::from_secs(4),
        );
        assert!(recovered[1].healthy);
        assert_eq!(recovered[1].since, Duration::ZERO);
    }

    #[test]
    fn every_configured_snat_address_is_reported_with_the_port_range_size() {
        let a = Ipv4Addr::new(198, 51, 100, 3);
        let b = Ipv4Addr::new(198, 51, 100, 4);
        let settings = NodeSettings {
            snat_addrs: vec![b, a],
            snat_ports: (20_000, 29_999),
            ..NodeSettings::default()
        };
        // Counted: a, and an address no longer configured.
        let counted = BTreeMap::from([(a, 7), (Ipv4Addr::new(198, 51, 100, 9), 3)]);
        assert_eq!(
            snat(&settings, &counted),
            [
                SnatUsage {
                    address: b,
                    in_use: 0,
                    total: 10_000
                },
                SnatUsage {
                    address: a,
                    in_use: 7,
                    total: 10_000
                },
            ]
        );
        let one_port = NodeSettings {
            snat_ports: (65_535, 65_535),
            ..settings
        };
        assert_eq!(snat(&one_port, &counted)[1].total, 1);
    }

    #[test]
    fn only_drop_reasons_are_reported() {
        let counters: Vec<u64> = (0..abi::REASONS.len() as u64).collect();
        let d = drops(&counters);
        assert!(!d.is_empty());
        for (name, n) in d {
            let (i, (_, drop)) = abi::REASONS
                .iter()
                .enumerate()
                .find(|(_, (r, _))| *r == name)
                .unwrap();
            assert!(drop, "{name} is not a drop reason");
            assert_eq!(n, i as u64);
        }
    }
}

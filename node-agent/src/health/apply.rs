//! Pure: what health checking means for the desired state. Which targets
//! to probe, and the desired services with every DOWN backend at weight 0.
//!
//! Weight 0 is the data plane's drain: the backend's slot stays live, so its
//! established flows keep being forwarded, and the Maglev ring is rebuilt
//! without it, so it gets no new flow. A DOWN backend is exactly that.
//!
//! When every backend of a service is DOWN, the service has no backend for
//! new flows and the data plane refuses new connections at once (TCP RST,
//! ICMP port unreachable for UDP), as it does for a service with no usable
//! backend. Ballast fails closed: it does not keep the last backends in
//! rotation as keepalived does, nor fail open to all of them, because both
//! send clients to backends known to be down, and a refused connection is
//! what lets a client retry elsewhere promptly.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddr};

use ballast_api::{HealthCheckSpec, Probe};

use super::checker::{Target, Verdicts};
use super::state::Health;
use crate::dataplane::DesiredService;
use crate::inventory::{self, BackendHealth, InventoryService};

/// The data plane's service key: (VIP, port, IP protocol number).
pub type ServiceKey = (Ipv4Addr, u16, u8);

/// The health check guarding each service, by service key; a service not
/// in it is not checked (all its backends count as UP).
pub type ServiceChecks = HashMap<ServiceKey, HealthCheckSpec>;

pub fn service_key(d: &DesiredService) -> ServiceKey {
    (d.vip, d.port, d.proto)
}

pub fn target_of(addr: Ipv4Addr, port: u16, check: &HealthCheckSpec) -> Target {
    Target {
        addr: SocketAddr::from((addr, port)),
        check: check.clone(),
    }
}

/// Every (backend, target port, check) to probe; a backend shared by
/// several services with the same check appears once.
pub fn targets(desired: &[DesiredService], checks: &ServiceChecks) -> BTreeSet<Target> {
    let mut out = BTreeSet::new();
    for d in desired {
        let Some(check) = checks.get(&service_key(d)) else {
            continue;
        };
        for b in &d.backends {
            out.insert(target_of(b.addr, b.port, check));
        }
    }
    out
}

/// `desired` with every backend whose target is DOWN at weight 0. A target
/// without a verdict (not probed yet) counts as UP, like a new backend.
/// With no backend DOWN, `desired` itself: no copy of 10k services on a
/// reload.
pub fn apply_health<'a>(
    desired: &'a [DesiredService],
    checks: &ServiceChecks,
    verdicts: &Verdicts,
) -> Cow<'a, [DesiredService]> {
    if verdicts.values().all(|h| h.up) {
        return Cow::Borrowed(desired);
    }
    desired
        .iter()
        .map(|d| {
            let mut d = d.clone();
            if let Some(check) = checks.get(&service_key(&d)) {
                for b in &mut d.backends {
                    let down = verdicts
                        .get(&target_of(b.addr, b.port, check))
                        .is_some_and(|h| !h.up);
                    if down {
                        b.weight = 0;
                    }
                }
            }
            d
        })
        .collect()
}

/// One checked service with every backend whose target is DOWN at weight
/// 0; None when none is (then it is programmed as it is).
pub fn apply_health_one(
    d: &DesiredService,
    check: &HealthCheckSpec,
    verdicts: &Verdicts,
) -> Option<DesiredService> {
    let down = |b: &crate::dataplane::DesiredBackend| {
        b.weight > 0
            && verdicts
                .get(&target_of(b.addr, b.port, check))
                .is_some_and(|h| !h.up)
    };
    if !d.backends.iter().any(down) {
        return None;
    }
    let mut out = d.clone();
    for b in &mut out.backends {
        if down(b) {
            b.weight = 0;
        }
    }
    Some(out)
}

/// Names of the services that have backends for new flows in `wanted` but
/// none left in `effective` (all DOWN), for a warning.
pub fn without_backends<'a>(
    wanted: &'a [DesiredService],
    effective: &[DesiredService],
) -> Vec<&'a str> {
    wanted
        .iter()
        .zip(effective)
        .filter(|(w, e)| {
            w.backends.iter().any(|b| b.weight > 0) && e.backends.iter().all(|b| b.weight == 0)
        })
        .map(|(w, _)| w.name.as_str())
        .collect()
}

/// How a check is named in `stats`: `tcp` or `http GET /path -> 200`.
pub fn describe(check: &HealthCheckSpec) -> String {
    match &check.probe {
        Probe::Tcp => "tcp".into(),
        Probe::Http {
            path,
            expect_status,
        } => format!("http GET {path} -> {expect_status}"),
        Probe::Udp {
            expect: None,
            payload,
        } => format!("udp ({} bytes, no port unreachable)", payload.len()),
        Probe::Udp {
            expect: Some(e),
            payload,
        } => format!(
            "udp ({} bytes) -> {:?}",
            payload.len(),
            String::from_utf8_lossy(e)
        ),
    }
}

/// Adds each checked backend's health to an inventory built from the same
/// desired services.
pub fn annotate(inv: &mut [InventoryService], checks: &ServiceChecks, verdicts: &Verdicts) {
    // Keyed as the inventory names services (protocol as a word).
    let by_name: HashMap<(Ipv4Addr, u16, String), &HealthCheckSpec> = checks
        .iter()
        .map(|(&(vip, port, proto), c)| ((vip, port, inventory::proto_name(proto)), c))
        .collect();
    for svc in inv {
        let Some(check) = by_name.get(&(svc.vip, svc.port, svc.protocol.clone())) else {
            continue;
        };
        for b in &mut svc.backends {
            let h = verdicts
                .get(&target_of(b.address, b.port, check))
                .cloned()
                .unwrap_or_else(Health::new);
            b.health = Some(BackendHealth {
                check: describe(check),
                up: h.up,
                last_failure: h.last_failure,
                transitions: h.transitions,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi;
    use std::time::Duration;

    const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);

    fn backend(i: u8) -> Ipv4Addr {
        Ipv4Addr::new(198, 51, 100, 10 + i)
    }

    fn svc(port: u16, target_port: u16, backends: &[(u8, u32)]) -> DesiredService {
        DesiredService::new(
            format!("default/web:{port}"),
            (VIP, port, 6),
            abi::MODE_FULLNAT,
            target_port,
            backends.iter().map(|&(i, w)| (backend(i), w)),
        )
    }

    fn check(path: &str) -> HealthCheckSpec {
        HealthCheckSpec {
            probe: Probe::Http {
                path: path.into(),
                expect_status: 200,
            },
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            healthy_threshold: 2,
            unhealthy_threshold: 2,
        }
    }

    fn down(reason: &str) -> Health {
        let mut h = Health::new();
        h.record(Err(reason.into()), 1, 1);
        h
    }

    fn weights(d: &DesiredService) -> Vec<u32> {
        d.backends.iter().map(|b| b.weight).collect()
    }

    #[test]
    fn shared_backends_are_probed_once_per_check() {
        let desired = [
            svc(80, 8080, &[(1, 1), (2, 1)]),
            svc(81, 8080, &[(1, 1), (2, 1)]),
            svc(82, 8080, &[(1, 1)]),
            svc(83, 8080, &[(3, 1)]),
        ];
        let checks: ServiceChecks = [
            ((VIP, 80, 6), check("/")),
            ((VIP, 81, 6), check("/")),
            ((VIP, 82, 6), check("/other")),
        ]
        .into();
        let t: Vec<String> = targets(&desired, &checks)
            .iter()
            .map(|t| format!("{} {}", t.addr, describe(&t.check)))
            .collect();
        assert_eq!(
            t,
            [
                "198.51.100.11:8080 http GET / -> 200",
                "198.51.100.11:8080 http GET /other -> 200",
                "198.51.100.12:8080 http GET / -> 200",
            ],
            "port 83 has no check: its backend is not probed"
        );
    }

    #[test]
    fn down_backends_get_weight_zero_only_where_their_check_applies() {
        let desired = [
            svc(80, 8080, &[(1, 3), (2, 1), (3, 0)]),
            // Same backend, another check: its own verdict.
            svc(81, 8080, &[(1, 1)]),
            // Not checked at all.
            svc(82, 8080, &[(1, 1)]),
            // Same address, another target port: another target.
            svc(84, 9090, &[(1, 1)]),
        ];
        let checks: ServiceChecks = [
            ((VIP, 80, 6), check("/")),
            ((VIP, 81, 6), check("/other")),
            ((VIP, 84, 6), check("/")),
        ]
        .into();
        let verdicts: Verdicts = [
            (target_of(backend(1), 8080, &check("/")), down("refused")),
            (target_of(backend(2), 8080, &check("/")), Health::new()),
            // Backend 3 has no verdict yet: counts as UP (keeps weight 0,
            // its configured drain).
        ]
        .into();
        let out = apply_health(&desired, &checks, &verdicts);
        assert_eq!(weights(&out[0]), [0, 1, 0]);
        assert_eq!(weights(&out[1]), [1], "other check, no verdict: up");
        assert_eq!(weights(&out[2]), [1], "unchecked service untouched");
        assert_eq!(weights(&out[3]), [1], "other port, other target");
        // Everything but the weights is passed through.
        assert_eq!(out[0].name, desired[0].name);
        assert_eq!(out[0].backends[0].addr, backend(1));
    }

    #[test]
    fn all_down_leaves_no_backend_for_new_flows() {
        let desired = [svc(80, 8080, &[(1, 1), (2, 1)])];
        let checks: ServiceChecks = [((VIP, 80, 6), check("/"))].into();
        let verdicts: Verdicts = [1, 2]
            .iter()
            .map(|&i| (target_of(backend(i), 8080, &check("/")), down("timeout")))
            .collect();
        let out = apply_health(&desired, &checks, &verdicts);
        assert_eq!(weights(&out[0]), [0, 0]);
        assert_eq!(out[0].backends.len(), 2, "slots kept for established flows");
        assert_eq!(without_backends(&desired, &out), ["default/web:80"]);
        assert!(without_backends(&desired, &desired).is_empty());
    }

    #[test]
    fn annotate_adds_health_to_checked_backends() {
        let desired = [svc(80, 8080, &[(1, 1), (2, 1)]), svc(82, 8080, &[(1, 1)])];
        let checks: ServiceChecks = [((VIP, 80, 6), check("/"))].into();
        let verdicts: Verdicts = [(
            target_of(backend(1), 8080, &check("/")),
            down("http: status 503, expected 200"),
        )]
        .into();
        let mut inv: Vec<InventoryService> = desired
            .iter()
            .enumerate()
            .map(|(i, d)| InventoryService {
                name: d.name.clone(),
                vip: d.vip,
                port: d.port,
                protocol: "TCP".into(),
                mode: "FullNAT".into(),
                id: i as u32,
                backends: d
                    .backends
                    .iter()
                    .enumerate()
                    .map(|(j, b)| inventory::InventoryBackend {
                        id: j as u32,
                        address: b.addr,
                        port: b.port,
                        weight: b.weight,
                        health: None,
                    })
                    .collect(),
            })
            .collect();
        annotate(&mut inv, &checks, &verdicts);
        let h = inv[0].backends[0].health.as_ref().unwrap();
        assert!(!h.up);
        assert_eq!(h.transitions, 1);
        assert_eq!(h.check, "http GET / -> 200");
        assert_eq!(
            h.last_failure.as_deref(),
            Some("http: status 503, expected 200")
        );
        let h = inv[0].backends[1].health.as_ref().unwrap();
        assert!(h.up && h.last_failure.is_none() && h.transitions == 0);
        assert_eq!(inv[1].backends[0].health, None, "unchecked");
    }
}

//! The health check of a service as the agent runs it: `spec.healthCheck`
//! validated, defaulted and typed (durations, one probe kind), so the agent
//! never re-reads the loose CRD shape.

use std::time::Duration;

use crate::virtual_server::HealthCheck;

/// What one probe does against a backend's address and target port.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Probe {
    /// Healthy when a TCP connection opens.
    Tcp,
    /// Healthy when `GET path` (HTTP/1.1) answers with `expect_status`.
    Http { path: String, expect_status: u16 },
    /// A datagram `payload`; healthy when no ICMP port unreachable comes
    /// back within the timeout, or with `expect`, when a reply starting
    /// with it does.
    Udp {
        payload: Vec<u8>,
        expect: Option<Vec<u8>>,
    },
}

/// A validated `spec.healthCheck`. Ordered and hashable because the agent
/// keys probe targets by (backend, port, check): two services sharing a
/// backend and the same check share one prober.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HealthCheckSpec {
    pub probe: Probe,
    /// Between the starts of two probes of one backend.
    pub interval: Duration,
    /// A probe not finished by then is a failure; at most `interval`.
    pub timeout: Duration,
    /// Consecutive successes that bring a DOWN backend back.
    pub healthy_threshold: u32,
    /// Consecutive failures that take an UP backend out of new flows.
    pub unhealthy_threshold: u32,
}

impl HealthCheckSpec {
    /// A TCP check with the CRD's defaults (interval 5 s, timeout 2 s,
    /// thresholds 2).
    pub fn tcp_defaults() -> Self {
        use crate::virtual_server::{
            DEFAULT_HEALTH_INTERVAL_SECONDS, DEFAULT_HEALTH_THRESHOLD,
            DEFAULT_HEALTH_TIMEOUT_SECONDS,
        };
        HealthCheckSpec {
            probe: Probe::Tcp,
            interval: Duration::from_secs(DEFAULT_HEALTH_INTERVAL_SECONDS as u64),
            timeout: Duration::from_secs(DEFAULT_HEALTH_TIMEOUT_SECONDS as u64),
            healthy_threshold: DEFAULT_HEALTH_THRESHOLD as u32,
            unhealthy_threshold: DEFAULT_HEALTH_THRESHOLD as u32,
        }
    }

    /// Converts a check that passed [`crate::validate`]'s rules (exactly one
    /// probe, values in range); `None` for one that did not.
    pub(crate) fn from_valid(hc: &HealthCheck) -> Option<Self> {
        let probe = match (&hc.tcp, &hc.http, &hc.udp) {
            (Some(_), None, None) => Probe::Tcp,
            (None, Some(http), None) => Probe::Http {
                path: http.path.clone(),
                expect_status: u16::try_from(http.expect_status).ok()?,
            },
            (None, None, Some(udp)) => Probe::Udp {
                payload: udp.payload.as_bytes().to_vec(),
                expect: udp.expect.as_ref().map(|e| e.as_bytes().to_vec()),
            },
            _ => return None,
        };
        let secs = |s: i64| u64::try_from(s).ok().map(Duration::from_secs);
        Some(HealthCheckSpec {
            probe,
            interval: secs(hc.interval_seconds)?,
            timeout: secs(hc.timeout_seconds)?,
            healthy_threshold: u32::try_from(hc.healthy_threshold).ok()?,
            unhealthy_threshold: u32::try_from(hc.unhealthy_threshold).ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::{CheckedSpec, Families, ValidationContext, ValidationError, check};

    fn validate(vs: &crate::VirtualServer) -> Result<CheckedSpec, ValidationError> {
        check(vs, ValidationContext::Standalone, Families::Both)
    }

    fn with_check(check: &str) -> crate::VirtualServer {
        serde_yaml::from_str(&format!(
            "apiVersion: ballast.dev/v1alpha1\nkind: VirtualServer\nmetadata: {{name: web}}\n\
             spec:\n  addresses: [203.0.113.10, 203.0.113.11]\n  ports: [{{port: 80}}]\n  \
             backends: {{static: [{{address: 198.51.100.11}}]}}\n  healthCheck: {check}\n"
        ))
        .unwrap()
    }

    #[test]
    fn defaults_fill_an_empty_tcp_check() {
        let checked = validate(&with_check("{tcp: {}}")).unwrap();
        assert_eq!(checked.addresses.len(), 2);
        assert_eq!(checked.health_check, Some(HealthCheckSpec::tcp_defaults()));
        let d = HealthCheckSpec::tcp_defaults();
        assert_eq!(
            (
                d.interval,
                d.timeout,
                d.healthy_threshold,
                d.unhealthy_threshold
            ),
            (Duration::from_secs(5), Duration::from_secs(2), 2, 2)
        );
    }

    #[test]
    fn http_check_is_typed() {
        let checked = validate(&with_check(
            "{http: {path: /healthz, expectStatus: 204}, intervalSeconds: 3, timeoutSeconds: 1, \
             healthyThreshold: 4, unhealthyThreshold: 1}",
        ))
        .unwrap();
        assert_eq!(
            checked.health_check,
            Some(HealthCheckSpec {
                probe: Probe::Http {
                    path: "/healthz".into(),
                    expect_status: 204
                },
                interval: Duration::from_secs(3),
                timeout: Duration::from_secs(1),
                healthy_threshold: 4,
                unhealthy_threshold: 1,
            })
        );
        let checked = validate(&with_check("{http: {}}")).unwrap();
        assert_eq!(
            checked.health_check.as_ref().unwrap().probe,
            Probe::Http {
                path: "/".into(),
                expect_status: 200
            }
        );
    }

    #[test]
    fn no_check_no_spec_and_invalid_check_refused() {
        let mut vs = with_check("{tcp: {}}");
        vs.spec.health_check = None;
        assert_eq!(validate(&vs).unwrap().health_check, None);
        let err = validate(&with_check(
            "{tcp: {}, intervalSeconds: 2, timeoutSeconds: 3}",
        ))
        .unwrap_err();
        assert_eq!(err.errors[0].field, "spec.healthCheck.timeoutSeconds");
    }
}

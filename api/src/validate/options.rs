//! How the service behaves: `clientAddress`, `scheduler`, `persistence`,
//! `sourceRanges` and `healthCheck`.

use ipnet::IpNet;

use super::error::Errors;
use super::types::Forwarding;
use crate::health::HealthCheckSpec;
use crate::virtual_server::{
    ClientAddressMode, ForwardingMode, HealthCheck, SCHEDULER_MAGLEV, VirtualServerSpec,
};

/// Upper bound for `spec.persistence.timeoutSeconds` (7 days).
pub const MAX_PERSISTENCE_TIMEOUT_S: i64 = 7 * 86_400;

/// `clientAddress`, `scheduler` and `persistence`.
pub(crate) fn check_general(spec: &VirtualServerSpec, errs: &mut Errors) {
    if spec.client_address == ClientAddressMode::Toa && spec.forwarding != ForwardingMode::FullNat {
        errs.push(
            "spec.clientAddress",
            format!(
                "TOA requires FullNAT forwarding ({} already delivers the client address unchanged)",
                Forwarding::from(spec.forwarding)
            ),
        );
    }
    if spec.scheduler != SCHEDULER_MAGLEV {
        errs.push(
            "spec.scheduler",
            format!(
                "scheduler {:?} is not supported (only {SCHEDULER_MAGLEV})",
                spec.scheduler
            ),
        );
    }
    if let Some(p) = &spec.persistence {
        let t = p.timeout_seconds;
        if t < 0 {
            errs.push(
                "spec.persistence.timeoutSeconds",
                format!("{t} is negative"),
            );
        } else if t > MAX_PERSISTENCE_TIMEOUT_S {
            errs.push(
                "spec.persistence.timeoutSeconds",
                format!(
                    "{t} exceeds {MAX_PERSISTENCE_TIMEOUT_S} (7 days): affinity that long pins \
                     clients to one backend indefinitely, so weight changes and drains stop \
                     taking effect and the affinity entries are never reclaimed"
                ),
            );
        }
    }
}

pub(crate) fn source_ranges(ranges: &[String], errs: &mut Errors) -> Vec<IpNet> {
    let mut out = Vec::with_capacity(ranges.len());
    for (i, r) in ranges.iter().enumerate() {
        let field = format!("spec.sourceRanges[{i}]");
        match r.parse::<IpNet>() {
            // A CIDR with host bits set is almost always a typo for a
            // different, narrower range; say so instead of guessing.
            Ok(net) if net.trunc() != net => errs.push(
                field,
                format!("{r} has host bits set (did you mean {}?)", net.trunc()),
            ),
            Ok(net) => out.push(net),
            Err(_) => errs.push(
                field,
                format!("{r:?} is not a CIDR (e.g. 198.51.100.0/24 or 2001:db8::/32)"),
            ),
        }
    }
    out
}

/// Checks `spec.healthCheck` and returns it typed when it is valid.
pub(crate) fn health_check(hc: Option<&HealthCheck>, errs: &mut Errors) -> Option<HealthCheckSpec> {
    let hc = hc?;
    let errors_before = errs.0.len();
    match (&hc.tcp, &hc.http, &hc.udp) {
        (None, None, None) => errs.push("spec.healthCheck", "one of tcp, http or udp is required"),
        (None, None, Some(udp)) => {
            if udp.payload.len() > 512 {
                errs.push(
                    "spec.healthCheck.udp.payload",
                    format!("{} bytes; at most 512", udp.payload.len()),
                );
            }
            if let Some(e) = &udp.expect
                && (e.is_empty() || e.len() > 512)
            {
                errs.push(
                    "spec.healthCheck.udp.expect",
                    "1 to 512 bytes (leave it out to check for ICMP port unreachable only)",
                );
            }
        }
        (None, Some(http), None) => {
            if !http.path.starts_with('/') {
                errs.push(
                    "spec.healthCheck.http.path",
                    format!("{:?} must start with /", http.path),
                );
            }
            if !(100..=599).contains(&http.expect_status) {
                errs.push(
                    "spec.healthCheck.http.expectStatus",
                    format!("{} is not an HTTP status (100..=599)", http.expect_status),
                );
            }
        }
        (Some(_), None, None) => {}
        _ => errs.push("spec.healthCheck", "set exactly one of tcp, http and udp"),
    }
    let ranges = [
        ("intervalSeconds", hc.interval_seconds, 3600),
        ("timeoutSeconds", hc.timeout_seconds, 3600),
        ("healthyThreshold", hc.healthy_threshold, 100),
        ("unhealthyThreshold", hc.unhealthy_threshold, 100),
    ];
    for (field, value, max) in ranges {
        if !(1..=max).contains(&value) {
            errs.push(
                format!("spec.healthCheck.{field}"),
                format!("{value} is out of range 1..={max}"),
            );
        }
    }
    // Equal is allowed so that a 1 s interval (the shortest) can be had.
    if hc.timeout_seconds > hc.interval_seconds {
        errs.push(
            "spec.healthCheck.timeoutSeconds",
            format!(
                "{}s must not exceed intervalSeconds ({}s)",
                hc.timeout_seconds, hc.interval_seconds
            ),
        );
    }
    if errs.0.len() > errors_before {
        return None;
    }
    HealthCheckSpec::from_valid(hc)
}

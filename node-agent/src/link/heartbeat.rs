//! The agent's usage report as the wire's `Heartbeat` (pure).
use ballast_proto::v1;

use super::session::Held;
use crate::core::Usage;

/// `usage` on the wire; objects are named as `held` named them (a verdict
/// of an object the held state does not name is left out: it belongs to a
/// version being replaced).
pub fn from_usage(usage: &Usage, held: Option<&Held>) -> v1::Heartbeat {
    let health = held
        .map(|h| {
            usage
                .health
                .iter()
                .filter_map(|v| {
                    Some(v1::BackendHealth {
                        object: Some(h.objects.get(&v.object)?.clone()),
                        address: v.address.octets().to_vec(),
                        port: u32::from(v.port),
                        healthy: v.healthy,
                        since_ms: u64::try_from(v.since.as_millis()).unwrap_or(u64::MAX),
                        last_error: v.last_error.clone().unwrap_or_default(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    v1::Heartbeat {
        applied_version: usage.applied_version,
        conntrack: usage
            .conntrack
            .map(|(entries, capacity)| v1::ConntrackUsage { entries, capacity }),
        // Per-address SNAT port counts need a walk of the reply entries
        // the sweeper does not do yet: sent empty rather than invented.
        snat: Vec::<v1::SnatUsage>::new(),
        health,
        drops: usage
            .drops
            .iter()
            .map(|&(reason, packets)| v1::DropCounter {
                reason: reason.to_string(),
                packets,
            })
            .collect(),
    }
}

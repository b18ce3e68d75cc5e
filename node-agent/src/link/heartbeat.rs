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
        // Before the sweeper's first pass: none, rather than zeros.
        snat: usage
            .snat
            .iter()
            .flatten()
            .map(|s| v1::SnatUsage {
                address: s.address.octets().to_vec(),
                ports_in_use: s.in_use,
                ports_total: s.total,
            })
            .collect(),
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

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::time::Duration;

    use super::*;
    use crate::core::{BackendVerdict, SnatUsage};

    fn web() -> v1::ObjectRef {
        v1::ObjectRef {
            kind: v1::ObjectKind::VirtualServer as i32,
            namespace: "default".into(),
            name: "web".into(),
        }
    }

    fn held() -> Held {
        Held::new(
            v1::NodeState {
                version: 4,
                ..Default::default()
            },
            [("default/web".to_string(), web())].into(),
        )
    }

    fn usage() -> Usage {
        let verdict = |object: &str, last: u8, healthy| BackendVerdict {
            object: object.into(),
            address: Ipv4Addr::new(10, 0, 0, last),
            port: 8080,
            healthy,
            since: Duration::from_millis(1500),
            last_error: (!healthy).then(|| "connection refused".into()),
        };
        Usage {
            applied_version: 4,
            conntrack: Some((10, 1000)),
            snat: Some(vec![
                SnatUsage {
                    address: Ipv4Addr::new(198, 51, 100, 3),
                    in_use: 7,
                    total: 10_000,
                },
                SnatUsage {
                    address: Ipv4Addr::new(198, 51, 100, 4),
                    in_use: 0,
                    total: 10_000,
                },
            ]),
            health: vec![
                verdict("default/web", 1, false),
                // Of an object the held version does not name: left out.
                verdict("default/old", 2, true),
            ],
            drops: vec![("no_backend", 3), ("snat_exhausted", 0)],
        }
    }

    #[test]
    fn usage_becomes_the_heartbeat() {
        assert_eq!(
            from_usage(&usage(), Some(&held())),
            v1::Heartbeat {
                applied_version: 4,
                conntrack: Some(v1::ConntrackUsage {
                    entries: 10,
                    capacity: 1000
                }),
                snat: vec![
                    v1::SnatUsage {
                        address: vec![198, 51, 100, 3],
                        ports_in_use: 7,
                        ports_total: 10_000,
                    },
                    v1::SnatUsage {
                        address: vec![198, 51, 100, 4],
                        ports_in_use: 0,
                        ports_total: 10_000,
                    },
                ],
                health: vec![v1::BackendHealth {
                    object: Some(web()),
                    address: vec![10, 0, 0, 1],
                    port: 8080,
                    healthy: false,
                    since_ms: 1500,
                    last_error: "connection refused".into(),
                }],
                drops: vec![
                    v1::DropCounter {
                        reason: "no_backend".into(),
                        packets: 3,
                    },
                    v1::DropCounter {
                        reason: "snat_exhausted".into(),
                        packets: 0,
                    },
                ],
            }
        );
    }

    #[test]
    fn nothing_swept_yet_sends_no_snat_and_no_conntrack() {
        let before = Usage {
            conntrack: None,
            snat: None,
            ..usage()
        };
        let hb = from_usage(&before, None);
        assert_eq!((hb.conntrack, hb.snat), (None, vec![]));
        // Without a held version no verdict can be named.
        assert!(hb.health.is_empty());
        assert_eq!(hb.drops.len(), 2);
    }
}

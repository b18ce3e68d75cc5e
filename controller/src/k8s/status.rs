//! Turning planned [`ObjectStatus`]es, with the agents' verdict
//! ([`Programmed`]), into the status each resource stores, and deciding
//! whether a write (and which Events) is needed. Pure: the writer does the
//! I/O.

use k8s_openapi::api::core::v1::{LoadBalancerIngress, LoadBalancerStatus, Service, ServiceStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde_json::{Value, json};

use ballast_api::{
    AddressPool, AddressPoolStatus, BackendCounts, NodeProgramStatus, VirtualServer,
    VirtualServerStatus,
};

use super::programmed::Programmed;
use crate::plan::{Cond, CondStatus, ObjectStatus, PoolStatus};

/// Condition types set on Services, prefixed because other controllers may
/// own a Service's other conditions.
pub const SERVICE_CONDITION_PREFIX: &str = "ballast.dev/";

/// Builds a condition, keeping `lastTransitionTime` from `existing` when the
/// status did not change (Kubernetes API conventions).
fn condition(
    type_: &str,
    cond: &Cond,
    generation: Option<i64>,
    existing: &[Condition],
    now: &Time,
) -> Condition {
    let status = cond.status.as_str();
    let last = existing
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: cond.reason.clone(),
        // The API caps messages at 32 KiB; a long error list must not make
        // the whole status write fail.
        message: truncate(&cond.message, 32 * 1024),
        observed_generation: generation,
        last_transition_time: last,
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max - 3;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

fn conditions(
    status: &ObjectStatus,
    programmed: &Programmed,
    prefix: &str,
    existing: &[Condition],
    now: &Time,
) -> Vec<Condition> {
    [
        ("Accepted", &status.accepted),
        ("Ready", &status.ready),
        ("Programmed", &programmed.cond),
    ]
    .into_iter()
    .map(|(t, c)| condition(&format!("{prefix}{t}"), c, status.generation, existing, now))
    .collect()
}

pub fn virtual_server_status(
    planned: &ObjectStatus,
    programmed: &Programmed,
    current: &VirtualServer,
    now: &Time,
) -> VirtualServerStatus {
    let existing = current
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    VirtualServerStatus {
        addresses: planned.addresses.iter().map(|a| a.to_string()).collect(),
        conditions: conditions(planned, programmed, "", existing, now),
        backends: planned.backends.map(|(r, t)| BackendCounts::new(r, t)),
        nodes: programmed
            .nodes
            .iter()
            .map(|n| NodeProgramStatus {
                name: n.node.clone(),
                programmed: n.programmed,
                applied_version: n.applied_version,
                generation: planned.generation.filter(|_| n.programmed),
                announcing: n.announcing,
                message: n.message.as_deref().map(|m| truncate(m, 1024)),
            })
            // Nodes the object selects whose agent is away: not directors
            // (they are not counted in `programmedNodes`), listed so the
            // status says why they carry none of its traffic.
            .chain(planned.absent.iter().map(|(node, why)| NodeProgramStatus {
                name: node.to_string(),
                programmed: false,
                applied_version: 0,
                generation: None,
                announcing: false,
                message: Some(truncate(why, 1024)),
            }))
            .collect(),
        programmed_nodes: programmed.summary(),
        announced_by: programmed
            .nodes
            .iter()
            .filter(|n| n.announcing)
            .map(|n| n.node.as_str())
            .collect::<Vec<_>>()
            .join(","),
    }
}

/// The part of a Service's status this controller owns.
pub fn service_status(
    planned: &ObjectStatus,
    programmed: &Programmed,
    current: &Service,
    now: &Time,
) -> ServiceStatus {
    let existing = current
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let ingress: Vec<LoadBalancerIngress> = planned
        .addresses
        .iter()
        .map(|a| LoadBalancerIngress {
            ip: Some(a.to_string()),
            ip_mode: Some("VIP".into()),
            ..Default::default()
        })
        .collect();
    ServiceStatus {
        load_balancer: Some(LoadBalancerStatus {
            ingress: Some(ingress),
        }),
        conditions: Some(conditions(
            planned,
            programmed,
            SERVICE_CONDITION_PREFIX,
            existing,
            now,
        )),
    }
}

/// Whether the Service's stored status already says what we would apply:
/// our conditions present and equal, and the same ingress.
pub fn service_status_current(desired: &ServiceStatus, current: &Service) -> bool {
    let cur = current.status.clone().unwrap_or_default();
    let ingress = |s: &ServiceStatus| {
        s.load_balancer
            .as_ref()
            .and_then(|l| l.ingress.clone())
            .unwrap_or_default()
    };
    let ours = |s: &ServiceStatus| -> Vec<Condition> {
        let mut v: Vec<Condition> = s
            .conditions
            .iter()
            .flatten()
            .filter(|c| c.type_.starts_with(SERVICE_CONDITION_PREFIX))
            .cloned()
            .collect();
        v.sort_by(|a, b| a.type_.cmp(&b.type_));
        v
    };
    ingress(&cur) == ingress(desired) && ours(&cur) == ours(desired)
}

pub fn pool_status(planned: &PoolStatus, current: &AddressPool, now: &Time) -> AddressPoolStatus {
    let existing = current
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let valid = if planned.errors.is_empty() {
        Cond::new(
            CondStatus::True,
            "Valid",
            "every entry of spec.addresses is usable",
        )
    } else {
        Cond::new(
            CondStatus::False,
            "InvalidAddresses",
            planned.errors.join("; "),
        )
    };
    AddressPoolStatus {
        allocated: planned.allocated as i64,
        total: planned.total.to_string(),
        conditions: vec![condition(
            "Valid",
            &valid,
            current.metadata.generation,
            existing,
            now,
        )],
    }
}

/// The server-side apply body for a status subresource.
pub fn apply_body(
    api_version: &str,
    kind: &str,
    name: &str,
    status: impl serde::Serialize,
) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": name},
        "status": status,
    })
}

/// An Event to record about an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventNote {
    pub warning: bool,
    pub reason: String,
    pub note: String,
}

/// Events for what changed between the stored conditions and the new ones:
/// address (re)allocation, Accepted/Ready turning, with their reason, and
/// Programmed turning True (Normal) or Refused (Warning, with the agents'
/// reasons). Programmed going Pending is no Event: every edit does it.
pub fn events(
    old_addresses: &[String],
    new_addresses: &[String],
    old: &[Condition],
    new: &[Condition],
) -> Vec<EventNote> {
    let mut out = Vec::new();
    if old_addresses != new_addresses && !new_addresses.is_empty() {
        out.push(EventNote {
            warning: false,
            reason: "AddressAllocated".into(),
            note: format!("assigned {}", new_addresses.join(", ")),
        });
    }
    for c in new {
        let before = old.iter().find(|o| o.type_ == c.type_);
        let changed = before.is_none_or(|b| b.status != c.status || b.reason != c.reason);
        let worth = if c.type_.ends_with("Programmed") {
            c.status == "True" || c.reason == "Refused"
        } else {
            !(before.is_none() && c.status == "True")
        };
        if changed && worth {
            out.push(EventNote {
                warning: c.status == "False",
                reason: c.reason.clone(),
                note: truncate(&c.message, 1024),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::programmed::NodeProgram;
    use crate::plan::DirectorStatus;

    /// The agents' verdict on node n1: `reason` "Programmed", "Pending" or
    /// "Refused".
    fn verdict(reason: &str) -> Programmed {
        let programmed = reason == "Programmed";
        let status = if programmed {
            CondStatus::True
        } else {
            CondStatus::False
        };
        Programmed {
            cond: Cond::new(status, reason, format!("{reason} message")),
            nodes: vec![NodeProgram {
                node: "n1".into(),
                announcing: true,
                programmed,
                applied_version: 3,
                message: (!programmed).then(|| format!("{reason} on n1")),
            }],
            ready: usize::from(programmed),
        }
    }

    fn planned(ready: CondStatus) -> ObjectStatus {
        ObjectStatus {
            generation: Some(4),
            addresses: vec!["203.0.113.1".parse().unwrap()],
            accepted: Cond::new(CondStatus::True, "Accepted", "ok"),
            ready: Cond::new(
                ready,
                if ready == CondStatus::True {
                    "Ready"
                } else {
                    "NoReadyBackends"
                },
                "m",
            ),
            programmed: Cond::new(CondStatus::Unknown, "AwaitingAgents", "m"),
            backends: Some((1, 3)),
            directors: vec![DirectorStatus {
                node: "n1".into(),
                announcing: true,
            }],
            absent: Vec::new(),
        }
    }

    /// A VirtualServer as stored, without status.
    fn stored_vs() -> VirtualServer {
        serde_json::from_value(json!({
            "apiVersion": "ballast.dev/v1alpha1", "kind": "VirtualServer",
            "metadata": {"name": "a", "namespace": "default"},
            "spec": {"ports": [{"port": 80}], "backends": {"static": []}},
        }))
        .unwrap()
    }

    fn time(s: &str) -> Time {
        serde_json::from_value(json!(s)).unwrap()
    }

    #[test]
    fn transition_time_is_kept_until_the_status_flips() {
        let vs = stored_vs();
        let t1 = time("2025-01-01T00:00:00Z");
        let t2 = time("2025-01-02T00:00:00Z");
        let first =
            virtual_server_status(&planned(CondStatus::True), &verdict("Pending"), &vs, &t1);
        assert_eq!(first.backends.as_ref().unwrap().summary, "1/3");
        assert_eq!(first.conditions[1].observed_generation, Some(4));
        let mut stored = vs.clone();
        stored.status = Some(first.clone());
        // Same decision later: identical status, so no write is needed.
        assert_eq!(
            virtual_server_status(
                &planned(CondStatus::True),
                &verdict("Pending"),
                &stored,
                &t2
            ),
            first
        );
        // Ready flips: only Ready's time moves, and one warning Event.
        let flipped = virtual_server_status(
            &planned(CondStatus::False),
            &verdict("Pending"),
            &stored,
            &t2,
        );
        assert_eq!(flipped.conditions[0].last_transition_time, t1);
        assert_eq!(flipped.conditions[1].last_transition_time, t2);
        let ev = events(
            &first.addresses,
            &flipped.addresses,
            &first.conditions,
            &flipped.conditions,
        );
        assert_eq!(ev.len(), 1);
        assert!(ev[0].warning);
        assert_eq!(ev[0].reason, "NoReadyBackends");
    }

    #[test]
    fn service_status_uses_prefixed_conditions_and_vip_ingress() {
        let svc: Service = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "default"},
            "status": {"conditions": [{"type": "other.io/Thing", "status": "True", "reason": "X",
                "message": "", "lastTransitionTime": "2025-01-01T00:00:00Z"}]},
        }))
        .unwrap();
        let s = service_status(
            &planned(CondStatus::True),
            &verdict("Programmed"),
            &svc,
            &time("2025-01-01T00:00:00Z"),
        );
        let ingress = &s.load_balancer.as_ref().unwrap().ingress.as_ref().unwrap()[0];
        assert_eq!(ingress.ip.as_deref(), Some("203.0.113.1"));
        assert_eq!(ingress.ip_mode.as_deref(), Some("VIP"));
        let types: Vec<_> = s
            .conditions
            .iter()
            .flatten()
            .map(|c| c.type_.as_str())
            .collect();
        assert_eq!(
            types,
            [
                "ballast.dev/Accepted",
                "ballast.dev/Ready",
                "ballast.dev/Programmed"
            ]
        );
        assert!(!service_status_current(&s, &svc));
        let mut stored = svc.clone();
        let mut merged = s.clone();
        merged
            .conditions
            .as_mut()
            .unwrap()
            .push(svc.status.as_ref().unwrap().conditions.as_ref().unwrap()[0].clone());
        stored.status = Some(merged);
        assert!(
            service_status_current(&s, &stored),
            "another owner's condition is not ours to compare"
        );
    }

    #[test]
    fn node_lines_and_programmed_events_follow_the_agents_verdict() {
        let vs = stored_vs();
        let now = time("2025-01-01T00:00:00Z");
        let status =
            |reason| virtual_server_status(&planned(CondStatus::True), &verdict(reason), &vs, &now);
        let pending = status("Pending");
        assert_eq!(
            pending.nodes,
            [NodeProgramStatus {
                name: "n1".into(),
                programmed: false,
                applied_version: 3,
                generation: None,
                announcing: true,
                message: Some("Pending on n1".into()),
            }]
        );
        assert_eq!(pending.programmed_nodes, "0/1");
        let programmed = status("Programmed");
        assert_eq!(programmed.programmed_nodes, "1/1");
        assert_eq!(programmed.announced_by, "n1", "the ANNOUNCED BY column");
        assert_eq!(
            (
                programmed.nodes[0].programmed,
                programmed.nodes[0].generation
            ),
            (true, Some(4)),
            "a programmed node names the generation it applied"
        );
        let refused = status("Refused");
        // (from, to, Events as (warning, reason, note)).
        let cases = [
            (
                &pending,
                &programmed,
                vec![(false, "Programmed", "Programmed message")],
            ),
            (
                &programmed,
                &refused,
                vec![(true, "Refused", "Refused message")],
            ),
            (&refused, &pending, vec![]),
            (&programmed, &pending, vec![]),
            (&programmed, &programmed, vec![]),
        ];
        for (from, to, want) in cases {
            let got: Vec<_> = events(&[], &[], &from.conditions, &to.conditions)
                .into_iter()
                .map(|e| (e.warning, e.reason, e.note))
                .collect();
            let want: Vec<_> = want
                .into_iter()
                .map(|(w, r, n)| (w, r.to_string(), n.to_string()))
                .collect();
            assert_eq!(
                got, want,
                "{} -> {}",
                from.programmed_nodes, to.conditions[2].reason
            );
        }
    }

    #[test]
    fn long_messages_are_truncated_on_a_char_boundary() {
        let long = "é".repeat(40_000);
        let t = truncate(&long, 32 * 1024);
        assert!(t.len() <= 32 * 1024 && t.ends_with("..."));
    }
}

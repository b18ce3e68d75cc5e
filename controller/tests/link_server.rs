//! The controller's `NodeSync` server over real TCP on 127.0.0.1 with mutual
//! TLS (certificates made here with rcgen): what a fresh agent receives,
//! deltas on plan changes, acks and nacks recorded, reconnects that resend
//! nothing, leadership, every way a client is refused on its first RPC, and
//! heartbeats reaching the controller's metrics.

mod link_support;

use ballast_controller::link::tls::{AgentIdentity, TlsFiles};
use ballast_controller::link::{Security, node_state};
use ballast_proto::v1::{Ack, Nack, agent_message, controller_message::Kind};
use ballast_proto::{apply_delta, content_hash};
use link_support::*;
use std::error::Error as _;

use tonic::Code;
use tonic::transport::Channel;

const NODE: &str = "node-a";

struct Mtls {
    ca: Ca,
    agent: Leaf,
    files: TlsFiles,
}

fn mtls(test: &str) -> Mtls {
    let ca = Ca::new("ballast test CA");
    let dir = scratch_dir(test);
    let files = server_files(&dir, &ca, &ca);
    let agent = ca.agent(NODE);
    Mtls { ca, agent, files }
}

/// Serving (as leader, or as a standby) one service on `NODE` over mTLS,
/// and a channel that presents the agent's certificate.
async fn serving(test: &str, leading: bool) -> (Mtls, Harness, Channel) {
    let m = mtls(test);
    let plan = plan_for(NODE, &[("web", service("192.0.2.10", &["10.0.0.1"]))]);
    let h = Harness::start(
        Security::Mtls(m.files.clone(), AgentIdentity::Node),
        Some(plan),
        leading,
    )
    .await;
    let ch = channel(h.addr, Some((&m.ca, Some(&m.agent)))).await;
    (m, h, ch)
}

fn snapshot_of(m: ballast_proto::v1::ControllerMessage) -> ballast_proto::v1::NodeState {
    match m.kind {
        Some(Kind::Snapshot(s)) => s,
        other => panic!("expected a snapshot, got {other:?}"),
    }
}

fn delta_of(m: ballast_proto::v1::ControllerMessage) -> ballast_proto::v1::Delta {
    match m.kind {
        Some(Kind::Delta(d)) => d,
        other => panic!("expected a delta, got {other:?}"),
    }
}

#[tokio::test]
async fn a_fresh_agent_gets_the_snapshot_then_one_delta_per_change_and_its_acks_are_recorded() {
    let m = mtls("fresh");
    let first = plan_for(NODE, &[("web", service("192.0.2.10", &["10.0.0.1"]))]);
    let h = Harness::start(
        Security::Mtls(m.files.clone(), AgentIdentity::Node),
        Some(first.clone()),
        true,
    )
    .await;
    let ch = channel(h.addr, Some((&m.ca, Some(&m.agent)))).await;

    let mut agent = open(&ch, hello(NODE, 0, &[])).await.unwrap();
    let mut held = snapshot_of(next(&mut agent).await.unwrap());
    let expected = node_state(1, &first.nodes[NODE]);
    assert_eq!(held.version, 1);
    assert_eq!(content_hash(&held), content_hash(&expected));
    assert_eq!(held, expected);

    send(
        &agent.tx,
        agent_message::Kind::Ack(Ack {
            version: 1,
            content_hash: content_hash(&held).to_vec(),
        }),
    )
    .await;

    // One backend more: one delta, from version 1 to 2, that gives the new
    // state.
    let second = plan_for(
        NODE,
        &[("web", service("192.0.2.10", &["10.0.0.1", "10.0.0.2"]))],
    );
    h.plan(second.clone());
    let delta = delta_of(next(&mut agent).await.unwrap());
    assert_eq!((delta.base_version, delta.version), (1, 2));
    assert_eq!(delta.upserted.len(), 1, "{delta:?}");
    assert!(
        delta.removed.is_empty() && delta.l2_added.is_empty(),
        "{delta:?}"
    );
    apply_delta(&mut held, &delta).unwrap();
    assert_eq!(held, node_state(2, &second.nodes[NODE]));

    // The ack of version 1 was recorded before the delta went (the server
    // handles one stream's messages in order; wait for it to be seen).
    let report = wait_for(&h, |r| r.applied_version == 1).await;
    assert!(report.connected);
    assert_eq!(report.agent_version, "0.1.0-test");
    assert_eq!(report.applied_hash, content_hash(&expected).to_vec());

    // A plan with no change for this node sends nothing: the next message
    // is the delta of the change after it (version 3, on 2).
    h.plan(second.clone());
    let third = plan_for(NODE, &[("web", service("192.0.2.10", &["10.0.0.2"]))]);
    h.plan(third.clone());
    let delta = delta_of(next(&mut agent).await.unwrap());
    assert_eq!((delta.base_version, delta.version), (2, 3));
    apply_delta(&mut held, &delta).unwrap();
    assert_eq!(held, node_state(3, &third.nodes[NODE]));
    h.shutdown().await;
}

/// Waits (up to 10 s) until the node's report satisfies `ok`.
async fn wait_for(
    h: &Harness,
    ok: impl Fn(&ballast_controller::link::AgentReport) -> bool,
) -> ballast_controller::link::AgentReport {
    let mut changes = h.reports.changes();
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            if let Some(r) = h.reports.get(NODE).filter(|r| ok(r)) {
                return r;
            }
            changes.changed().await.unwrap();
        }
    })
    .await
    .unwrap_or_else(|_| panic!("report never matched: {:?}", h.reports.get(NODE)))
}

#[tokio::test]
async fn a_reconnect_with_the_current_state_resends_nothing_and_replaces_the_old_stream() {
    let (_, h, ch) = serving("reconnect", true).await;
    let mut old = open(&ch, hello(NODE, 0, &[])).await.unwrap();
    let held = snapshot_of(next(&mut old).await.unwrap());
    let hash = content_hash(&held);

    // The agent opens a new stream (say it thinks the old one dead) with
    // what it holds: the old stream is ended, the new one gets nothing...
    let mut new = open(&ch, hello(NODE, held.version, &hash)).await.unwrap();
    let ended = next(&mut old).await.unwrap_err();
    assert_eq!(ended.code(), Code::Aborted, "{ended:?}");
    wait_for(&h, |r| r.connected && r.applied_version == 1).await;

    // ...until the plan changes: its first message is a delta on version 1.
    let changed = plan_for(NODE, &[("web", service("192.0.2.10", &["10.0.0.9"]))]);
    h.plan(changed);
    let delta = delta_of(next(&mut new).await.unwrap());
    assert_eq!((delta.base_version, delta.version), (1, 2));

    // An agent reporting the same content at a higher version (numbered by
    // a previous leader) also gets nothing; its version is adopted, so the
    // next delta builds on it.
    let mut held2 = held.clone();
    apply_delta(&mut held2, &delta).unwrap();
    let mut again = open(&ch, hello(NODE, 7, &content_hash(&held2)))
        .await
        .unwrap();
    h.plan(plan_for(NODE, &[]));
    let delta = delta_of(next(&mut again).await.unwrap());
    assert_eq!((delta.base_version, delta.version), (7, 8));
    assert_eq!(delta.removed.len(), 1, "{delta:?}");
    h.shutdown().await;
}

#[tokio::test]
async fn a_refused_delta_is_followed_by_the_full_state_and_recorded() {
    let (_, h, ch) = serving("nack", true).await;
    let mut agent = open(&ch, hello(NODE, 0, &[])).await.unwrap();
    snapshot_of(next(&mut agent).await.unwrap());
    let changed = plan_for(NODE, &[("web", service("192.0.2.10", &["10.0.0.2"]))]);
    h.plan(changed.clone());
    let delta = delta_of(next(&mut agent).await.unwrap());
    send(
        &agent.tx,
        agent_message::Kind::Nack(Nack {
            version: delta.version,
            applied_version: 0,
            errors: Vec::new(),
            message: "delta base version 1 is not the applied version 0".into(),
        }),
    )
    .await;
    let state = snapshot_of(next(&mut agent).await.unwrap());
    assert_eq!(state, node_state(2, &changed.nodes[NODE]));
    let report = wait_for(&h, |r| r.refused.is_some()).await;
    let refused = report.refused.unwrap();
    assert_eq!(refused.version, 2);
    assert!(refused.message.contains("base version"), "{refused:?}");
    h.shutdown().await;
}

#[tokio::test]
async fn a_standby_refuses_with_unavailable_naming_the_leader_and_losing_leadership_ends_streams() {
    let (_, h, ch) = serving("leader", false).await;
    h.leader_name
        .send_replace(Some("ballast-controller-1".into()));
    let refused = loop {
        // The name reaches the server through its watch: retry until the
        // refusal names it (as an agent would, with backoff).
        let e = open(&ch, hello(NODE, 0, &[])).await.err().unwrap();
        assert_eq!(e.code(), Code::Unavailable, "{e:?}");
        if e.message().contains("ballast-controller-1") {
            break e;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert!(refused.message().contains("not the leader"), "{refused:?}");

    h.leader.send_replace(true);
    let mut agent = loop {
        match open(&ch, hello(NODE, 0, &[])).await {
            Ok(a) => break a,
            Err(e) => assert_eq!(e.code(), Code::Unavailable, "{e:?}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    snapshot_of(next(&mut agent).await.unwrap());
    h.leader.send_replace(false);
    let ended = next(&mut agent).await.unwrap_err();
    assert_eq!(ended.code(), Code::Unavailable, "{ended:?}");
    wait_for(&h, |r| !r.connected).await;
    h.shutdown().await;
}

/// The first RPC of a client fails with `code` and an error that mentions
/// `why` in its message or, for a TLS alert, its source. Under TLS 1.3 a refused certificate shows here, not at
/// connect.
async fn refused_on_first_rpc(ch: &Channel, code: Code, why: &str) {
    let e = open(ch, hello(NODE, 0, &[])).await.err().expect("refused");
    assert_eq!(e.code(), code, "{e:?}");
    let source = e.source().map(|s| format!("{s:?}")).unwrap_or_default();
    assert!(e.message().contains(why) || source.contains(why), "{e:?}");
}

#[tokio::test]
async fn clients_without_an_agent_certificate_for_their_node_are_refused_on_their_first_rpc() {
    let (m, h, _) = serving("refusals", true).await;
    // The TLS handshake fails; the client hears the server's alert.
    let no_cert = channel(h.addr, Some((&m.ca, None))).await;
    refused_on_first_rpc(&no_cert, Code::Unknown, "CertificateRequired").await;

    let other_ca = Ca::new("another CA");
    let stranger = other_ca.agent(NODE);
    let ch = channel(h.addr, Some((&m.ca, Some(&stranger)))).await;
    refused_on_first_rpc(&ch, Code::Unknown, "UnknownCA").await;

    // The handshake succeeds but the certificate is not this node's agent.
    let other_node = m.ca.agent("node-b");
    let ch = channel(h.addr, Some((&m.ca, Some(&other_node)))).await;
    let why = "Hello names node \"node-a\" but the client certificate is node \"node-b\"'s";
    refused_on_first_rpc(&ch, Code::PermissionDenied, why).await;

    let not_agent = m.ca.client(vec![rcgen::SanType::DnsName(
        "someone.example".try_into().unwrap(),
    )]);
    let ch = channel(h.addr, Some((&m.ca, Some(&not_agent)))).await;
    refused_on_first_rpc(&ch, Code::PermissionDenied, "names no agent").await;

    // And the real agent still gets in.
    let ch = channel(h.addr, Some((&m.ca, Some(&m.agent)))).await;
    let mut agent = open(&ch, hello(NODE, 0, &[])).await.unwrap();
    snapshot_of(next(&mut agent).await.unwrap());
    assert!(h.reports.get("node-b").is_none());
    h.shutdown().await;
}

#[tokio::test]
async fn a_shared_agent_certificate_speaks_for_any_node_only_under_agent_identity_shared() {
    let m = mtls("shared-identity");
    let shared = m.ca.client(vec![rcgen::SanType::URI(
        "spiffe://ballast/agent".try_into().unwrap(),
    )]);
    let plan = plan_for(NODE, &[("web", service("192.0.2.10", &["10.0.0.1"]))]);

    // Node mode (the default) refuses it, saying why.
    let h = Harness::start(
        Security::Mtls(m.files.clone(), AgentIdentity::Node),
        Some(plan.clone()),
        true,
    )
    .await;
    let ch = channel(h.addr, Some((&m.ca, Some(&shared)))).await;
    refused_on_first_rpc(&ch, Code::PermissionDenied, "shared agent identity").await;
    h.shutdown().await;

    // Shared mode takes it for any node, and still keeps a node-bound
    // certificate to its node.
    let h = Harness::start(
        Security::Mtls(m.files.clone(), AgentIdentity::Shared),
        Some(plan),
        true,
    )
    .await;
    let ch = channel(h.addr, Some((&m.ca, Some(&shared)))).await;
    let mut agent = open(&ch, hello(NODE, 0, &[])).await.unwrap();
    snapshot_of(next(&mut agent).await.unwrap());
    let _other = open(&ch, hello("node-b", 0, &[])).await.unwrap();
    let ch = channel(h.addr, Some((&m.ca, Some(&m.agent)))).await;
    let why = "Hello names node \"node-b\" but the client certificate is node \"node-a\"'s";
    let e = open(&ch, hello("node-b", 0, &[]))
        .await
        .err()
        .expect("refused");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains(why), "{e:?}");
    h.shutdown().await;
}

#[tokio::test]
async fn a_rotated_client_ca_takes_effect_without_a_restart() {
    let (m, h, _) = serving("rotation", true).await;
    let next_ca = Ca::new("next CA");
    let rotated = next_ca.agent(NODE);
    let ch = channel(h.addr, Some((&m.ca, Some(&rotated)))).await;
    refused_on_first_rpc(&ch, Code::Unknown, "UnknownCA").await;

    // Trust both CAs (as a rotation does), then the new agent cert works.
    let both = format!("{}{}", m.ca.pem(), next_ca.pem());
    std::fs::write(&m.files.client_ca, both).unwrap();
    let ch = channel(h.addr, Some((&m.ca, Some(&rotated)))).await;
    let mut agent = open(&ch, hello(NODE, 0, &[])).await.unwrap();
    snapshot_of(next(&mut agent).await.unwrap());

    // A rewrite that does not parse keeps serving with the last good files.
    std::fs::write(&m.files.client_ca, "not a certificate").unwrap();
    let ch = channel(h.addr, Some((&m.ca, Some(&m.agent)))).await;
    open(&ch, hello(NODE, 0, &[])).await.unwrap();
    h.shutdown().await;
}

#[tokio::test]
async fn a_controller_that_has_not_planned_tells_agents_nothing() {
    let h = Harness::start(Security::Insecure, None, true).await;
    let ch = channel(h.addr, None).await;
    let e = open(&ch, hello(NODE, 3, &[7; 32])).await.err().unwrap();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(e.message().contains("not planned"), "{e:?}");
    // A malformed Hello is refused by name.
    h.plan(plan_for(NODE, &[]));
    let e = loop {
        let e = open(&ch, hello(NODE, 3, &[7; 3])).await.err().unwrap();
        if e.code() != Code::Unavailable {
            break e;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("applied_hash"), "{e:?}");
    h.shutdown().await;
}

#[tokio::test]
async fn an_agents_heartbeat_shows_in_the_controllers_metrics() {
    use ballast_controller::metrics::{Metrics, export_agents};
    use ballast_proto::v1::{
        BackendHealth, DropCounter, Heartbeat, ObjectKind, ObjectRef, SnatUsage,
    };

    let plan = plan_for(NODE, &[("web", service("192.0.2.10", &["10.0.0.1"]))]);
    let h = Harness::start(Security::Insecure, Some(plan), true).await;
    let metrics = std::sync::Arc::new(Metrics::new());
    let exporter = tokio::spawn(export_agents(metrics.clone(), h.reports.clone()));
    let ch = channel(h.addr, None).await;
    let mut agent = open(&ch, hello(NODE, 0, &[])).await.unwrap();
    snapshot_of(next(&mut agent).await.unwrap());
    let heartbeat = |in_use, healthy, packets| Heartbeat {
        applied_version: 0,
        conntrack: None,
        snat: vec![SnatUsage {
            address: vec![198, 51, 100, 3],
            ports_in_use: in_use,
            ports_total: 55_536,
        }],
        health: vec![BackendHealth {
            object: Some(ObjectRef {
                kind: ObjectKind::Service as i32,
                namespace: "apps".into(),
                name: "dns".into(),
            }),
            address: vec![10, 0, 0, 1],
            port: 53,
            healthy,
            since_ms: 10,
            last_error: String::new(),
        }],
        drops: vec![DropCounter {
            reason: "no_backend".into(),
            packets,
        }],
    };
    // Each heartbeat in turn, and lines the metrics then show (the second
    // replaces the first's values).
    let steps = [
        (
            heartbeat(12, false, 3),
            [
                r#"snat_ports_in_use{address="198.51.100.3",node="node-a"} 12"#,
                r#"snat_ports_total{address="198.51.100.3",node="node-a"} 55536"#,
                r#"backend_up{backend="10.0.0.1:53",node="node-a",object="Service apps/dns"} 0"#,
                r#"dropped_packets{node="node-a",reason="no_backend"} 3"#,
            ],
        ),
        (
            heartbeat(13, true, 4),
            [
                r#"snat_ports_in_use{address="198.51.100.3",node="node-a"} 13"#,
                r#"backends_down{node="node-a"} 0"#,
                r#"backend_up{backend="10.0.0.1:53",node="node-a",object="Service apps/dns"} 1"#,
                r#"dropped_packets{node="node-a",reason="no_backend"} 4"#,
            ],
        ),
    ];
    for (hb, lines) in steps {
        send(&agent.tx, agent_message::Kind::Heartbeat(hb)).await;
        let lines = lines.map(|l| format!("ballast_controller_agent_{l}"));
        tokio::time::timeout(std::time::Duration::from_secs(10), async {
            while !lines.iter().all(|l| metrics.render().contains(l)) {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{lines:?} never all in\n{}", metrics.render()));
    }
    exporter.abort();
    h.shutdown().await;
}

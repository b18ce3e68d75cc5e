//! Status from the agents' acks and nacks, through the real controller
//! loop, the link server and a real kube client against the fake API
//! server: a fake agent acks, and the VirtualServer and the Service it
//! serves say Programmed; an edit of the Service leaves the VirtualServer's
//! verdict alone; a controller restart rewrites nothing when the agent
//! reconnects within its grace; a nack naming the VirtualServer surfaces the agent's reason
//! in its status and in a Warning Event.

mod link_support;
mod support;

use std::time::Duration;

use ballast_controller::link::Security;
use ballast_fake_apiserver::FakeApiServer;
use ballast_proto::v1::{
    Ack, Nack, NodeState, ObjectKind, ObjectRef, ServiceError, agent_message,
    controller_message::Kind,
};
use ballast_proto::{apply_delta, content_hash};
use link_support::{AgentStream, LinkedController, channel, hello, next, open, send};
use serde_json::{Value, json};
use support::{
    apply, eventually, options_with_lease, pool, ready_node, server, static_spec,
    two_backends_spec, vs,
};

const REFUSAL: &str = "backend 198.51.100.12 is on the test agent's deny list";

fn lb_service() -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "shop", "namespace": "default"},
           "spec": {"type": "LoadBalancer", "loadBalancerClass": "ballast.dev/xdp",
                    "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}})
}

fn shop_endpoints(addresses: &[&str]) -> Value {
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
           "metadata": {"name": "shop-1", "namespace": "default",
                        "labels": {"kubernetes.io/service-name": "shop"}},
           "addressType": "IPv4",
           "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
           "endpoints": [{"addresses": addresses, "nodeName": "node-a", "conditions": {"ready": true}}]})
}

fn web_status(s: &FakeApiServer) -> Option<Value> {
    s.object(
        "ballast.dev/v1alpha1",
        "virtualservers",
        Some("default"),
        "web",
    )?
    .get("status")
    .cloned()
}

fn condition(conditions: &Value, type_: &str) -> Option<Value> {
    conditions
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .cloned()
}

fn probe_programmed_nodes(s: &FakeApiServer) -> Option<String> {
    let probe = s.object(
        "ballast.dev/v1alpha1",
        "virtualservers",
        Some("default"),
        "probe",
    )?;
    probe["status"]["programmedNodes"]
        .as_str()
        .map(str::to_string)
}

/// The Service's `ballast.dev/Programmed` condition.
fn shop_programmed(s: &FakeApiServer) -> Option<Value> {
    let svc = s.object("v1", "services", Some("default"), "shop")?;
    condition(&svc["status"]["conditions"], "ballast.dev/Programmed")
}

fn event(s: &FakeApiServer, reason: &str, about: &str) -> Option<Value> {
    s.objects("events.k8s.io/v1", "events")
        .into_iter()
        .find(|e| e["reason"] == reason && e["regarding"]["name"] == about)
}

async fn ack(agent: &AgentStream, held: &NodeState) {
    let ack = Ack {
        version: held.version,
        content_hash: content_hash(held).to_vec(),
    };
    send(&agent.tx, agent_message::Kind::Ack(ack)).await;
}

/// The next delta, applied to `held`.
async fn next_delta(agent: &mut AgentStream, held: &mut NodeState) -> ballast_proto::v1::Delta {
    let Some(Kind::Delta(delta)) = next(agent).await.unwrap().kind else {
        panic!("expected a delta");
    };
    apply_delta(held, &delta).unwrap();
    delta
}

fn names(delta: &ballast_proto::v1::Delta) -> Vec<String> {
    delta
        .upserted
        .iter()
        .map(|s| s.object.as_ref().unwrap().name.clone())
        .collect()
}

#[tokio::test]
async fn acks_and_nacks_become_programmed_status_and_events() {
    let s = server().await;
    let c = s.client();
    ready_node(&c, "node-a").await;
    apply(&c, pool(&["203.0.113.0/30"])).await;
    apply(&c, vs("web", static_spec(80))).await;
    apply(&c, lb_service()).await;
    apply(&c, shop_endpoints(&["10.0.0.1"])).await;
    let options = options_with_lease("a", Duration::from_secs(2), Duration::from_millis(200));
    let controller = LinkedController::start(s.client(), options, Security::Insecure).await;

    // Before any agent (once the grace for agents to connect has passed):
    // node-a directs nothing, and its line says why.
    let before = eventually("web without directors", || async {
        let st = web_status(&s)?;
        (st["programmedNodes"] == "0/0").then_some(st)
    })
    .await;
    assert_eq!(
        condition(&before["conditions"], "Programmed").unwrap()["reason"],
        "NoDirectors"
    );
    assert_eq!(before["nodes"][0]["name"], "node-a");
    assert_eq!(before["nodes"][0]["programmed"], false);
    assert_eq!(
        before["nodes"][0]["message"],
        "no agent has connected to the controller from this node"
    );

    let ch = channel(controller.addr, None).await;
    let mut agent = eventually("the leader serves node-a", || async {
        open(&ch, hello("node-a", 0, &[])).await.ok()
    })
    .await;
    // The node directed nothing until its agent came: what the controller
    // sends first brings it to its state then (empty), and the replan
    // with the agent present brings web and shop.
    let mut held = NodeState::default();
    while held.services.is_empty() {
        match next(&mut agent).await.unwrap().kind {
            Some(Kind::Snapshot(state)) => held = state,
            Some(Kind::Delta(delta)) => apply_delta(&mut held, &delta).unwrap(),
            other => panic!("expected the node's state, got {other:?}"),
        }
    }
    assert_eq!(held.services.len(), 2, "web and shop: {held:?}");
    ack(&agent, &held).await;

    // The ack: web is programmed on its one director node.
    let web = eventually("web programmed", || async {
        let st = web_status(&s)?;
        (st["programmedNodes"] == "1/1").then_some(st)
    })
    .await;
    let programmed = condition(&web["conditions"], "Programmed").unwrap();
    assert_eq!(
        (programmed["status"].as_str(), programmed["reason"].as_str()),
        (Some("True"), Some("Programmed"))
    );
    let generation = s
        .object(
            "ballast.dev/v1alpha1",
            "virtualservers",
            Some("default"),
            "web",
        )
        .unwrap()["metadata"]["generation"]
        .clone();
    assert_eq!(
        web["nodes"],
        json!([{"name": "node-a", "programmed": true, "announcing": true,
                "appliedVersion": held.version, "generation": generation}])
    );
    let normal = eventually("a Programmed event", || async {
        event(&s, "Programmed", "web")
    })
    .await;
    assert_eq!(normal["type"], "Normal");
    // The Service of our class gets the same verdict as a condition.
    eventually("shop programmed", || async {
        shop_programmed(&s).filter(|c| c["status"] == "True")
    })
    .await;
    eventually("a Programmed event on the Service", || async {
        event(&s, "Programmed", "shop")
    })
    .await;

    // An endpoint of shop changes: one delta with shop only. Until the
    // agent acks it, shop is pending and web stays programmed.
    apply(&c, shop_endpoints(&["10.0.0.1", "10.0.0.2"])).await;
    let delta = next_delta(&mut agent, &mut held).await;
    assert_eq!(names(&delta), ["shop"]);
    let shop = eventually("shop pending", || async {
        shop_programmed(&s).filter(|c| c["status"] == "False")
    })
    .await;
    assert_eq!(shop["reason"], "Pending");
    let still = condition(&web_status(&s).unwrap()["conditions"], "Programmed").unwrap();
    assert_eq!(
        still, programmed,
        "an edit of another object flipped web's Programmed"
    );
    ack(&agent, &held).await;
    let shop_before = eventually("shop programmed again", || async {
        shop_programmed(&s).filter(|c| c["status"] == "True")
    })
    .await;

    // A controller restart: the agent reconnects within the new leader's
    // grace with what it holds, the same content, so nothing is sent and
    // no status flips (no status write, no Event).
    controller.shutdown().await;
    drop(agent);
    s.clear_requests();
    let options = options_with_lease("b", Duration::from_secs(2), Duration::from_millis(200));
    let controller = LinkedController::start(s.client(), options, Security::Insecure).await;
    let ch = channel(controller.addr, None).await;
    let mut agent = eventually("the new leader serves node-a", || async {
        open(&ch, hello("node-a", held.version, &content_hash(&held)))
            .await
            .ok()
    })
    .await;
    // A new object proves a write pass ran: its status lands, and it
    // reaches the agent (as a delta on what it holds, or, when it raced
    // the new leader's settling, as the whole state numbered past it).
    apply(&c, vs("probe", static_spec(81))).await;
    let before_restart = held.version;
    while held.services.len() < 3 {
        match next(&mut agent).await.unwrap().kind {
            Some(Kind::Snapshot(state)) => held = state,
            Some(Kind::Delta(delta)) => apply_delta(&mut held, &delta).unwrap(),
            other => panic!("expected the node's state, got {other:?}"),
        }
    }
    assert!(held.version > before_restart);
    eventually("the new controller writes probe's status", || async {
        probe_programmed_nodes(&s)
    })
    .await;
    let rewritten: Vec<String> = s
        .requests()
        .into_iter()
        .filter(|r| {
            r.method != "GET"
                && (r.path.ends_with("/web/status") || r.path.ends_with("/shop/status"))
        })
        .map(|r| r.path)
        .collect();
    assert!(rewritten.is_empty(), "rewrote {rewritten:?}");
    assert_eq!(shop_programmed(&s).unwrap(), shop_before);
    ack(&agent, &held).await;
    eventually("probe programmed", || async {
        probe_programmed_nodes(&s).filter(|n| n == "1/1")
    })
    .await;
    assert_eq!(web_status(&s).unwrap()["programmedNodes"], "1/1");

    // web gains a backend the agent refuses: a nack naming web.
    apply(&c, vs("web", two_backends_spec())).await;
    let Some(Kind::Delta(delta)) = next(&mut agent).await.unwrap().kind else {
        panic!("expected a delta");
    };
    assert_eq!(names(&delta), ["web"]);
    let nack = Nack {
        version: delta.version,
        applied_version: held.version,
        errors: vec![ServiceError {
            object: Some(ObjectRef {
                kind: ObjectKind::VirtualServer as i32,
                namespace: "default".into(),
                name: "web".into(),
            }),
            field: "ports[0].backends[1].address".into(),
            reason: REFUSAL.into(),
            ..ServiceError::default()
        }],
        message: String::new(),
    };
    send(&agent.tx, agent_message::Kind::Nack(nack)).await;
    let refused = eventually("web refused", || async {
        let st = web_status(&s)?;
        let c = condition(&st["conditions"], "Programmed")?;
        (c["reason"] == "Refused").then_some(st)
    })
    .await;
    let c = condition(&refused["conditions"], "Programmed").unwrap();
    assert_eq!(c["status"], "False");
    assert_eq!(
        c["message"],
        format!(
            "node node-a: the agent refused version {}: ports[0].backends[1].address: {REFUSAL}",
            delta.version
        )
    );
    assert_eq!(refused["programmedNodes"], "0/1");
    assert_eq!(refused["nodes"][0]["programmed"], false);
    // Not programmed: no version holds web's current service for it.
    assert_eq!(refused["nodes"][0]["appliedVersion"], 0);
    assert!(
        refused["nodes"][0]["message"]
            .as_str()
            .unwrap()
            .contains(REFUSAL),
        "{refused}"
    );
    let warning = eventually("a Refused event", || async { event(&s, "Refused", "web") }).await;
    assert_eq!(warning["type"], "Warning");
    assert!(
        warning["note"].as_str().unwrap().contains(REFUSAL),
        "{warning}"
    );
    // The refusal names web only: shop, which the agent still holds, stays
    // programmed.
    assert_eq!(shop_programmed(&s).unwrap()["status"], "True");

    controller.shutdown().await;
}

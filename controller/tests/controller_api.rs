//! The controller's Kubernetes side, end to end: the real `kube::Client`,
//! reflectors and leader election against an in-process API endpoint with
//! list/watch/apply semantics (`ballast-fake-apiserver`).

mod support;

use std::sync::Arc;
use std::time::Duration;

use ballast_controller::k8s::crd_check::CrdCheckError;
use ballast_controller::k8s::run::{Handle, Options, start};
use ballast_controller::metrics::Metrics;
use ballast_fake_apiserver::FakeApiServer;
use kube::Client;
use serde_json::{Value, json};
use support::{
    apply, connected_agents, eventually, options_with_lease, pool, ready_node, server, static_spec,
    vs,
};

fn options(identity: &str) -> Options {
    options_with_lease(identity, Duration::from_secs(2), Duration::from_millis(200))
}

/// An API server with our CRDs, one Ready node and a four-address pool.
async fn cluster() -> (FakeApiServer, Client) {
    let s = server().await;
    let c = s.client();
    populate(&c).await;
    (s, c)
}

async fn populate(c: &Client) {
    ready_node(c, "node-a").await;
    apply(c, pool(&["203.0.113.0/30"])).await;
}

async fn controller(s: &FakeApiServer, identity: &str) -> (Handle, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let agents = connected_agents(&["node-a"]);
    let h = start(s.client(), options(identity), metrics.clone(), agents)
        .await
        .expect("controller starts");
    (h, metrics)
}

fn vs_status(s: &FakeApiServer, name: &str) -> Option<Value> {
    s.object(
        "ballast.dev/v1alpha1",
        "virtualservers",
        Some("default"),
        name,
    )
    .and_then(|o| o.get("status").cloned())
}

fn condition<'a>(status: &'a Value, type_: &str) -> Option<&'a Value> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// Waits until `name` has a status whose `type_` condition has `want`
/// status, and returns the whole status.
async fn wait_condition(s: &FakeApiServer, name: &str, type_: &str, want: &str) -> Value {
    eventually(&format!("{name} {type_}={want}"), || async {
        let st = vs_status(s, name)?;
        (condition(&st, type_)?["status"] == want).then_some(st)
    })
    .await
}

#[tokio::test]
async fn missing_crds_stop_the_controller_with_a_clear_error() {
    let s = FakeApiServer::start().await;
    let agents = connected_agents(&[]);
    let err = match start(s.client(), options("a"), Arc::new(Metrics::new()), agents).await {
        Ok(_) => panic!("started without CRDs"),
        Err(e) => e,
    };
    assert!(matches!(err, CrdCheckError::Missing { .. }), "{err}");
    assert!(err.to_string().contains("kubectl apply -f crds/"), "{err}");
}

#[tokio::test]
async fn allocates_writes_status_and_survives_restart() {
    let (s, c) = cluster().await;
    apply(&c, vs("web", static_spec(80))).await;
    apply(&c, vs("api", static_spec(80))).await;
    let (h, _) = controller(&s, "a").await;

    let web = wait_condition(&s, "web", "Ready", "True").await;
    let api = wait_condition(&s, "api", "Ready", "True").await;
    let web_addr = web["addresses"].clone();
    let api_addr = api["addresses"].clone();
    assert_ne!(web_addr, api_addr);
    assert_eq!(condition(&web, "Accepted").unwrap()["reason"], "Accepted");
    // The node's agent counts as connected (so the node directs) but no
    // link server runs in this test: nothing is sent, nothing programmed,
    // and the node's line says why.
    let programmed = condition(&web, "Programmed").unwrap();
    assert_eq!(
        (&programmed["status"], &programmed["reason"]),
        (&json!("False"), &json!("Pending"))
    );
    assert_eq!(web["programmedNodes"], "0/1");
    assert_eq!(web["backends"]["summary"], "1/1");
    assert_eq!(web["nodes"][0]["name"], "node-a");
    assert_eq!(web["nodes"][0]["programmed"], false);
    assert_eq!(
        web["nodes"][0]["message"],
        "the current service is not yet sent to the agent"
    );
    let pool_status = eventually("pool status", || async {
        let p = s.object("ballast.dev/v1alpha1", "addresspools", None, "public")?;
        (p["status"]["allocated"] == 2).then(|| p["status"].clone())
    })
    .await;
    assert_eq!(pool_status["total"], "4");
    // Status goes through server-side apply under one field manager.
    let writes: Vec<_> = s
        .requests()
        .into_iter()
        .filter(|r| {
            r.method == "PATCH" && r.path.ends_with("/status") && r.path.contains("ballast.dev")
        })
        .collect();
    assert!(!writes.is_empty());
    assert!(writes.iter().all(|r| {
        r.field_manager.as_deref() == Some("ballast-controller")
            && r.content_type
                .as_deref()
                .is_some_and(|c| c.starts_with("application/apply-patch"))
    }));

    // Restart: a new controller rebuilds the same allocation from status,
    // even with a new object created in between.
    h.shutdown().await;
    apply(&c, vs("new", static_spec(80))).await;
    let (h, _) = controller(&s, "a").await;
    let new = wait_condition(&s, "new", "Ready", "True").await;
    assert_eq!(vs_status(&s, "web").unwrap()["addresses"], web_addr);
    assert_eq!(vs_status(&s, "api").unwrap()["addresses"], api_addr);
    assert_ne!(new["addresses"], web_addr);
    assert_ne!(new["addresses"], api_addr);
    h.shutdown().await;
}

#[tokio::test]
async fn an_event_waits_for_the_status_write_that_lands() {
    let (s, c) = cluster().await;
    // 500 is not retried by the client: the controller's next pass must.
    s.fail_next("PATCH", "virtualservers/web/status", 500, 1);
    apply(&c, vs("web", static_spec(80))).await;
    let (h, _) = controller(&s, "a").await;
    wait_condition(&s, "web", "Ready", "True").await;
    eventually("the allocation event", || async {
        s.objects("events.k8s.io/v1", "events")
            .into_iter()
            .find(|e| e["reason"] == "AddressAllocated" && e["regarding"]["name"] == "web")
    })
    .await;
    let log = s.requests();
    let status_write = |r: &&ballast_fake_apiserver::RequestRecord| {
        r.method == "PATCH" && r.path.ends_with("/virtualservers/web/status")
    };
    let refused = log
        .iter()
        .position(|r| status_write(&r) && r.injected)
        .expect("the first status write was refused");
    let landed = log
        .iter()
        .position(|r| status_write(&r) && !r.injected && r.status == 200)
        .expect("a later status write landed");
    let first_event = log
        .iter()
        .position(|r| r.path.contains("/events") && r.method != "GET")
        .expect("an event was recorded");
    assert!(refused < landed);
    assert!(
        first_event > landed,
        "event recorded at request {first_event}, before the status landed at {landed}"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn invalid_objects_and_pool_shrink_become_conditions() {
    let (s, c) = cluster().await;
    apply(
        &c,
        vs(
            "good",
            json!({"addresses": ["203.0.113.1"], "ports": [{"port": 80}],
        "backends": {"static": [{"address": "198.51.100.11"}]}}),
        ),
    )
    .await;
    // TOA with DR: the apiserver's CEL rule would refuse it; the controller
    // must still cope if one gets through (e.g. CRDs from an older chart).
    apply(
        &c,
        vs(
            "bad",
            json!({"addresses": ["203.0.113.2"], "ports": [{"port": 80}],
        "forwarding": "DR", "clientAddress": "TOA",
        "backends": {"static": [{"address": "198.51.100.11"}]}}),
        ),
    )
    .await;
    let (h, _) = controller(&s, "a").await;

    let bad = wait_condition(&s, "bad", "Accepted", "False").await;
    let accepted = condition(&bad, "Accepted").unwrap();
    assert_eq!(accepted["reason"], "Invalid");
    assert!(
        accepted["message"]
            .as_str()
            .unwrap()
            .contains("spec.clientAddress")
    );
    assert_eq!(bad["addresses"], json!([]));
    wait_condition(&s, "good", "Ready", "True").await;

    // Shrink the pool so good's address leaves it.
    apply(&c, pool(&["203.0.113.2/31"])).await;
    let good = wait_condition(&s, "good", "Accepted", "False").await;
    assert_eq!(
        condition(&good, "Accepted").unwrap()["reason"],
        "AddressNotInPool"
    );
    assert!(good["addresses"].as_array().unwrap().is_empty());
    // An Event says so.
    let events = eventually("a warning event", || async {
        let evs = s.objects("events.k8s.io/v1", "events");
        evs.iter()
            .any(|e| e["reason"] == "AddressNotInPool" && e["type"] == "Warning")
            .then_some(evs)
    })
    .await;
    assert!(events.iter().any(|e| e["regarding"]["name"] == "good"));
    h.shutdown().await;
}

#[tokio::test]
async fn services_get_ingress_and_endpoint_changes_replan() {
    let (s, c) = cluster().await;
    apply(
        &c,
        json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"type": "LoadBalancer", "loadBalancerClass": "ballast.dev/xdp",
                 "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}),
    )
    .await;
    let slice = |ready: bool| {
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "web-1", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["10.0.0.1"], "nodeName": "node-a", "conditions": {"ready": ready}}]})
    };
    apply(&c, slice(true)).await;
    let (mut h, metrics) = controller(&s, "a").await;

    let ingress = eventually("service ingress", || async {
        let o = s.object("v1", "services", Some("default"), "web")?;
        let ing = o["status"]["loadBalancer"]["ingress"].as_array()?.clone();
        (!ing.is_empty()).then_some(ing)
    })
    .await;
    assert_eq!(ingress[0]["ip"], "203.0.113.0");
    assert_eq!(ingress[0]["ipMode"], "VIP");

    let weight = |h: &Handle| {
        let plan = h.plans.borrow().clone()?;
        let np = plan.nodes.get("node-a")?;
        let sp = np.services.values().next()?;
        Some(sp.ports[0].backends[0].weight)
    };
    eventually("weight 1", || async {
        (weight(&h) == Some(1)).then_some(())
    })
    .await;
    apply(&c, slice(false)).await;
    h.plans.changed().await.unwrap();
    eventually("weight 0 after the endpoint went unready", || async {
        (weight(&h) == Some(0)).then_some(())
    })
    .await;
    // A change that comes alone re-resolves only the objects using the
    // slice. The controller's own status writes come back as Service
    // events (which plan everything), so the flips repeat until one
    // arrives alone, as nearly all do.
    let mut ready = false;
    for _ in 0..10 {
        if metrics.endpoint_replans.get() >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        ready = !ready;
        apply(&c, slice(ready)).await;
        let want = u32::from(ready);
        eventually("the flip planned", || async {
            (weight(&h) == Some(want)).then_some(())
        })
        .await;
    }
    assert!(metrics.endpoint_replans.get() >= 1, "{}", metrics.render());
    if ready {
        apply(&c, slice(false)).await;
        eventually("weight 0 again", || async {
            (weight(&h) == Some(0)).then_some(())
        })
        .await;
    }
    let svc = eventually("Ready False on the Service", || async {
        let o = s.object("v1", "services", Some("default"), "web")?;
        o["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "ballast.dev/Ready" && c["status"] == "False")
            .cloned()
    })
    .await;
    assert_eq!(svc["reason"], "NoReadyBackends");
    h.shutdown().await;
}

#[tokio::test]
async fn one_of_two_controllers_leads_and_the_other_takes_over() {
    let (s, c) = cluster().await;
    apply(&c, vs("web", static_spec(80))).await;
    let (a, ma) = controller(&s, "a").await;
    let (b, mb) = controller(&s, "b").await;
    wait_condition(&s, "web", "Ready", "True").await;
    // Exactly one leader, and only it writes.
    let (leader, follower, lm, fm) = eventually("a single leader", || async {
        match (*a.leader.borrow(), *b.leader.borrow()) {
            (true, false) => Some(("a", "b", ma.clone(), mb.clone())),
            (false, true) => Some(("b", "a", mb.clone(), ma.clone())),
            _ => None,
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(lm.status_writes.get() > 0, "{leader} led but wrote nothing");
    assert_eq!(
        fm.status_writes.get(),
        0,
        "{follower} wrote without leading"
    );
    assert!(
        fm.reconciles.get() > 0,
        "{follower} should plan while standing by"
    );

    // The leader stops (releasing the lease); the other takes over and
    // writes the next change.
    let (survivor, survivor_metrics) = if leader == "a" {
        a.shutdown().await;
        (b, mb)
    } else {
        b.shutdown().await;
        (a, ma)
    };
    eventually("takeover", || async {
        (*survivor.leader.borrow()).then_some(())
    })
    .await;
    apply(&c, vs("later", static_spec(80))).await;
    wait_condition(&s, "later", "Ready", "True").await;
    assert!(survivor_metrics.status_writes.get() > 0);
    survivor.shutdown().await;
}

#[tokio::test]
async fn watch_expiry_forces_a_relist_and_nothing_is_missed() {
    let (s, c) = cluster().await;
    let (h, _) = controller(&s, "a").await;
    eventually("ready", || async { (*h.ready.borrow()).then_some(()) }).await;
    let lists_before = s
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/virtualservers") && !r.query.contains("watch"))
        .count();
    s.compact();
    apply(&c, vs("after-compaction", static_spec(80))).await;
    wait_condition(&s, "after-compaction", "Ready", "True").await;
    let lists_after = s
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/virtualservers") && !r.query.contains("watch"))
        .count();
    assert!(
        lists_after > lists_before,
        "the 410 should have forced a relist"
    );
    h.shutdown().await;
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    conn.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn health_readiness_and_metrics_endpoints() {
    let s = server().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (ready_tx, ready_rx) = tokio::sync::watch::channel(false);
    let metrics = Arc::new(Metrics::new());
    tokio::spawn(ballast_controller::http::serve(
        listener,
        metrics.clone(),
        ready_rx,
    ));
    assert!(http_get(addr, "/healthz").await.starts_with("HTTP/1.0 200"));
    assert!(http_get(addr, "/readyz").await.starts_with("HTTP/1.0 503"));
    ready_tx.send(true).unwrap();
    assert!(http_get(addr, "/readyz").await.starts_with("HTTP/1.0 200"));

    // Metrics reflect a real run: plans made, leadership, pool usage.
    let c = s.client();
    populate(&c).await;
    apply(&c, vs("web", static_spec(80))).await;
    let agents = connected_agents(&["node-a"]);
    let h = start(s.client(), options("a"), metrics.clone(), agents)
        .await
        .unwrap();
    wait_condition(&s, "web", "Ready", "True").await;
    let body = eventually("pool gauge", || async {
        let body = http_get(addr, "/metrics").await;
        body.contains("ballast_controller_pool_addresses_allocated{pool=\"public\"} 1")
            .then_some(body)
    })
    .await;
    assert!(body.contains("ballast_controller_leader 1"), "{body}");
    assert!(
        body.contains("ballast_controller_reconciles_total"),
        "{body}"
    );
    assert!(
        body.contains("ballast_controller_reconcile_duration_seconds_bucket"),
        "{body}"
    );
    h.shutdown().await;
}

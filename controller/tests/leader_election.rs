//! Leader election's promises beyond "one of two leads and the other takes
//! over" (in `controller_api.rs`): how long a hand-over takes, that a live
//! lease is never taken, and that a leader which cannot renew steps down
//! before anyone else may take the lease. Real `kube::Client` against
//! `ballast-fake-apiserver`.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ballast_controller::k8s::run::{Handle, Options, start};
use ballast_controller::metrics::Metrics;
use ballast_fake_apiserver::FakeApiServer;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::{apply, eventually, options_with_lease, pool, server, static_spec, vs};

const LEASE: &str = "ballast-controller";

async fn controller(s: &FakeApiServer, options: Options) -> (Handle, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let agents = ballast_controller::link::AgentReports::new();
    let h = start(s.client(), options, metrics.clone(), agents)
        .await
        .expect("controller starts");
    (h, metrics)
}

async fn until_leading(h: &Handle, who: &str) {
    eventually(&format!("{who} leads"), || async {
        (*h.leader.borrow()).then_some(())
    })
    .await;
}

fn lease_spec(s: &FakeApiServer) -> Value {
    s.object("coordination.k8s.io/v1", "leases", Some("default"), LEASE)
        .expect("the lease exists")["spec"]
        .clone()
}

#[tokio::test]
async fn a_live_lease_is_left_alone_and_an_expired_one_is_taken() {
    let s = server().await;
    let duration = Duration::from_secs(3);
    let since = Instant::now();
    // A holder that renewed just now, then died without releasing.
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": LEASE, "namespace": "default"},
        "spec": {"holderIdentity": "gone", "leaseDurationSeconds": duration.as_secs(),
                 "acquireTime": now, "renewTime": now, "leaseTransitions": 0}
    }))
    .unwrap();
    Api::<Lease>::namespaced(s.client(), "default")
        .create(&PostParams::default(), &lease)
        .await
        .unwrap();

    let options = options_with_lease("a", duration, Duration::from_millis(300));
    let (a, metrics) = controller(&s, options).await;
    until_leading(&a, "a").await;
    let waited = since.elapsed();
    assert!(
        waited >= duration,
        "took a lease renewed {waited:?} ago, which had {duration:?} to run"
    );
    let spec = lease_spec(&s);
    assert_eq!(spec["holderIdentity"], "a");
    assert_eq!(spec["leaseTransitions"], 1);
    assert_eq!(metrics.leader.get(), 1);
    a.shutdown().await;
}

#[tokio::test]
async fn a_released_lease_is_taken_over_within_a_retry_period() {
    let s = server().await;
    // A long lease: only the release can hand it over this fast.
    let (duration, retry) = (Duration::from_secs(30), Duration::from_secs(1));
    let (a, _) = controller(&s, options_with_lease("a", duration, retry)).await;
    until_leading(&a, "a").await;
    let (b, b_metrics) = controller(&s, options_with_lease("b", duration, retry)).await;
    tokio::time::sleep(2 * retry).await;
    assert!(!*b.leader.borrow(), "b took a live lease");

    let released = Instant::now();
    a.shutdown().await;
    // Released (or already taken by b), not left to expire.
    assert_ne!(lease_spec(&s)["holderIdentity"], "a", "a kept the lease");
    until_leading(&b, "b").await;
    let took = released.elapsed();
    // One retry period, plus slack for a loaded machine; far below the
    // 30 s a standby would wait if it only noticed the lease expiring.
    assert!(
        took < 2 * retry + Duration::from_secs(2),
        "b took {took:?} to take over a released lease"
    );
    assert_eq!(lease_spec(&s)["holderIdentity"], "b");
    assert_eq!(b_metrics.leader.get(), 1);
    b.shutdown().await;
}

#[tokio::test]
async fn a_leader_that_cannot_renew_steps_down_before_its_lease_expires() {
    let s = server().await;
    let duration = Duration::from_secs(4);
    let options = options_with_lease("a", duration, Duration::from_millis(400));
    let (a, metrics) = controller(&s, options).await;
    until_leading(&a, "a").await;

    // Every Lease request fails from now on: another replica that can
    // still reach the API may take the lease once it expires, so this one
    // must have stopped writing by then.
    s.fail_next("*", &format!("/leases/{LEASE}"), 500, usize::MAX);
    let failing = Instant::now();
    eventually("a steps down", || async {
        (!*a.leader.borrow()).then_some(())
    })
    .await;
    let led_on = failing.elapsed();
    assert!(
        led_on < duration,
        "a kept leading {led_on:?} without renewing a {duration:?} lease"
    );
    assert_eq!(metrics.leader.get(), 0);
    a.shutdown().await;
}

/// Creates Node `name` with Ready=False, as on a fresh cluster before the
/// CNI is up: no node is usable, so a new leader has no agent to wait for
/// and is settled from its first plan.
async fn not_ready_node(client: &kube::Client, name: &str) {
    let api: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    api.create(&PostParams::default(), &node).await.unwrap();
    let status = json!({"status": {"conditions": [
        {"type": "Ready", "status": "False", "reason": "KubeletNotReady"}]}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();
}

/// Status is written within seconds of any start, not at the periodic
/// resync. The leadership wake-up and the world wake-up that the election
/// sends with it race in the loop; whichever came first, the plan has to
/// be remade with the new leadership and settledness, or the write pass is
/// refused (not settled) and nothing is written until the resync, 60 s in
/// the binary. Half the starts lease only after the caches synced (the
/// first lease request fails), the case where the two wake-ups arrive
/// together after a first plan made as a standby; the others take the
/// lease at once. Each start has its own API server.
#[tokio::test]
async fn every_start_with_no_usable_node_writes_status_within_seconds() {
    const STARTS: usize = 16;
    // Generous against a loaded machine; the race's outcome was 60 s.
    const BOUND: Duration = Duration::from_secs(3);
    let mut late = Vec::new();
    for n in 0..STARTS {
        let s = server().await;
        let c = s.client();
        not_ready_node(&c, "node-a").await;
        apply(&c, pool(&["203.0.113.0/30"])).await;
        apply(&c, vs("web", static_spec(80))).await;
        if n % 2 == 1 {
            s.fail_next("*", &format!("/leases/{LEASE}"), 500, 1);
        }
        let mut options =
            options_with_lease("a", Duration::from_secs(15), Duration::from_millis(200));
        // The binary's resync: status must not wait for it.
        options.resync = Duration::from_secs(60);
        let started = Instant::now();
        let (h, _) = controller(&s, options).await;
        let written = loop {
            let status = s
                .object(
                    "ballast.dev/v1alpha1",
                    "virtualservers",
                    Some("default"),
                    "web",
                )
                .and_then(|o| o.get("status").cloned());
            if let Some(status) = status.filter(|st| st["conditions"].is_array()) {
                break Some(status);
            }
            if started.elapsed() > BOUND {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        match written {
            Some(status) => {
                // Written by the leader, with no node to direct.
                assert!(*h.leader.borrow(), "start {n}: status written by a standby");
                assert!(*h.settled.borrow(), "start {n}: written before settling");
                assert_eq!(status["programmedNodes"], "0/0", "start {n}: {status}");
            }
            None => late.push(n),
        }
        h.shutdown().await;
    }
    assert!(
        late.is_empty(),
        "{} of {STARTS} starts wrote no status within {BOUND:?}: {late:?}",
        late.len()
    );
}

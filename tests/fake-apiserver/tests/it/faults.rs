//! Fault injection and the request log.

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};
use kube::runtime::{watcher, watcher::Event};

use crate::common::{api_error, lease, next, server};

#[tokio::test]
async fn injected_errors_surface_as_api_errors() {
    let (srv, client) = server().await;
    let leases: Api<Lease> = Api::default_namespaced(client);
    leases
        .create(&PostParams::default(), &lease("x"))
        .await
        .unwrap();

    srv.fail_next("GET", "/leases/x", 500, 1);
    let err = api_error(leases.get("x").await);
    assert_eq!((err.code, err.reason.as_str()), (500, "InternalError"));
    leases.get("x").await.unwrap();

    srv.fail_next("post", "/leases", 409, 1);
    let err = api_error(leases.create(&PostParams::default(), &lease("y")).await);
    assert_eq!(err.code, 409);
    leases
        .create(&PostParams::default(), &lease("y"))
        .await
        .unwrap();

    // kube's client retries 503 by itself: two failures are invisible to the caller.
    srv.clear_requests();
    srv.fail_next("GET", "/leases/x", 503, 2);
    leases.get("x").await.unwrap();
    let log = srv.requests();
    let statuses: Vec<(u16, bool)> = log.iter().map(|r| (r.status, r.injected)).collect();
    assert_eq!(statuses, [(503, true), (503, true), (200, false)]);
    assert_eq!(
        log[0].path,
        "/apis/coordination.k8s.io/v1/namespaces/default/leases/x"
    );
}

#[tokio::test]
async fn a_watcher_retries_a_failed_initial_list() {
    let (srv, client) = server().await;
    let leases: Api<Lease> = Api::default_namespaced(client);
    leases
        .create(&PostParams::default(), &lease("x"))
        .await
        .unwrap();
    // kube builds list URLs as `leases?&limit=500`: match on the parameter.
    srv.fail_next("GET", "limit=500", 500, 1);
    let mut events = watcher(leases, watcher::Config::default()).boxed();
    assert!(matches!(next(&mut events).await, Ok(Event::Init)));
    let failed = next(&mut events).await;
    assert!(
        matches!(failed, Err(watcher::Error::InitialListFailed(_))),
        "{failed:?} {:#?}",
        srv.requests()
    );
    assert!(matches!(next(&mut events).await, Ok(Event::Init)));
    assert!(matches!(next(&mut events).await, Ok(Event::InitApply(_))));
    assert!(matches!(next(&mut events).await, Ok(Event::InitDone)));
    let injected = srv.requests().into_iter().filter(|r| r.injected).count();
    assert_eq!(injected, 1);
}

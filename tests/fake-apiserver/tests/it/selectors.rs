//! Label and field selectors on lists and watches.

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{watcher, watcher::Event};
use serde_json::json;

use crate::common::{api_error, next, server, service};

async fn names(api: &Api<Service>, lp: ListParams) -> Vec<String> {
    api.list(&lp)
        .await
        .unwrap()
        .iter()
        .map(|s| s.name_any())
        .collect()
}

#[tokio::test]
async fn list_filters_by_labels_and_fields() {
    let (_srv, client) = server().await;
    let svcs: Api<Service> = Api::default_namespaced(client.clone());
    for (name, labels) in [
        ("web-1", vec![("app", "web"), ("tier", "front")]),
        ("web-2", vec![("app", "web")]),
        ("db-1", vec![("app", "db")]),
        ("plain", vec![]),
    ] {
        svcs.create(&PostParams::default(), &service(name, &labels))
            .await
            .unwrap();
    }
    let lp = ListParams::default;
    assert_eq!(
        names(&svcs, lp().labels("app=web")).await,
        ["web-1", "web-2"]
    );
    assert_eq!(
        names(&svcs, lp().labels("app!=web")).await,
        ["db-1", "plain"]
    );
    assert_eq!(
        names(&svcs, lp().labels("app in (web,db),!tier")).await,
        ["db-1", "web-2"]
    );
    assert_eq!(
        names(&svcs, lp().labels("app notin (web)")).await,
        ["db-1", "plain"]
    );
    assert_eq!(names(&svcs, lp().labels("tier")).await, ["web-1"]);
    assert_eq!(
        names(&svcs, lp().fields("metadata.name=web-2")).await,
        ["web-2"]
    );
    assert_eq!(
        names(&svcs, lp().fields("metadata.name!=web-2").labels("app=web")).await,
        ["web-1"]
    );
    assert_eq!(
        names(&svcs, lp().fields("spec.type=LoadBalancer"))
            .await
            .len(),
        4
    );

    let all: Api<Service> = Api::all(client);
    assert_eq!(
        names(&all, lp().fields("metadata.namespace=default"))
            .await
            .len(),
        4
    );
    assert!(
        names(&all, lp().fields("metadata.namespace=other"))
            .await
            .is_empty()
    );

    assert_eq!(
        api_error(svcs.list(&lp().labels("app in web")).await).code,
        400
    );
    let unsupported = api_error(svcs.list(&lp().fields("spec.selector=x")).await);
    assert_eq!(unsupported.code, 400);
    assert!(
        unsupported.message.contains("field label not supported"),
        "{}",
        unsupported.message
    );
}

#[tokio::test]
async fn watch_follows_objects_in_and_out_of_the_selection() {
    let (_srv, client) = server().await;
    let svcs: Api<Service> = Api::default_namespaced(client);
    svcs.create(&PostParams::default(), &service("web-1", &[("app", "web")]))
        .await
        .unwrap();
    svcs.create(&PostParams::default(), &service("db-1", &[("app", "db")]))
        .await
        .unwrap();

    let mut events = watcher(svcs.clone(), watcher::Config::default().labels("app=web")).boxed();
    let mut initial = Vec::new();
    loop {
        match next(&mut events).await.unwrap() {
            Event::InitApply(s) => initial.push(s.name_any()),
            Event::InitDone => break,
            _ => {}
        }
    }
    assert_eq!(initial, ["web-1"]);

    let set_app = |app: &str| Patch::Merge(json!({"metadata": {"labels": {"app": app}}}));
    // Moving into the selection is an ADDED, out of it a DELETED.
    svcs.patch("db-1", &PatchParams::default(), &set_app("web"))
        .await
        .unwrap();
    match next(&mut events).await.unwrap() {
        Event::Apply(s) => assert_eq!(s.name_any(), "db-1"),
        _ => panic!("expected db-1 to enter the selection"),
    }
    svcs.patch("web-1", &PatchParams::default(), &set_app("other"))
        .await
        .unwrap();
    match next(&mut events).await.unwrap() {
        Event::Delete(s) => {
            assert_eq!(s.name_any(), "web-1");
            assert_eq!(s.labels()["app"], "other");
        }
        _ => panic!("expected web-1 to leave the selection"),
    }
    // Changes outside the selection are invisible.
    svcs.create(
        &PostParams::default(),
        &service("cache", &[("app", "cache")]),
    )
    .await
    .unwrap();
    svcs.create(&PostParams::default(), &service("web-3", &[("app", "web")]))
        .await
        .unwrap();
    match next(&mut events).await.unwrap() {
        Event::Apply(s) => assert_eq!(s.name_any(), "web-3"),
        _ => panic!("expected web-3"),
    }
}

//! Starting, stopping, and kinds disappearing under open watches.

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::CustomResourceExt;
use kube::ResourceExt;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};

use crate::common::{WIDGET_CRD, Widget, WidgetSpec, lease, next, server, within};

#[tokio::test]
async fn shutdown_ends_watches_and_stops_serving() {
    let (srv, client) = server().await;
    let leases: Api<Lease> = Api::default_namespaced(client);
    leases
        .create(&PostParams::default(), &lease("a"))
        .await
        .unwrap();
    let mut watch = leases
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    match next(&mut watch).await.unwrap() {
        WatchEvent::Added(l) => assert_eq!(l.name_any(), "a"),
        other => panic!("expected the synthetic ADDED, got {other:?}"),
    }
    within(srv.shutdown()).await;
    // The open watch ends...
    while within(watch.next()).await.is_some() {}
    // ...and nothing answers any more: a transport error, not an API error.
    let err = leases.get("a").await.unwrap_err();
    assert!(!matches!(err, kube::Error::Api(_)), "{err:?}");
}

#[tokio::test]
async fn uninstalling_a_crd_deletes_its_objects_and_ends_their_watches() {
    let (srv, client) = server().await;
    srv.install_crd(&Widget::crd());
    let widgets: Api<Widget> = Api::default_namespaced(client);
    widgets
        .create(
            &PostParams::default(),
            &Widget::new(
                "w",
                WidgetSpec {
                    size: 1,
                    color: None,
                },
            ),
        )
        .await
        .unwrap();
    let start = srv.resource_version().to_string();
    let mut watch = widgets
        .watch(&WatchParams::default(), &start)
        .await
        .unwrap()
        .boxed();
    srv.uninstall_crd(WIDGET_CRD);
    match next(&mut watch).await.unwrap() {
        WatchEvent::Deleted(w) => assert_eq!(w.name_any(), "w"),
        other => panic!("expected DELETED, got {other:?}"),
    }
    while let Some(event) = within(watch.next()).await {
        assert!(matches!(event, Ok(WatchEvent::Bookmark(_))), "{event:?}");
    }
    // Installing it again serves an empty collection.
    srv.install_crd(&Widget::crd());
    assert!(
        widgets
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

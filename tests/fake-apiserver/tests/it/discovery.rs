//! Discovery of built-ins and CRDs, and CRDs created through the API.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use kube::api::{Api, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::{Discovery, Scope};
use kube::runtime::wait::{await_condition, conditions};

use crate::common::{WIDGET_CRD, Widget, api_error, server, within};

fn widget_gvk() -> GroupVersionKind {
    GroupVersionKind::gvk("test.ballast.dev", "v1", "Widget")
}

#[tokio::test]
async fn discovery_finds_installed_crds_and_builtins_until_uninstalled() {
    let (srv, client) = server().await;
    srv.install_crd(&Widget::crd());

    for discovery in [
        Discovery::new(client.clone()).run().await.unwrap(),
        Discovery::new(client.clone())
            .run_aggregated()
            .await
            .unwrap(),
    ] {
        let (ar, caps) = discovery
            .resolve_gvk(&widget_gvk())
            .expect("Widget discovered");
        assert_eq!(ar.plural, "widgets");
        assert_eq!(ar.api_version, "test.ballast.dev/v1");
        assert_eq!(caps.scope, Scope::Namespaced);
        assert!(
            caps.subresources
                .iter()
                .any(|(sub, _)| sub.plural == "status")
        );
        assert!(caps.operations.iter().any(|v| v == "watch"));

        let (svc, caps) = discovery
            .resolve_gvk(&GroupVersionKind::gvk("", "v1", "Service"))
            .expect("Service discovered");
        assert_eq!(svc.plural, "services");
        assert!(
            caps.subresources
                .iter()
                .any(|(sub, _)| sub.plural == "status")
        );
        let (_, caps) = discovery
            .resolve_gvk(&GroupVersionKind::gvk("", "v1", "Node"))
            .expect("Node discovered");
        assert_eq!(caps.scope, Scope::Cluster);
        let (lease, caps) = discovery
            .resolve_gvk(&GroupVersionKind::gvk("coordination.k8s.io", "v1", "Lease"))
            .expect("Lease discovered");
        assert_eq!(lease.plural, "leases");
        assert!(caps.subresources.is_empty());
        assert!(
            discovery
                .resolve_gvk(&GroupVersionKind::gvk(
                    "discovery.k8s.io",
                    "v1",
                    "EndpointSlice"
                ))
                .is_some()
        );
        assert!(
            discovery
                .resolve_gvk(&GroupVersionKind::gvk("events.k8s.io", "v1", "Event"))
                .is_some()
        );
    }

    srv.uninstall_crd(WIDGET_CRD);
    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    assert!(discovery.resolve_gvk(&widget_gvk()).is_none());
    assert!(!discovery.has_group("test.ballast.dev"));
    let widgets: Api<Widget> = Api::default_namespaced(client);
    let err = api_error(widgets.list(&Default::default()).await);
    assert_eq!(err.code, 404);
    assert_eq!(err.reason, "NotFound");
}

#[tokio::test]
async fn version_and_unknown_paths() {
    let (_srv, client) = server().await;
    let info = client.apiserver_version().await.unwrap();
    assert_eq!(info.major, "1");
    let err = api_error(client.list_api_group_resources("nope.example.com/v1").await);
    assert_eq!(err.code, 404);
}

#[tokio::test]
async fn a_crd_created_through_the_api_becomes_established_and_served() {
    let (srv, client) = server().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &Widget::crd())
        .await
        .unwrap();
    within(await_condition(
        crds.clone(),
        WIDGET_CRD,
        conditions::is_crd_established(),
    ))
    .await
    .unwrap();

    let widgets: Api<Widget> = Api::default_namespaced(client.clone());
    let w = Widget::new(
        "w1",
        crate::common::WidgetSpec {
            size: 3,
            color: None,
        },
    );
    widgets.create(&PostParams::default(), &w).await.unwrap();
    assert_eq!(
        srv.object("test.ballast.dev/v1", "widgets", Some("default"), "w1")
            .unwrap()["spec"]["size"],
        3
    );

    // Deleting the CRD deletes its objects and stops serving the kind.
    crds.delete(WIDGET_CRD, &Default::default()).await.unwrap();
    assert!(
        srv.object("test.ballast.dev/v1", "widgets", Some("default"), "w1")
            .is_none()
    );
    assert_eq!(api_error(widgets.get("w1").await).code, 404);

    // A CRD whose name is not plural.group is invalid.
    let mut bad = Widget::crd();
    bad.metadata.name = Some("widgets".into());
    let err = api_error(crds.create(&PostParams::default(), &bad).await);
    assert_eq!(err.code, 422);
    assert_eq!(err.reason, "Invalid");
}

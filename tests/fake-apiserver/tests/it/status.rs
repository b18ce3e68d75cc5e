//! The status subresource: what main-resource and `/status` writes may change.

use k8s_openapi::api::core::v1::Service;
use kube::CustomResourceExt;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::common::{Widget, WidgetSpec, WidgetStatus, server, service};

#[tokio::test]
async fn status_writes_change_only_status_and_main_writes_never_status() {
    let (srv, client) = server().await;
    srv.install_crd(&Widget::crd());
    let widgets: Api<Widget> = Api::default_namespaced(client);

    // Status in a create is dropped.
    let mut w = Widget::new(
        "w",
        WidgetSpec {
            size: 1,
            color: None,
        },
    );
    w.status = Some(WidgetStatus {
        ready: true,
        message: None,
    });
    let created = widgets.create(&PostParams::default(), &w).await.unwrap();
    assert_eq!(created.status, None);
    assert_eq!(created.metadata.generation, Some(1));

    // Server-side apply to /status sets status only.
    let applied = widgets
        .patch_status(
            "w",
            &PatchParams::apply("status-writer"),
            &Patch::Apply(json!({
                "apiVersion": "test.ballast.dev/v1",
                "kind": "Widget",
                "spec": {"size": 99},
                "status": {"ready": true, "message": "up"},
            })),
        )
        .await
        .unwrap();
    assert_eq!(
        applied.status,
        Some(WidgetStatus {
            ready: true,
            message: Some("up".into())
        })
    );
    assert_eq!(applied.spec.size, 1);
    assert_eq!(applied.metadata.generation, Some(1));
    let status_entry = applied
        .managed_fields()
        .iter()
        .find(|m| m.manager.as_deref() == Some("status-writer"))
        .cloned()
        .expect("status-writer owns fields");
    assert_eq!(status_entry.operation.as_deref(), Some("Apply"));
    assert_eq!(status_entry.subresource.as_deref(), Some("status"));

    // A main-resource patch carrying status changes spec, not status.
    let patched = widgets
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 2}, "status": {"ready": false}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.spec.size, 2);
    assert_eq!(patched.metadata.generation, Some(2));
    assert!(patched.status.as_ref().unwrap().ready);

    // replace_status: status changes, spec edits in the same body are ignored.
    let mut current = widgets.get("w").await.unwrap();
    current.status.as_mut().unwrap().ready = false;
    current.spec.size = 1000;
    let replaced = widgets
        .replace_status("w", &PostParams::default(), &current)
        .await
        .unwrap();
    assert!(!replaced.status.as_ref().unwrap().ready);
    assert_eq!(replaced.spec.size, 2);
    assert_eq!(replaced.metadata.generation, Some(2));
    assert_eq!(
        widgets.get_status("w").await.unwrap().status,
        replaced.status
    );

    // Custom resources do not accept strategic merge patches.
    let err = widgets
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"size": 3}})),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 415));
}

#[tokio::test]
async fn service_load_balancer_status() {
    let (_srv, client) = server().await;
    let svcs: Api<Service> = Api::default_namespaced(client);
    svcs.create(&PostParams::default(), &service("lb", &[]))
        .await
        .unwrap();
    let ingress = json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}}});
    let with_status = svcs
        .patch_status("lb", &PatchParams::default(), &Patch::Merge(&ingress))
        .await
        .unwrap();
    let ip = |s: &Service| {
        s.status
            .as_ref()
            .and_then(|st| st.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .map(|i| i[0].ip.clone())
    };
    assert_eq!(ip(&with_status), Some(Some("192.0.2.10".into())));
    // A main-resource patch cannot clear it.
    let after = svcs
        .patch(
            "lb",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": null, "metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(ip(&after), Some(Some("192.0.2.10".into())));
    assert_eq!(after.labels()["x"], "y");
}

//! Server-side apply: ownership, conflicts, force, removal, no-ops.

use kube::CustomResourceExt;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use crate::common::{Widget, api_error, server};

fn config(spec: Value, labels: Value) -> Patch<Value> {
    Patch::Apply(json!({
        "apiVersion": "test.ballast.dev/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "labels": labels},
        "spec": spec,
    }))
}

fn managers(w: &Widget) -> Vec<(String, String)> {
    w.managed_fields()
        .iter()
        .map(|m| (m.manager.clone().unwrap(), m.operation.clone().unwrap()))
        .collect()
}

#[tokio::test]
async fn managers_share_apply_and_conflict() {
    let (srv, client) = server().await;
    srv.install_crd(&Widget::crd());
    let widgets: Api<Widget> = Api::default_namespaced(client);

    // Apply creates.
    let a = widgets
        .patch(
            "w",
            &PatchParams::apply("alpha"),
            &config(json!({"size": 1}), json!({"owner": "alpha"})),
        )
        .await
        .unwrap();
    assert_eq!(a.spec.size, 1);
    let created = srv
        .requests()
        .into_iter()
        .find(|r| r.method == "PATCH")
        .unwrap();
    assert_eq!(created.status, 201);
    assert_eq!(created.field_manager.as_deref(), Some("alpha"));
    assert_eq!(
        created.content_type.as_deref(),
        Some("application/apply-patch+yaml")
    );

    // A second manager with disjoint fields coexists.
    let b = widgets
        .patch(
            "w",
            &PatchParams::apply("beta"),
            &config(json!({"size": 1, "color": "red"}), json!({"team": "b"})),
        )
        .await
        .unwrap();
    assert_eq!(b.spec.size, 1);
    assert_eq!(b.spec.color.as_deref(), Some("red"));
    assert_eq!(b.labels()["owner"], "alpha");
    assert_eq!(b.labels()["team"], "b");
    assert_eq!(
        managers(&b),
        [
            ("alpha".to_string(), "Apply".to_string()),
            ("beta".to_string(), "Apply".to_string())
        ]
    );

    // Changing a field another manager owns conflicts...
    let err = api_error(
        widgets
            .patch(
                "w",
                &PatchParams::apply("beta"),
                &config(json!({"size": 2}), json!({"team": "b"})),
            )
            .await,
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    assert!(
        err.message.contains("conflict with \"alpha\""),
        "{}",
        err.message
    );
    assert!(err.message.contains(".spec.size"), "{}", err.message);
    assert_eq!(widgets.get("w").await.unwrap().spec.size, 1);

    // ...unless forced, which takes ownership. Beta also stops applying its
    // color and label, which are removed.
    let forced = widgets
        .patch(
            "w",
            &PatchParams::apply("beta").force(),
            &config(json!({"size": 2}), json!({})),
        )
        .await
        .unwrap();
    assert_eq!(forced.spec.size, 2);
    assert_eq!(forced.spec.color, None);
    assert!(!forced.labels().contains_key("team"));
    assert_eq!(forced.labels()["owner"], "alpha");
    let alpha_fields = forced
        .managed_fields()
        .iter()
        .find(|m| m.manager.as_deref() == Some("alpha"))
        .and_then(|m| m.fields_v1.clone())
        .unwrap()
        .0;
    assert_eq!(
        alpha_fields,
        json!({"f:metadata": {"f:labels": {"f:owner": {}}}})
    );

    // Re-applying the same configuration is a no-op: no new resourceVersion.
    let again = widgets
        .patch(
            "w",
            &PatchParams::apply("beta").force(),
            &config(json!({"size": 2}), json!({})),
        )
        .await
        .unwrap();
    assert_eq!(again.resource_version(), forced.resource_version());
    assert_eq!(
        srv.resource_version().to_string(),
        forced.resource_version().unwrap()
    );

    // The same manager dropping a field removes it (and an entry owning nothing disappears).
    let minimal = Patch::Apply(
        json!({"apiVersion": "test.ballast.dev/v1", "kind": "Widget", "metadata": {"name": "w"}}),
    );
    let dropped = widgets
        .patch("w", &PatchParams::apply("alpha"), &minimal)
        .await
        .unwrap();
    assert!(dropped.labels().get("owner").is_none());
    assert_eq!(
        managers(&dropped),
        [("beta".to_string(), "Apply".to_string())]
    );
}

#[tokio::test]
async fn apply_validation_and_update_ownership() {
    let (srv, client) = server().await;
    srv.install_crd(&Widget::crd());
    let widgets: Api<Widget> = Api::default_namespaced(client);

    // No fieldManager: 400.
    let err = api_error(
        widgets
            .patch(
                "w",
                &PatchParams::default(),
                &config(json!({"size": 1}), json!({})),
            )
            .await,
    );
    assert_eq!(err.code, 400);
    // Name in the body must match the URL.
    let err = api_error(
        widgets
            .patch(
                "other",
                &PatchParams::apply("alpha"),
                &config(json!({"size": 1}), json!({})),
            )
            .await,
    );
    assert_eq!(err.code, 400);

    widgets
        .patch(
            "w",
            &PatchParams::apply("alpha"),
            &config(json!({"size": 1, "color": "blue"}), json!({})),
        )
        .await
        .unwrap();
    // A non-apply write takes ownership of what it changes...
    let edited = widgets
        .patch(
            "w",
            &PatchParams {
                field_manager: Some("editor".into()),
                ..Default::default()
            },
            &Patch::Merge(json!({"spec": {"color": "green"}})),
        )
        .await
        .unwrap();
    let editor = edited
        .managed_fields()
        .iter()
        .find(|m| m.manager.as_deref() == Some("editor"))
        .cloned()
        .unwrap();
    assert_eq!(editor.operation.as_deref(), Some("Update"));
    assert_eq!(
        editor.fields_v1.unwrap().0,
        json!({"f:spec": {"f:color": {}}})
    );
    // ...so alpha re-applying its old color conflicts with the updater, named with its apiVersion.
    let err = api_error(
        widgets
            .patch(
                "w",
                &PatchParams::apply("alpha"),
                &config(json!({"size": 1, "color": "blue"}), json!({})),
            )
            .await,
    );
    assert_eq!(err.code, 409);
    assert!(
        err.message
            .contains("conflict with \"editor\" using test.ballast.dev/v1"),
        "{}",
        err.message
    );
}

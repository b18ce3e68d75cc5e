//! Create, read, replace, patch and delete with typed `Api`s.

use either::Either;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::json;

use crate::common::{api_error, lease, server, service};

fn rv(obj: &impl ResourceExt) -> u64 {
    obj.resource_version().unwrap().parse().unwrap()
}

#[tokio::test]
async fn services_create_get_replace_patch_delete() {
    let (srv, client) = server().await;
    let svcs: Api<Service> = Api::default_namespaced(client);

    let created = svcs
        .create(&PostParams::default(), &service("web", &[("app", "web")]))
        .await
        .unwrap();
    assert!(created.uid().is_some());
    assert!(created.creation_timestamp().is_some());
    assert_eq!(created.namespace().as_deref(), Some("default"));
    // Services, like Leases and Namespaces, carry no generation: their strategies set none.
    assert_eq!(created.metadata.generation, None);
    let managed = created.managed_fields();
    assert_eq!(managed.len(), 1);
    assert_eq!(managed[0].operation.as_deref(), Some("Update"));

    let dup = api_error(
        svcs.create(&PostParams::default(), &service("web", &[]))
            .await,
    );
    assert_eq!((dup.code, dup.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(dup.message, "services \"web\" already exists");

    let got = svcs.get("web").await.unwrap();
    assert_eq!(got, created);
    let missing = api_error(svcs.get("nope").await);
    assert!(missing.is_not_found());
    assert_eq!(missing.message, "services \"nope\" not found");
    assert_eq!(missing.details.as_ref().unwrap().kind, "services");
    assert!(svcs.get_opt("nope").await.unwrap().is_none());
    // Services do not allow create-on-update.
    assert!(
        api_error(
            svcs.replace("nope", &PostParams::default(), &service("nope", &[]))
                .await
        )
        .is_not_found()
    );

    // Replace with the current resourceVersion succeeds; the old one is stale.
    let mut next = got.clone();
    next.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].port = 81;
    let replaced = svcs
        .replace("web", &PostParams::default(), &next)
        .await
        .unwrap();
    assert!(rv(&replaced) > rv(&got));
    let stale = api_error(svcs.replace("web", &PostParams::default(), &next).await);
    assert_eq!((stale.code, stale.reason.as_str()), (409, "Conflict"));
    assert!(
        stale.message.contains("the object has been modified"),
        "{}",
        stale.message
    );

    // Merge patch of metadata only: a new resourceVersion, the other labels kept.
    let labelled = svcs
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"tier": "front"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        labelled.labels().get("tier").map(String::as_str),
        Some("front")
    );
    assert_eq!(
        labelled.labels().get("app").map(String::as_str),
        Some("web")
    );
    assert!(rv(&labelled) > rv(&replaced));

    // A merge patch that changes nothing keeps the resourceVersion.
    let same = svcs
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"tier": "front"}}})),
        )
        .await
        .unwrap();
    assert_eq!(rv(&same), rv(&labelled));

    // A merge patch carrying a stale resourceVersion is a precondition failure.
    let stale = api_error(
        svcs.patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"resourceVersion": got.resource_version()}, "spec": {"type": "NodePort"}})),
        )
        .await,
    );
    assert_eq!(stale.code, 409);

    // JSON patch.
    let patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/spec/ports/0/port", "value": 81},
        {"op": "replace", "path": "/spec/ports/0/port", "value": 82},
        {"op": "add", "path": "/metadata/annotations", "value": {"a": "b"}},
    ]))
    .unwrap();
    let patched = svcs
        .patch("web", &PatchParams::default(), &Patch::Json::<()>(patch))
        .await
        .unwrap();
    assert_eq!(
        patched.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].port,
        82
    );
    assert_eq!(
        patched.annotations().get("a").map(String::as_str),
        Some("b")
    );
    let failing: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/spec/ports/0/port", "value": 1}]))
            .unwrap();
    let err = api_error(
        svcs.patch("web", &PatchParams::default(), &Patch::Json::<()>(failing))
            .await,
    );
    assert_eq!(err.code, 422);

    // Strategic merge patch is accepted for built-ins.
    let smp = svcs
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"type": "NodePort"}})),
        )
        .await
        .unwrap();
    assert_eq!(smp.spec.unwrap().type_.as_deref(), Some("NodePort"));

    // Services answer deletes with the deleted object.
    match svcs.delete("web", &DeleteParams::default()).await.unwrap() {
        Either::Left(deleted) => assert_eq!(deleted.name_any(), "web"),
        Either::Right(status) => panic!("expected the object, got {status:?}"),
    }
    assert!(api_error(svcs.get("web").await).is_not_found());
    assert!(api_error(svcs.delete("web", &DeleteParams::default()).await).is_not_found());
    assert!(
        srv.object("v1", "services", Some("default"), "web")
            .is_none()
    );
}

#[tokio::test]
async fn leases_conflicts_and_delete_status() {
    let (srv, client) = server().await;
    let leases: Api<Lease> = Api::default_namespaced(client);
    let first = leases
        .create(&PostParams::default(), &lease("x"))
        .await
        .unwrap();
    let mut a = first.clone();
    a.spec.as_mut().unwrap().holder_identity = Some("a".into());
    leases
        .replace("x", &PostParams::default(), &a)
        .await
        .unwrap();
    let mut b = first.clone();
    b.spec.as_mut().unwrap().holder_identity = Some("b".into());
    let err = api_error(leases.replace("x", &PostParams::default(), &b).await);
    assert_eq!(err.code, 409);
    assert_eq!(err.reason, "Conflict");
    assert_eq!(
        err.message,
        "Operation cannot be fulfilled on leases.coordination.k8s.io \"x\": the object has been modified; please apply your changes to the latest version and try again"
    );
    assert_eq!(err.details.as_ref().unwrap().group, "coordination.k8s.io");

    // Leases allow create-on-update: a PUT to a missing lease creates it (201).
    let put_created = leases
        .replace("fresh", &PostParams::default(), &lease("fresh"))
        .await
        .unwrap();
    assert!(put_created.uid().is_some());
    let put = srv
        .requests()
        .into_iter()
        .rfind(|r| r.method == "PUT")
        .unwrap();
    assert_eq!(put.status, 201);

    // Replace without a resourceVersion is unconditional.
    b.metadata.resource_version = None;
    let forced = leases
        .replace("x", &PostParams::default(), &b)
        .await
        .unwrap();
    assert_eq!(forced.spec.unwrap().holder_identity.as_deref(), Some("b"));
    assert_eq!(
        srv.object("coordination.k8s.io/v1", "leases", Some("default"), "x")
            .unwrap()["spec"]["holderIdentity"],
        "b"
    );

    // Delete preconditions, then a delete answered with a success Status.
    let wrong = DeleteParams::default().preconditions(Preconditions {
        uid: Some("not-the-uid".into()),
        resource_version: None,
    });
    assert_eq!(api_error(leases.delete("x", &wrong).await).code, 409);
    match leases.delete("x", &DeleteParams::default()).await.unwrap() {
        Either::Right(status) => {
            assert!(status.is_success());
            assert_eq!(status.details.unwrap().name, "x");
        }
        Either::Left(obj) => panic!("expected a Status, got {obj:?}"),
    }
    assert!(leases.get_opt("x").await.unwrap().is_none());
}

#[tokio::test]
async fn names_namespaces_and_generate_name() {
    let (_srv, client) = server().await;
    let in_missing_ns: Api<Lease> = Api::namespaced(client.clone(), "nope");
    let err = api_error(
        in_missing_ns
            .create(&PostParams::default(), &lease("x"))
            .await,
    );
    assert!(err.is_not_found());
    assert_eq!(err.message, "namespaces \"nope\" not found");

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: kube::api::ObjectMeta {
            name: Some("team-a".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let created = namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    assert_eq!(created.status.unwrap().phase.as_deref(), Some("Active"));
    let leases: Api<Lease> = Api::namespaced(client.clone(), "team-a");
    leases
        .create(&PostParams::default(), &lease("x"))
        .await
        .unwrap();
    assert!(
        namespaces
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len()
            >= 5
    );

    let mut generated = lease("");
    generated.metadata.name = None;
    generated.metadata.generate_name = Some("gen-".into());
    let g = leases
        .create(&PostParams::default(), &generated)
        .await
        .unwrap();
    assert!(
        g.name_any().starts_with("gen-") && g.name_any().len() == 9,
        "{}",
        g.name_any()
    );

    let invalid = api_error(
        leases
            .create(&PostParams::default(), &lease("Not_Valid"))
            .await,
    );
    assert_eq!((invalid.code, invalid.reason.as_str()), (422, "Invalid"));
    let svcs: Api<Service> = Api::namespaced(client.clone(), "team-a");
    let err = api_error(
        svcs.create(&PostParams::default(), &service("1abc", &[]))
            .await,
    );
    assert_eq!(err.code, 422);

    // Deleting the namespace deletes what is in it.
    namespaces
        .delete("team-a", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        leases
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );

    // Dry runs store nothing.
    let defaults: Api<Lease> = Api::default_namespaced(client);
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    defaults.create(&dry, &lease("dry")).await.unwrap();
    assert!(defaults.get_opt("dry").await.unwrap().is_none());
}

#[tokio::test]
async fn delete_collection_by_label() {
    let (_srv, client) = server().await;
    let svcs: Api<Service> = Api::default_namespaced(client);
    for (name, app) in [("a", "x"), ("b", "x"), ("c", "y")] {
        svcs.create(&PostParams::default(), &service(name, &[("app", app)]))
            .await
            .unwrap();
    }
    let deleted = svcs
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("app=x"),
        )
        .await
        .unwrap();
    let names: Vec<String> = deleted
        .left()
        .unwrap()
        .items
        .iter()
        .map(|s| s.name_any())
        .collect();
    assert_eq!(names, ["a", "b"]);
    let left: Vec<String> = svcs
        .list(&ListParams::default())
        .await
        .unwrap()
        .iter()
        .map(|s| s.name_any())
        .collect();
    assert_eq!(left, ["c"]);
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    use futures::StreamExt;
    use kube::runtime::{watcher, watcher::Event};

    let (_srv, client) = server().await;
    let leases: Api<Lease> = Api::default_namespaced(client);
    let mut held = lease("held");
    held.metadata.finalizers = Some(vec!["ballast.dev/cleanup".into()]);
    leases.create(&PostParams::default(), &held).await.unwrap();
    let mut events = watcher(leases.clone(), watcher::Config::default()).boxed();
    while !matches!(
        crate::common::next(&mut events).await.unwrap(),
        Event::InitDone
    ) {}

    // Delete only marks the object, and answers with it even for Leases.
    let marked = match leases
        .delete("held", &DeleteParams::default())
        .await
        .unwrap()
    {
        Either::Left(obj) => obj,
        Either::Right(status) => panic!("expected the marked object, got {status:?}"),
    };
    assert!(marked.metadata.deletion_timestamp.is_some());
    match crate::common::next(&mut events).await.unwrap() {
        Event::Apply(l) => assert!(l.metadata.deletion_timestamp.is_some()),
        _ => panic!("expected the marked object"),
    }
    // Deleting again changes nothing; no new finalizers may be added.
    let again = leases
        .delete("held", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .unwrap();
    assert_eq!(again.resource_version(), marked.resource_version());
    let add = Patch::Merge(json!({"metadata": {"finalizers": ["ballast.dev/cleanup", "other"]}}));
    let err = api_error(leases.patch("held", &PatchParams::default(), &add).await);
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));

    // Removing the last finalizer completes the deletion.
    let release = Patch::Merge(json!({"metadata": {"finalizers": null}}));
    leases
        .patch("held", &PatchParams::default(), &release)
        .await
        .unwrap();
    assert!(leases.get_opt("held").await.unwrap().is_none());
    match crate::common::next(&mut events).await.unwrap() {
        Event::Delete(l) => assert_eq!(l.name_any(), "held"),
        _ => panic!("expected the deletion"),
    }
}

//! kube-runtime's event recorder against the events.k8s.io API.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::Resource;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder};

use crate::common::{server, service};

#[tokio::test]
async fn recorder_creates_then_patches_a_series() {
    let (srv, client) = server().await;
    let svcs: Api<Service> = Api::default_namespaced(client.clone());
    let svc = svcs
        .create(&PostParams::default(), &service("web", &[]))
        .await
        .unwrap();
    let recorder = Recorder::new(client.clone(), "ballast-controller".into());
    let event = Event {
        type_: EventType::Normal,
        reason: "Synced".into(),
        note: Some("ok".into()),
        action: "Sync".into(),
        secondary: None,
    };
    let reference = svc.object_ref(&());
    recorder.publish(&event, &reference).await.unwrap();
    recorder.publish(&event, &reference).await.unwrap();

    let events: Api<K8sEvent> = Api::default_namespaced(client);
    let list = events.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    let e = &list.items[0];
    assert_eq!(e.reason.as_deref(), Some("Synced"));
    assert_eq!(e.regarding.as_ref().unwrap().name.as_deref(), Some("web"));
    assert_eq!(e.series.as_ref().unwrap().count, 2);

    let writes: Vec<(String, Option<String>)> = srv
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/apis/events.k8s.io/v1/"))
        .filter(|r| r.method != "GET")
        .map(|r| (r.method, r.content_type))
        .collect();
    assert_eq!(
        writes,
        [
            ("POST".to_string(), Some("application/json".to_string())),
            (
                "PATCH".to_string(),
                Some("application/merge-patch+json".to_string())
            ),
        ]
    );
}

//! Paged lists, as the watcher does them (pages of 500).

use std::collections::BTreeSet;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::{watcher, watcher::Event};

use crate::common::{lease, next, server, within};

#[tokio::test]
async fn watcher_lists_1200_objects_in_pages() {
    let (srv, client) = server().await;
    let leases: Api<Lease> = Api::default_namespaced(client);
    within(
        futures::stream::iter(0..1200)
            .map(|i| {
                let leases = leases.clone();
                async move {
                    leases
                        .create(&PostParams::default(), &lease(&format!("l{i:04}")))
                        .await
                }
            })
            .buffer_unordered(16)
            .try_collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    srv.clear_requests();

    let mut events = watcher(leases.clone(), watcher::Config::default()).boxed();
    let mut names = BTreeSet::new();
    assert!(matches!(next(&mut events).await.unwrap(), Event::Init));
    loop {
        match next(&mut events).await.unwrap() {
            Event::InitApply(l) => {
                assert!(names.insert(l.name_any()), "duplicate {}", l.name_any())
            }
            Event::InitDone => break,
            _ => panic!("unexpected event during the initial list"),
        }
    }
    assert_eq!(names.len(), 1200);

    let lists: Vec<_> = srv
        .requests()
        .into_iter()
        .filter(|r| r.is_list_of("leases"))
        .collect();
    assert_eq!(lists.len(), 3, "{lists:#?}");
    assert!(
        lists
            .iter()
            .all(|r| r.param("limit").as_deref() == Some("500"))
    );
    assert!(!lists[0].has_param("continue"));
    assert!(lists[1].has_param("continue") && lists[2].has_param("continue"));

    // The pages report the remaining count and share the first page's version.
    let page = leases
        .list(&ListParams::default().limit(500))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 500);
    assert_eq!(page.metadata.remaining_item_count, Some(700));
    let token = page.metadata.continue_.clone().unwrap();
    let second = leases
        .list(&ListParams::default().limit(500).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(
        second.metadata.resource_version,
        page.metadata.resource_version
    );
    assert_eq!(second.items[0].name_any(), "l0500");
}

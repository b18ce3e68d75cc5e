//! kube-runtime watchers and reflectors, including recovery from compaction.

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use kube::ResourceExt;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, VersionMatch, WatchEvent,
    WatchParams,
};
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, reflector, watcher, watcher::Event};
use serde_json::json;
use tokio::sync::mpsc;

use crate::common::{api_error, eventually, lease, next, server, service, within};

fn describe<K: ResourceExt>(e: Event<K>) -> String {
    match e {
        Event::Init => "Init".into(),
        Event::InitApply(o) => format!("InitApply({})", o.name_any()),
        Event::InitDone => "InitDone".into(),
        Event::Apply(o) => format!("Apply({})", o.name_any()),
        Event::Delete(o) => format!("Delete({})", o.name_any()),
    }
}

#[tokio::test]
async fn watcher_sees_initial_list_then_changes_but_not_no_ops() {
    let (srv, client) = server().await;
    let leases: Api<Lease> = Api::default_namespaced(client);
    for name in ["b", "a"] {
        leases
            .create(&PostParams::default(), &lease(name))
            .await
            .unwrap();
    }
    let mut events = watcher(leases.clone(), watcher::Config::default()).boxed();
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(describe(next(&mut events).await.unwrap()));
    }
    assert_eq!(got, ["Init", "InitApply(a)", "InitApply(b)", "InitDone"]);

    leases
        .create(&PostParams::default(), &lease("c"))
        .await
        .unwrap();
    assert_eq!(describe(next(&mut events).await.unwrap()), "Apply(c)");
    let relabel = Patch::Merge(json!({"metadata": {"labels": {"x": "1"}}}));
    leases
        .patch("c", &PatchParams::default(), &relabel)
        .await
        .unwrap();
    match next(&mut events).await.unwrap() {
        Event::Apply(o) => assert_eq!(o.labels()["x"], "1"),
        other => panic!("unexpected {}", describe(other)),
    }
    // The same patch again changes nothing: no event.
    leases
        .patch("c", &PatchParams::default(), &relabel)
        .await
        .unwrap();
    leases.delete("a", &DeleteParams::default()).await.unwrap();
    assert_eq!(describe(next(&mut events).await.unwrap()), "Delete(a)");

    let watches: Vec<_> = srv
        .requests()
        .into_iter()
        .filter(|r| r.is_watch())
        .collect();
    assert_eq!(watches.len(), 1);
    let w = &watches[0];
    assert_eq!(w.param("allowWatchBookmarks").as_deref(), Some("true"));
    assert_eq!(w.param("timeoutSeconds").as_deref(), Some("290"));
    let list = srv
        .requests()
        .into_iter()
        .find(|r| r.is_list_of("leases"))
        .unwrap();
    assert_eq!(list.param("limit").as_deref(), Some("500"));
    // The watch resumes from the list's resourceVersion.
    assert!(w.param("resourceVersion").unwrap().parse::<u64>().unwrap() >= 2);
}

#[tokio::test]
async fn reflector_recovers_from_compaction_by_relisting() {
    let (srv, client) = server().await;
    let leases: Api<Lease> = Api::default_namespaced(client);
    for name in ["keep", "gone", "edit"] {
        leases
            .create(&PostParams::default(), &lease(name))
            .await
            .unwrap();
    }
    let (reader, writer) = reflector::store::<Lease>();
    // Backoff after errors, like a controller; the pause after the 410 leaves
    // a window in which changes happen while nothing watches.
    let stream =
        reflector(writer, watcher(leases.clone(), watcher::Config::default())).default_backoff();
    let (tx, mut outcomes) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut stream = stream.boxed();
        while let Some(item) = stream.next().await {
            let _ = tx.send(item.map(|_| ()).map_err(|e| e.to_string()));
        }
    });
    let names = |r: &reflector::Store<Lease>| {
        let mut v: Vec<String> = r.state().iter().map(|l| l.name_any()).collect();
        v.sort();
        v
    };
    within(reader.wait_until_ready()).await.unwrap();
    assert_eq!(names(&reader), ["edit", "gone", "keep"]);
    let old_rv = srv.resource_version().to_string();

    srv.compact();
    // The open watch ends with a 410 ERROR event, surfaced as a watcher error.
    loop {
        match within(outcomes.recv())
            .await
            .expect("reflector stream ended")
        {
            Err(e) => {
                assert!(e.contains("410") || e.contains("too old"), "{e}");
                break;
            }
            Ok(()) => continue,
        }
    }
    // Changes during the gap.
    leases
        .delete("gone", &DeleteParams::default())
        .await
        .unwrap();
    leases
        .patch(
            "edit",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"holderIdentity": "new"}})),
        )
        .await
        .unwrap();
    leases
        .create(&PostParams::default(), &lease("new"))
        .await
        .unwrap();

    eventually("the store to converge", || {
        names(&reader) == ["edit", "keep", "new"]
            && reader.state().iter().any(|l| {
                l.name_any() == "edit"
                    && l.spec.as_ref().unwrap().holder_identity.as_deref() == Some("new")
            })
    })
    .await;
    let requests = srv.requests();
    let lists: Vec<usize> = requests
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_list_of("leases"))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        lists.len(),
        2,
        "one list at start, one relist after the 410"
    );
    let delete = requests.iter().position(|r| r.method == "DELETE").unwrap();
    assert!(delete < lists[1], "the delete happened before the relist");

    // Anything naming a compacted version is now too old.
    let exact = ListParams::default()
        .at(&old_rv)
        .matching(VersionMatch::Exact);
    let err = api_error(leases.list(&exact).await);
    assert_eq!((err.code, err.reason.as_str()), (410, "Expired"));
    let mut stale_watch = leases
        .watch(&WatchParams::default(), &old_rv)
        .await
        .unwrap()
        .boxed();
    match next(&mut stale_watch).await.unwrap() {
        WatchEvent::Error(status) => {
            assert_eq!(status.code, 410);
            assert_eq!(status.reason, "Expired");
            assert!(
                status.message.starts_with("too old resource version"),
                "{}",
                status.message
            );
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    assert!(
        within(stale_watch.next()).await.is_none(),
        "the stream ends after the error"
    );
    driver.abort();
}

#[tokio::test]
async fn streaming_list_and_metadata_watchers() {
    let (srv, client) = server().await;
    let leases: Api<Lease> = Api::default_namespaced(client.clone());
    leases
        .create(&PostParams::default(), &lease("a"))
        .await
        .unwrap();

    let mut events = watcher(leases.clone(), watcher::Config::default().streaming_lists()).boxed();
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(describe(next(&mut events).await.unwrap()));
    }
    assert_eq!(got, ["Init", "InitApply(a)", "InitDone"]);
    leases
        .create(&PostParams::default(), &lease("b"))
        .await
        .unwrap();
    assert_eq!(describe(next(&mut events).await.unwrap()), "Apply(b)");
    let first = srv.requests().into_iter().find(|r| r.is_watch()).unwrap();
    assert_eq!(first.param("sendInitialEvents").as_deref(), Some("true"));
    assert_eq!(
        first.param("resourceVersionMatch").as_deref(),
        Some("NotOlderThan")
    );
    assert!(
        !srv.requests().iter().any(|r| r.is_list_of("leases")),
        "no LIST with streaming lists"
    );

    let metas: Api<PartialObjectMeta<Lease>> = Api::default_namespaced(client);
    let mut events = watcher(metas, watcher::Config::default()).boxed();
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(describe(next(&mut events).await.unwrap()));
    }
    assert_eq!(got, ["Init", "InitApply(a)", "InitApply(b)", "InitDone"]);
    leases.delete("a", &DeleteParams::default()).await.unwrap();
    assert_eq!(describe(next(&mut events).await.unwrap()), "Delete(a)");
}

#[tokio::test]
async fn raw_watch_bookmarks_and_timeout() {
    let (_srv, client) = server().await;
    let leases: Api<Lease> = Api::default_namespaced(client.clone());
    let svcs: Api<Service> = Api::default_namespaced(client);
    let start = leases
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let began = Instant::now();
    let mut stream = leases
        .watch(&WatchParams::default().timeout(3), &start)
        .await
        .unwrap()
        .boxed();
    // A write to another kind is progress this watch reports with a bookmark.
    let svc = svcs
        .create(&PostParams::default(), &service("s", &[]))
        .await
        .unwrap();
    match next(&mut stream).await.unwrap() {
        WatchEvent::Bookmark(b) => {
            assert_eq!(Some(b.metadata.resource_version), svc.resource_version())
        }
        other => panic!("expected a bookmark, got {other:?}"),
    }
    // The stream ends by itself at timeoutSeconds.
    let rest: Vec<_> = within(stream.try_collect::<Vec<_>>()).await.unwrap();
    assert!(rest.iter().all(|e| matches!(e, WatchEvent::Bookmark(_))));
    let took = began.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(8),
        "{took:?}"
    );
}

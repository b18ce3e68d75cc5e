//! Every cluster example a user reads (the YAML blocks of README.md and
//! docs/*.md other than docs/standalone.md's, and the files of examples/)
//! works in the cluster the README's install makes: one node, one agent,
//! and only the AddressPool the README's `helm install` creates. Through the
//! real `kube::Client` against the fake API server and a running
//! controller:
//!
//! - examples/ applied together (as the README tells) are all Accepted,
//!   and each gets its addresses from the README's pool;
//! - each example of the docs, applied alone, is Accepted with its
//!   addresses from that pool (an AddressPool: Valid), or, marked
//!   `# invalid: <field>: ...`, refused with reason Invalid naming the
//!   field;
//! - the controller's own reading of each object (`frontend::from_service`,
//!   `ipam::Pool::parse`) finds no error in a valid one.

mod support;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ballast_api::AddressPool;
use ballast_controller::frontend::{Source, from_service};
use ballast_controller::ipam::Pool;
use ballast_controller::k8s::run::{Handle, start};
use ballast_controller::metrics::Metrics;
use ballast_doc_examples::{Example, Expect, Reader, all_examples, readme_pool};
use ballast_fake_apiserver::FakeApiServer;
use kube::Client;
use serde_json::Value;
use support::{apply, connected_agents, delete, options_with_lease, ready_node, server};

/// The cluster after the README's install, with a controller leading.
async fn readme_cluster() -> (FakeApiServer, Client, Handle) {
    let s = server().await;
    let c = s.client();
    ready_node(&c, "node-a").await;
    apply(&c, readme_pool()).await;
    let options = options_with_lease("a", Duration::from_secs(2), Duration::from_millis(200));
    let h = start(
        s.client(),
        options,
        Arc::new(Metrics::new()),
        connected_agents(&["node-a"]),
    )
    .await
    .expect("controller starts");
    (s, c, h)
}

fn readme_pool_parsed() -> Pool {
    let pool: AddressPool = serde_json::from_value(readme_pool()).unwrap();
    let parsed = Pool::parse(&pool);
    assert!(
        parsed.errors.is_empty(),
        "the README's pool: {:?}",
        parsed.errors
    );
    parsed
}

/// The object as stored, by the kind and name of `doc`.
fn stored(s: &FakeApiServer, doc: &Value) -> Option<Value> {
    let name = doc["metadata"]["name"].as_str()?;
    let ns = doc["metadata"]["namespace"].as_str().unwrap_or("default");
    match doc["kind"].as_str()? {
        "VirtualServer" => s.object("ballast.dev/v1alpha1", "virtualservers", Some(ns), name),
        "AddressPool" => s.object("ballast.dev/v1alpha1", "addresspools", None, name),
        "Service" => s.object("v1", "services", Some(ns), name),
        _ => None,
    }
}

/// The condition a verdict is read from, and the addresses served.
fn verdict(doc: &Value, obj: &Value) -> (Option<Value>, Vec<String>) {
    let (type_, addresses) = match doc["kind"].as_str().unwrap() {
        "VirtualServer" => ("Accepted", obj["status"]["addresses"].clone()),
        "Service" => (
            "ballast.dev/Accepted",
            obj["status"]["loadBalancer"]["ingress"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|i| i["ip"].clone())
                .collect(),
        ),
        _ => ("Valid", Value::Null),
    };
    let condition = obj["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == type_)
        .cloned();
    let addresses = addresses
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    (condition, addresses)
}

/// Polls (up to 15 s) until `doc`'s object has the verdict `want` says, and
/// panics with the last one seen otherwise.
async fn wait_for_verdict(s: &FakeApiServer, at: &str, doc: &Value, want: &Expect, pool: &Pool) {
    let kind = doc["kind"].as_str().unwrap();
    let mut last = None;
    for _ in 0..300 {
        if let Some(obj) = stored(s, doc) {
            let (condition, addresses) = verdict(doc, &obj);
            let good = condition.as_ref().is_some_and(|c| match want {
                Expect::Invalid { field, .. } => {
                    c["status"] == "False"
                        && c["message"]
                            .as_str()
                            .is_some_and(|m| m.contains(field.as_str()))
                        && (c["reason"] == "Invalid" || c["reason"] == "InvalidAddresses")
                }
                _ => {
                    c["status"] == "True"
                        && (kind == "AddressPool"
                            || (!addresses.is_empty()
                                && addresses.iter().all(|a| {
                                    a.parse::<IpAddr>().is_ok_and(|ip| pool.contains(ip))
                                })))
                }
            });
            if good {
                return;
            }
            last = Some((condition, addresses));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{at}: {kind} {}: wanted {want:?}, last seen (condition, addresses): {last:?}",
        doc["metadata"]["name"]
    );
}

/// What the controller's pure side finds wrong with a document (`None`
/// when it reads it without a complaint).
fn controller_reading(doc: &Value) -> Option<String> {
    match doc["kind"].as_str().unwrap() {
        "Service" => match from_service(&serde_json::from_value(doc.clone()).unwrap(), false) {
            Source::Frontend(_) => None,
            Source::Invalid { errors, .. } => Some(errors.join("; ")),
            Source::NotOurs => Some("not a Service of our class".into()),
        },
        "AddressPool" => {
            let parsed = Pool::parse(&serde_json::from_value(doc.clone()).unwrap());
            (!parsed.errors.is_empty()).then(|| parsed.errors.join("; "))
        }
        // Its validation is the shared one, checked in api/tests/examples.rs.
        _ => None,
    }
}

fn cluster_examples() -> Vec<Example> {
    all_examples()
        .into_iter()
        .filter(|e| e.reader == Reader::Cluster && !matches!(e.expect, Expect::Part { .. }))
        .collect()
}

#[tokio::test]
async fn the_examples_directory_works_after_the_readmes_install() {
    let pool = readme_pool_parsed();
    let (s, c, h) = readme_cluster().await;
    let examples: Vec<Example> = cluster_examples()
        .into_iter()
        .filter(|e| e.origin.starts_with("examples/"))
        .collect();
    assert!(examples.len() >= 4, "{} files in examples/", examples.len());
    for ex in &examples {
        for doc in &ex.documents {
            apply(&c, doc.clone()).await;
        }
    }
    for ex in &examples {
        assert_eq!(
            ex.expect,
            Expect::Valid,
            "{}: examples/ holds no refusal",
            ex.origin
        );
        for doc in &ex.documents {
            assert_eq!(controller_reading(doc), None, "{}", ex.origin);
            wait_for_verdict(&s, &ex.origin, doc, &ex.expect, &pool).await;
        }
    }
    h.shutdown().await;
}

/// `doc` renamed so that no example meets another's leftovers (an object
/// deleted and made again under its name could be given its status).
fn renamed(doc: &Value, n: usize) -> Value {
    let mut doc = doc.clone();
    let name = doc["metadata"]["name"]
        .as_str()
        .unwrap_or("unnamed")
        .to_string();
    doc["metadata"]["name"] = format!("ex{n}-{name}").into();
    doc
}

#[tokio::test]
async fn every_docs_example_works_alone_after_the_readmes_install() {
    let pool = readme_pool_parsed();
    let (s, c, h) = readme_cluster().await;
    let examples: Vec<Example> = cluster_examples()
        .into_iter()
        .filter(|e| !e.origin.starts_with("examples/"))
        .collect();
    assert!(
        examples.len() >= 10,
        "{} cluster examples in the docs",
        examples.len()
    );
    for (n, ex) in examples.iter().enumerate() {
        let docs: Vec<Value> = ex.documents.iter().map(|d| renamed(d, n)).collect();
        for doc in &docs {
            if ex.expect == Expect::Valid {
                assert_eq!(controller_reading(doc), None, "{}", ex.origin);
            }
            apply(&c, doc.clone()).await;
        }
        for doc in &docs {
            wait_for_verdict(&s, &ex.origin, doc, &ex.expect, &pool).await;
        }
        for doc in &docs {
            delete(&c, doc).await;
        }
    }
    h.shutdown().await;
}

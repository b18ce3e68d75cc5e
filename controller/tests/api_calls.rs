//! `controller/api-calls.yaml` against the code, both ways: the controller
//! runs its main flows (reflectors, leader election and its release,
//! status writes for each kind, Events and a repeated Event, the TLS
//! bootstrap with a renewal) against the fake API server, which records
//! every request; each request must be allowed by the list, and each right
//! the list grants must have been used. So the list (and the chart's RBAC,
//! rendered from it) can neither miss a call nor keep a stale right.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ballast_controller::k8s::run::start;
use ballast_controller::k8s::tls_bootstrap::{
    BootstrapConfig, ensure_agent_secret, ensure_ca, ensure_serving_files,
};
use ballast_controller::metrics::Metrics;
use ballast_fake_apiserver::{ApiRequest, FakeApiServer};
use serde::Deserialize;
use serde_json::{Value, json};
use support::{apply, connected_agents, eventually, options_with_lease, pool, ready_node, vs};

/// Where the controller runs in this test: its Lease and Secrets live here.
const RELEASE_NAMESPACE: &str = "default";
/// The field manager of this test's own writes, told apart from the
/// controller's.
const TEST_MANAGER: &str = "test";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiCalls {
    controller: Rights,
    agent: Rights,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rights {
    cluster: Vec<Rule>,
    namespace: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Rule {
    api_group: String,
    resources: Vec<String>,
    verbs: Vec<String>,
    /// `tls-bootstrap`: used only with --tls-bootstrap (the chart drops the
    /// rule with cert-manager). The flows here run the bootstrap, so such
    /// rights must still be exercised.
    #[serde(default)]
    #[allow(dead_code)] // read only to refuse unknown values
    only: Option<Only>,
}

#[derive(Debug, Deserialize)]
enum Only {
    #[serde(rename = "tls-bootstrap")]
    TlsBootstrap,
}

/// (scope, apiGroup, resource[/subresource], verb): one right.
type Right = (&'static str, String, String, String);

fn rights(scope: &'static str, rules: &[Rule]) -> BTreeSet<Right> {
    let mut out = BTreeSet::new();
    for rule in rules {
        for resource in &rule.resources {
            for verb in &rule.verbs {
                assert_ne!(verb, "*", "no wildcard verbs");
                assert_ne!(resource, "*", "no wildcard resources");
                out.insert((
                    scope,
                    rule.api_group.clone(),
                    resource.clone(),
                    verb.clone(),
                ));
            }
        }
    }
    out
}

fn load() -> ApiCalls {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/api-calls.yaml");
    let text = std::fs::read_to_string(path).expect("controller/api-calls.yaml");
    serde_yaml::from_str(&text).expect("api-calls.yaml has the documented shape")
}

/// The rights that allow `r`: a cluster rule anywhere, a namespace rule
/// only in the release namespace.
fn allowing(r: &ApiRequest) -> Vec<Right> {
    let (g, res, verb) = (r.api_group.clone(), r.rbac_resource(), r.verb.to_string());
    let mut out = vec![("cluster", g.clone(), res.clone(), verb.clone())];
    if r.namespace.as_deref() == Some(RELEASE_NAMESPACE) {
        out.push(("namespace", g, res, verb));
    }
    out
}

fn service(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"type": "LoadBalancer", "loadBalancerClass": "ballast.dev/xdp",
                 "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}})
}

fn slice(service: &str) -> Value {
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{service}-1"), "namespace": "default",
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["10.0.0.1"], "nodeName": "node-a", "conditions": {"ready": true}}]})
}

/// DR with TOA: refused by the controller (Accepted False, a Warning).
fn invalid_spec() -> Value {
    json!({"addresses": ["203.0.113.2"], "ports": [{"port": 80}],
        "forwarding": "DR", "clientAddress": "TOA",
        "backends": {"static": [{"address": "198.51.100.11"}]}})
}

fn valid_spec() -> Value {
    json!({"addresses": ["203.0.113.2"], "ports": [{"port": 80}],
        "backends": {"static": [{"address": "198.51.100.11"}]}})
}

fn accepted(s: &FakeApiServer, name: &str) -> Option<String> {
    let o = s.object(
        "ballast.dev/v1alpha1",
        "virtualservers",
        Some("default"),
        name,
    )?;
    let c = o["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Accepted")?;
    c["status"].as_str().map(str::to_string)
}

async fn wait_accepted(s: &FakeApiServer, name: &str, want: &str) {
    eventually(&format!("{name} Accepted={want}"), || async {
        (accepted(s, name).as_deref() == Some(want)).then_some(())
    })
    .await;
}

/// Runs the controller's flows; returns what it asked of the API.
async fn controller_requests() -> Vec<ApiRequest> {
    let s = support::server().await;
    let c = s.client();
    ready_node(&c, "node-a").await;
    apply(&c, pool(&["203.0.113.0/29"])).await;
    apply(&c, service("web")).await;
    apply(&c, slice("web")).await;
    apply(&c, vs("flaky", invalid_spec())).await;
    s.clear_requests();

    let options = options_with_lease("a", Duration::from_secs(2), Duration::from_millis(200));
    let h = start(
        s.client(),
        options,
        Arc::new(Metrics::new()),
        connected_agents(&["node-a"]),
    )
    .await
    .expect("controller starts");
    eventually("the Service's ingress", || async {
        let o = s.object("v1", "services", Some("default"), "web")?;
        let ingress = o["status"]["loadBalancer"]["ingress"].as_array()?;
        (!ingress.is_empty()).then_some(())
    })
    .await;
    eventually("the pool's status", || async {
        let p = s.object("ballast.dev/v1alpha1", "addresspools", None, "public")?;
        p["status"]["allocated"].as_u64().filter(|n| *n > 0)
    })
    .await;
    // Refused, accepted, refused again: the same Warning twice, which the
    // event recorder sends as a patch of the first (an Event series).
    wait_accepted(&s, "flaky", "False").await;
    apply(&c, vs("flaky", valid_spec())).await;
    wait_accepted(&s, "flaky", "True").await;
    apply(&c, vs("flaky", invalid_spec())).await;
    eventually("a repeated Warning", || async {
        s.objects("events.k8s.io/v1", "events")
            .into_iter()
            .find(|e| e["type"] == "Warning" && e["series"]["count"].as_u64() >= Some(2))
    })
    .await;

    // The TLS bootstrap, as `run` and `maintain` call it: the CA made,
    // this replica's certificate, the agents' Secret made and renewed.
    let cfg = BootstrapConfig {
        namespace: RELEASE_NAMESPACE.into(),
        ca_secret: "ballast-ca".into(),
        agent_secret: "ballast-agent-tls".into(),
        service_names: vec!["ballast-link.default.svc".into()],
        dir: std::env::temp_dir().join(format!("ballast-api-calls-{}", std::process::id())),
    };
    let now = SystemTime::now();
    let ca = ensure_ca(&c, &cfg, now).await.unwrap();
    ensure_serving_files(&ca, &cfg, now).unwrap();
    ensure_agent_secret(&c, &ca, &cfg, now).await.unwrap();
    let later = now + Duration::from_secs(61 * 24 * 3600);
    ensure_agent_secret(&c, &ca, &cfg, later).await.unwrap();
    std::fs::remove_dir_all(&cfg.dir).unwrap();

    // Shutting down releases the Lease.
    h.shutdown().await;
    s.requests()
        .into_iter()
        .filter(|r| r.field_manager.as_deref() != Some(TEST_MANAGER))
        .filter_map(|r| r.api_request())
        .collect()
}

#[tokio::test]
async fn the_listed_rights_are_exactly_the_calls_the_controller_makes() {
    let calls = load();
    assert!(
        calls.agent.cluster.is_empty() && calls.agent.namespace.is_empty(),
        "the node-mode agent never talks to the API server"
    );
    let listed: BTreeSet<Right> = rights("cluster", &calls.controller.cluster)
        .into_iter()
        .chain(rights("namespace", &calls.controller.namespace))
        .collect();

    let requests = controller_requests().await;
    assert!(!requests.is_empty(), "the controller made requests");
    let mut used = BTreeSet::new();
    let mut unlisted = BTreeSet::new();
    for r in &requests {
        let allowed: Vec<Right> = allowing(r)
            .into_iter()
            .filter(|right| listed.contains(right))
            .collect();
        if allowed.is_empty() {
            unlisted.insert(format!(
                "{} {}/{} in {:?}",
                r.verb,
                r.api_group,
                r.rbac_resource(),
                r.namespace
            ));
        }
        used.extend(allowed);
    }
    assert!(
        unlisted.is_empty(),
        "calls the list does not allow (add them to controller/api-calls.yaml): {unlisted:#?}"
    );
    let unused: Vec<&Right> = listed.difference(&used).collect();
    assert!(
        unused.is_empty(),
        "rights listed but never used (remove them, or exercise them here): {unused:#?}"
    );
}

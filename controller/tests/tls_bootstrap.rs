//! `--tls-bootstrap` against the fake API server with the real
//! `kube::Client`: racing replicas make one CA, the agents' Secret is
//! created, kept and renewed on an injected clock, a garbled CA Secret is
//! refused and left alone, and the certificates issued carry a real mTLS
//! stream from an agent to the link server.

mod link_support;

use std::time::{Duration, SystemTime};

use ballast_controller::k8s::tls_bootstrap::{
    BootstrapConfig, BootstrapError, Outcome, create_ca, ensure_agent_secret, ensure_ca,
    ensure_serving_files,
};
use ballast_controller::link::Security;
use ballast_controller::link::issue::RenewWhy;
use ballast_controller::link::tls::AgentIdentity;
use ballast_fake_apiserver::FakeApiServer;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use link_support::{Harness, Leaf, hello, next, open, plan_for, scratch_dir, service, tls_channel};
use serde_json::Value;
use tonic::transport::Channel;

const DAY: Duration = Duration::from_secs(24 * 3600);
const LINK_NAME: &str = "ballast-link.default.svc";

fn config(test: &str) -> BootstrapConfig {
    BootstrapConfig {
        namespace: "default".into(),
        ca_secret: "ballast-ca".into(),
        agent_secret: "ballast-agent-tls".into(),
        service_names: vec![LINK_NAME.into(), format!("{LINK_NAME}.cluster.local")],
        dir: scratch_dir(test),
    }
}

fn secret(s: &FakeApiServer, name: &str) -> Option<Value> {
    s.object("v1", "secrets", Some("default"), name)
}

/// Key `key` of a stored Secret, decoded.
fn data(secret: &Value, key: &str) -> String {
    let b64 = secret["data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key}"));
    let bytes: ByteString = serde_json::from_value(Value::String(b64.into())).unwrap();
    String::from_utf8(bytes.0).unwrap()
}

#[tokio::test]
async fn racing_replicas_make_one_ca_and_a_restart_reads_it_back() {
    let s = FakeApiServer::start().await;
    let cfg = config("race");
    let now = SystemTime::now();
    // Two clients, as two replicas have.
    let (c1, c2) = (s.client(), s.client());
    let (a, b) = tokio::join!(ensure_ca(&c1, &cfg, now), ensure_ca(&c2, &cfg, now));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.cert_pem(), b.cert_pem(), "both replicas use one CA");
    let stored = secret(&s, "ballast-ca").expect("the CA Secret");
    assert_eq!(stored["type"], "kubernetes.io/tls");
    assert_eq!(data(&stored, "tls.crt"), a.cert_pem());
    // The loser of a create race (409) reads the winner's CA, whichever
    // way the join above interleaved.
    let late = create_ca(&s.client(), &cfg, now).await.unwrap();
    assert_eq!(late.cert_pem(), a.cert_pem());
    assert!(
        s.requests()
            .iter()
            .any(|r| r.method == "POST" && r.path.ends_with("/secrets") && r.status == 409),
        "a create lost to the existing CA"
    );
    let again = ensure_ca(&s.client(), &cfg, now + DAY).await.unwrap();
    assert_eq!(again.cert_pem(), a.cert_pem(), "a restart keeps the CA");
}

#[tokio::test]
async fn the_agents_secret_is_created_kept_and_renewed_when_a_third_is_left() {
    let s = FakeApiServer::start().await;
    let cfg = config("agent-secret");
    let t0 = SystemTime::now();
    let ca = ensure_ca(&s.client(), &cfg, t0).await.unwrap();
    let c = s.client();

    let first = ensure_agent_secret(&c, &ca, &cfg, t0).await.unwrap();
    assert_eq!(first, Outcome::Issued(RenewWhy::Missing));
    let created = secret(&s, "ballast-agent-tls").expect("created");
    assert_eq!(data(&created, "ca.crt"), ca.cert_pem());
    assert!(data(&created, "tls.key").contains("PRIVATE KEY"));

    for later in [DAY, 59 * DAY] {
        let kept = ensure_agent_secret(&c, &ca, &cfg, t0 + later)
            .await
            .unwrap();
        assert!(matches!(kept, Outcome::Kept { .. }), "{later:?}: {kept:?}");
    }
    let unchanged = secret(&s, "ballast-agent-tls").unwrap();
    assert_eq!(
        unchanged["metadata"]["resourceVersion"], created["metadata"]["resourceVersion"],
        "kept means not written"
    );

    let renewed = ensure_agent_secret(&c, &ca, &cfg, t0 + 61 * DAY)
        .await
        .unwrap();
    assert!(
        matches!(renewed, Outcome::Issued(RenewWhy::Due { .. })),
        "{renewed:?}"
    );
    let after = secret(&s, "ballast-agent-tls").unwrap();
    assert_ne!(data(&after, "tls.crt"), data(&created, "tls.crt"));
    assert_eq!(data(&after, "ca.crt"), ca.cert_pem());

    // A Secret someone emptied is refilled.
    let api: Api<Secret> = Api::namespaced(c.clone(), "default");
    let mut emptied = api.get("ballast-agent-tls").await.unwrap();
    emptied.data = None;
    api.replace("ballast-agent-tls", &PostParams::default(), &emptied)
        .await
        .unwrap();
    let refilled = ensure_agent_secret(&c, &ca, &cfg, t0 + 61 * DAY)
        .await
        .unwrap();
    assert_eq!(refilled, Outcome::Issued(RenewWhy::Missing));
}

#[tokio::test]
async fn a_garbled_or_incomplete_ca_secret_is_refused_by_name_and_left_alone() {
    let s = FakeApiServer::start().await;
    let cfg = config("garbled");
    let api: Api<Secret> = Api::namespaced(s.client(), "default");
    let put = |data: &[(&str, &str)]| {
        let mut secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "ballast-ca", "namespace": "default"}}))
        .unwrap();
        secret.data = Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        );
        secret
    };
    api.create(
        &PostParams::default(),
        &put(&[("tls.crt", "garbage"), ("tls.key", "garbage")]),
    )
    .await
    .unwrap();
    let before = secret(&s, "ballast-ca").unwrap();
    let err = ensure_ca(&s.client(), &cfg, SystemTime::now())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, BootstrapError::Garbled { name, key: "tls.crt", .. } if name == "ballast-ca"),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("Secret default/ballast-ca, key \"tls.crt\"")
            && text.contains("refusing to replace a CA"),
        "{text}"
    );
    assert_eq!(secret(&s, "ballast-ca").unwrap(), before, "left alone");

    let mut incomplete = api.get("ballast-ca").await.unwrap();
    incomplete.data = put(&[("tls.crt", "garbage")]).data;
    api.replace("ballast-ca", &PostParams::default(), &incomplete)
        .await
        .unwrap();
    let err = ensure_ca(&s.client(), &cfg, SystemTime::now())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, BootstrapError::MissingKey { key: "tls.key", .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("Secret default/ballast-ca has no key \"tls.key\""),
        "{err}"
    );
}

/// An agent's channel from the agents' Secret, expecting the link's name.
async fn agent_channel(
    addr: std::net::SocketAddr,
    agent_secret: &Value,
) -> Result<Channel, tonic::transport::Error> {
    let agent = Leaf {
        cert: data(agent_secret, "tls.crt"),
        key: data(agent_secret, "tls.key"),
    };
    tls_channel(addr, &data(agent_secret, "ca.crt"), Some(&agent), LINK_NAME).await
}

#[tokio::test]
async fn the_bootstrapped_certificates_carry_an_agents_stream() {
    ballast_controller::link::tls::install_crypto_provider();
    let s = FakeApiServer::start().await;
    let cfg = config("stream");
    let now = SystemTime::now();
    let ca = ensure_ca(&s.client(), &cfg, now).await.unwrap();
    assert_eq!(
        ensure_serving_files(&ca, &cfg, now).unwrap(),
        Outcome::Issued(RenewWhy::Missing)
    );
    assert!(matches!(
        ensure_serving_files(&ca, &cfg, now).unwrap(),
        Outcome::Kept { .. }
    ));
    ensure_agent_secret(&s.client(), &ca, &cfg, now)
        .await
        .unwrap();
    let agent_secret = secret(&s, "ballast-agent-tls").unwrap();

    let plan = plan_for("node-a", &[("web", service("192.0.2.10", &["10.0.0.1"]))]);
    let h = Harness::start(
        Security::Mtls(cfg.tls_files(), AgentIdentity::Shared),
        Some(plan),
        true,
    )
    .await;
    let ch = agent_channel(h.addr, &agent_secret).await.unwrap();
    let mut agent = open(&ch, hello("node-a", 0, &[])).await.unwrap();
    next(&mut agent).await.unwrap();

    // A serving certificate for other names is reissued, and the running
    // server takes it at the next connection.
    let renamed = BootstrapConfig {
        service_names: vec!["elsewhere.default.svc".into()],
        ..cfg.clone()
    };
    assert!(matches!(
        ensure_serving_files(&ca, &renamed, now).unwrap(),
        Outcome::Issued(RenewWhy::Names { .. })
    ));
    // The agent checks the server first: the handshake fails.
    let refused = agent_channel(h.addr, &agent_secret)
        .await
        .expect_err("refused");
    let text = format!("{refused:?}");
    assert!(text.contains("NotValidForName"), "{text}");
    h.shutdown().await;
}

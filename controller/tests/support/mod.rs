//! What the controller's API tests share: an API server with our CRDs,
//! controller options, and polling until something holds.

use std::future::Future;
use std::time::Duration;

use ballast_api::{AddressPool, VirtualServer};
use ballast_controller::k8s::leader::LeaseConfig;
use ballast_controller::k8s::run::Options;
use ballast_controller::plan::PlanOptions;
use ballast_fake_apiserver::FakeApiServer;
use kube::CustomResourceExt;

/// Options for controller `identity` on the Lease `default/ballast-controller`.
pub fn options_with_lease(identity: &str, duration: Duration, retry_period: Duration) -> Options {
    Options {
        plan: PlanOptions::default(),
        lease: LeaseConfig {
            namespace: "default".into(),
            name: "ballast-controller".into(),
            identity: identity.into(),
            duration,
        },
        retry_period,
        debounce: Duration::from_millis(20),
        resync: Duration::from_secs(1),
    }
}

/// An API server with our CRDs installed.
pub async fn server() -> FakeApiServer {
    let s = FakeApiServer::start().await;
    s.install_crd(&VirtualServer::crd());
    s.install_crd(&AddressPool::crd());
    s
}

/// Polls `check` until it returns `Some`, or fails after 15 s with `what`.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    for _ in 0..300 {
        if let Some(v) = check().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

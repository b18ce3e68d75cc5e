//! Percentiles, and the baseline of the latency figures: when the API
//! server's own watch delivers each EndpointSlice write to a watcher (a
//! kube watch on the same kind, as the controller's reflector has).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Client;
use kube::api::{Api, WatchEvent, WatchParams};
use tokio_stream::StreamExt;

/// Sorted samples.
pub struct Samples(Vec<Duration>);

impl Samples {
    pub fn new(mut v: Vec<Duration>) -> Self {
        assert!(!v.is_empty(), "no samples");
        v.sort();
        Samples(v)
    }

    /// The nearest-rank percentile `q` (0 < q <= 1).
    pub fn pct(&self, q: f64) -> Duration {
        let rank = (q * self.0.len() as f64).ceil() as usize;
        self.0[rank.clamp(1, self.0.len()) - 1]
    }

    pub fn max(&self) -> Duration {
        *self.0.last().expect("not empty")
    }

    /// "p50 p90 p99 max" in ms.
    pub fn row(&self) -> String {
        format!(
            "{:>8.2} {:>8.2} {:>8.2} {:>8.2}",
            ms(self.pct(0.5)),
            ms(self.pct(0.9)),
            ms(self.pct(0.99)),
            ms(self.max())
        )
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// When each resourceVersion of an EndpointSlice in `namespace` reached
/// the watcher.
#[derive(Clone, Default)]
pub struct SeenAt(Arc<Mutex<HashMap<String, Instant>>>);

impl SeenAt {
    /// Waits (polling) until `rv` was seen, at most `limit`.
    pub fn wait(&self, rv: &str, limit: Duration) -> Instant {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(t) = self.0.lock().unwrap().get(rv) {
                return *t;
            }
            assert!(
                Instant::now() < deadline,
                "the watch never delivered resourceVersion {rv}"
            );
            std::thread::sleep(Duration::from_micros(100));
        }
    }
}

/// Watches EndpointSlices in `namespace` from `from_rv` on, forever
/// (re-watching from the last version when the server ends a watch).
pub async fn watch_slices(client: Client, namespace: &str, from_rv: String, seen: SeenAt) {
    let api: Api<EndpointSlice> = Api::namespaced(client, namespace);
    let mut rv = from_rv;
    loop {
        let params = WatchParams::default().timeout(290);
        let stream = api
            .watch(&params, &rv)
            .await
            .expect("watching EndpointSlices");
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            let now = Instant::now();
            let version = match event.expect("watch event") {
                WatchEvent::Added(s) | WatchEvent::Modified(s) | WatchEvent::Deleted(s) => {
                    s.metadata.resource_version
                }
                WatchEvent::Bookmark(b) => Some(b.metadata.resource_version),
                WatchEvent::Error(e) => panic!("watch error: {e:?}"),
            };
            if let Some(v) = version {
                seen.0.lock().unwrap().insert(v.clone(), now);
                rv = v;
            }
        }
    }
}

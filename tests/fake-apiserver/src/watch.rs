//! WATCH: opening a watch at a resourceVersion and streaming its events.
//!
//! [`open`] runs under the state lock: it validates the request, computes
//! the events the client must see first (synthetic ADDED for the current
//! state, or the history after the requested version) and subscribes to the
//! broadcast, so nothing is missed or repeated between the two. [`Watch::into_body`]
//! then streams from a task: one JSON event per line, periodic BOOKMARKs,
//! and a clean end at `timeoutSeconds`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio::time::{Instant, MissedTickBehavior};

use crate::list::parse_rv;
use crate::objects::{View, render};
use crate::resources::{GroupResource, Served};
use crate::selectors::Selectors;
use crate::state::State;
use crate::status::{ApiError, FieldCause};
use crate::store::{ChangeRecord, EventType, Notice};

/// How often a watch with `allowWatchBookmarks` reports progress it has not
/// shown the client (the apiserver does so about once a minute; faster here
/// so tests do not wait).
pub const BOOKMARK_INTERVAL: Duration = Duration::from_secs(1);

/// The apiserver picks a random timeout of at least `--min-request-timeout` (30 min) when none is given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

/// Query parameters of a watch.
#[derive(Clone, Debug)]
pub struct WatchParams {
    /// Only this namespace (`None`: all).
    pub namespace: Option<String>,
    /// `labelSelector` and `fieldSelector`.
    pub selectors: Selectors,
    /// `resourceVersion`.
    pub resource_version: Option<String>,
    /// `resourceVersionMatch`.
    pub version_match: Option<String>,
    /// `sendInitialEvents`.
    pub send_initial_events: Option<bool>,
    /// `allowWatchBookmarks`.
    pub bookmarks: bool,
    /// `timeoutSeconds`.
    pub timeout: Duration,
}

enum Line {
    Event(EventType, Arc<Value>),
    Bookmark { rv: u64, initial_events_end: bool },
    Error(ApiError),
}

/// An opened watch, ready to stream.
pub struct Watch {
    served: Served,
    gr: GroupResource,
    view: View,
    params: WatchParams,
    first: Vec<Line>,
    /// The history position the stream has caught up to.
    last_rv: u64,
    receiver: broadcast::Receiver<Notice>,
}

fn invalid_options(field: &str, message: &str) -> ApiError {
    ApiError::invalid(
        "meta.k8s.io",
        "ListOptions",
        "",
        FieldCause {
            reason: "FieldValueForbidden".into(),
            field: field.into(),
            message: format!("Forbidden: {message}"),
        },
    )
}

/// What a change looks like through a watch's selectors: an update that
/// moves an object into the selection is ADDED, out of it DELETED (as the
/// apiserver's watch cache does).
fn filter_change(gr: &GroupResource, params: &WatchParams, change: &ChangeRecord) -> Option<Line> {
    if change.gr != *gr
        || params
            .namespace
            .as_ref()
            .is_some_and(|ns| *ns != change.namespace)
    {
        return None;
    }
    let now = params.selectors.matches(&change.object);
    let was = change
        .prev
        .as_ref()
        .is_some_and(|p| params.selectors.matches(p));
    let event_type = match change.event_type {
        EventType::Added => now.then_some(EventType::Added)?,
        EventType::Deleted => (was || now).then_some(EventType::Deleted)?,
        EventType::Modified => match (was, now) {
            (true, true) => EventType::Modified,
            (false, true) => EventType::Added,
            (true, false) => EventType::Deleted,
            (false, false) => return None,
        },
    };
    Some(Line::Event(event_type, Arc::clone(&change.object)))
}

/// Validates and opens a watch. Must run under the state lock.
pub fn open(
    state: &State,
    served: &Served,
    view: View,
    params: WatchParams,
) -> Result<Watch, ApiError> {
    let streaming_list = params.send_initial_events == Some(true);
    if streaming_list {
        if params.version_match.as_deref() != Some("NotOlderThan") {
            return Err(invalid_options(
                "resourceVersionMatch",
                "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            ));
        }
        if !params.bookmarks {
            return Err(invalid_options(
                "allowWatchBookmarks",
                "sendInitialEvents requires setting allowWatchBookmarks to true",
            ));
        }
    } else if params
        .version_match
        .as_deref()
        .is_some_and(|m| !m.is_empty())
    {
        return Err(invalid_options(
            "resourceVersionMatch",
            "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
        ));
    }

    let store = &state.store;
    let gr = served.group_resource();
    let current = store.current_rv();
    let rv = params.resource_version.clone().unwrap_or_default();
    let mut first = Vec::new();
    let from_state = params
        .send_initial_events
        .unwrap_or(rv.is_empty() || rv == "0");
    if from_state {
        // Start from the current state: synthetic ADDED for every selected object.
        if !rv.is_empty() && rv != "0" {
            let n = parse_rv(&rv)?;
            if n > current {
                return Err(ApiError::TooLargeResourceVersion {
                    requested: n,
                    current,
                });
            }
        }
        for (_, obj) in store.objects(&gr, params.namespace.as_deref()) {
            if params.selectors.matches(&obj.value) {
                first.push(Line::Event(EventType::Added, Arc::clone(&obj.value)));
            }
        }
        if streaming_list {
            first.push(Line::Bookmark {
                rv: current,
                initial_events_end: true,
            });
        }
    } else if !rv.is_empty() && rv != "0" {
        let n = parse_rv(&rv)?;
        if n < store.floor() {
            // Sent as an event, not an HTTP error: clients relist on a 410 ERROR event.
            first.push(Line::Error(ApiError::Expired(format!(
                "too old resource version: {n} ({})",
                store.floor()
            ))));
        } else if n > current {
            first.push(Line::Error(ApiError::TooLargeResourceVersion {
                requested: n,
                current,
            }));
        } else {
            first.extend(
                store
                    .changes_after(&gr, n)
                    .iter()
                    .filter_map(|c| filter_change(&gr, &params, c)),
            );
        }
    }
    Ok(Watch {
        served: served.clone(),
        gr,
        view,
        params,
        first,
        last_rv: current,
        receiver: store.subscribe(),
    })
}

impl Watch {
    fn encode(&self, line: &Line) -> Bytes {
        let api_version = self.served.api_version();
        let event = match line {
            Line::Event(t, obj) => {
                json!({"type": t.as_str(), "object": render(obj, &api_version, self.view)})
            }
            Line::Bookmark {
                rv,
                initial_events_end,
            } => {
                let (kind, api_version) = match self.view {
                    View::Full => (self.served.kind.kind.clone(), api_version),
                    View::Metadata => (
                        "PartialObjectMetadata".to_string(),
                        "meta.k8s.io/v1".to_string(),
                    ),
                };
                let mut metadata = json!({"resourceVersion": rv.to_string()});
                if *initial_events_end {
                    metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
                }
                json!({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": api_version, "metadata": metadata}})
            }
            Line::Error(e) => json!({"type": "ERROR", "object": e.to_status()}),
        };
        let mut bytes = serde_json::to_vec(&event).expect("JSON values serialize");
        bytes.push(b'\n');
        Bytes::from(bytes)
    }

    /// Streams the watch as a chunked response body.
    pub fn into_body(self) -> Body {
        let (tx, rx) = mpsc::channel::<Bytes>(64);
        tokio::spawn(self.run(tx));
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
        });
        Body::from_stream(stream)
    }

    async fn run(mut self, tx: mpsc::Sender<Bytes>) {
        let first = std::mem::take(&mut self.first);
        for line in &first {
            if tx.send(self.encode(line)).await.is_err() {
                return;
            }
            if matches!(line, Line::Error(_)) {
                return;
            }
        }
        let deadline = Instant::now() + self.params.timeout;
        let mut ticker =
            tokio::time::interval_at(Instant::now() + BOOKMARK_INTERVAL, BOOKMARK_INTERVAL);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // The newest version the client has been shown (or told about by a bookmark).
        let mut shown_rv = self.last_rv;
        loop {
            let line = tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    // Lets the client resume exactly where this stream stopped.
                    if self.params.bookmarks {
                        let _ = tx.send(self.encode(&Line::Bookmark { rv: self.last_rv, initial_events_end: false })).await;
                    }
                    return;
                }
                _ = ticker.tick() => {
                    if !self.params.bookmarks || self.last_rv <= shown_rv {
                        continue;
                    }
                    shown_rv = self.last_rv;
                    Line::Bookmark { rv: self.last_rv, initial_events_end: false }
                }
                _ = tx.closed() => return,
                notice = self.receiver.recv() => match notice {
                    Ok(Notice::Change(change)) => {
                        if change.rv <= self.last_rv {
                            continue;
                        }
                        self.last_rv = change.rv;
                        match filter_change(&self.gr, &self.params, &change) {
                            Some(line) => {
                                shown_rv = change.rv;
                                line
                            }
                            None => continue,
                        }
                    }
                    Ok(Notice::Compacted { floor }) => {
                        let e = ApiError::Expired(format!("too old resource version: {} ({floor})", self.last_rv));
                        let _ = tx.send(self.encode(&Line::Error(e))).await;
                        return;
                    }
                    Ok(Notice::KindRemoved(gr)) if gr == self.gr => return,
                    Ok(Notice::KindRemoved(_)) => continue,
                    // Shutdown, or a watcher too slow to keep up: end the stream;
                    // the client resumes from its last version, which the
                    // history still holds.
                    Ok(Notice::Shutdown) | Err(_) => return,
                },
            };
            if tx.send(self.encode(&line)).await.is_err() {
                return;
            }
        }
    }
}

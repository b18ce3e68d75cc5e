//! The HTTP layer: one handler that logs, injects faults, parses the path
//! and query, and maps verbs and errors to responses.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State as AxumState};
use axum::http::{HeaderMap, Method, StatusCode, header, request::Parts};
use axum::response::Response;
use serde_json::{Value, json};

use crate::discovery;
use crate::faults::Faults;
use crate::list::{ListParams, list};
use crate::managed::Subresource;
use crate::objects::{View, list_type, render};
use crate::patch::PatchKind;
use crate::paths::{ApiPath, ResourcePath, parse};
use crate::recorder::{RequestLog, RequestRecord, url_query_pairs};
use crate::resources::Served;
use crate::selectors::{FieldSelector, LabelSelector, Selectors};
use crate::state::State;
use crate::status::ApiError;
use crate::verbs::{self, DeleteOptions, WriteOptions};
use crate::watch::{self, DEFAULT_TIMEOUT, WatchParams};

/// Largest request body accepted.
const BODY_LIMIT: usize = 64 << 20;

/// State shared by the handler and the [`crate::FakeApiServer`] handle.
#[derive(Debug)]
pub struct Shared {
    /// Kinds and objects.
    pub state: Mutex<State>,
    /// Every answered request.
    pub log: RequestLog,
    /// Pending injected failures.
    pub faults: Faults,
    /// Where the server listens (reported by `/api`).
    pub addr: SocketAddr,
}

impl Shared {
    /// Locks the state; a panic in another request does not wedge the server.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The router serving everything through [`entry`].
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(entry).with_state(shared)
}

type Query = HashMap<String, String>;

fn json_response(status: u16, v: &Value) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            serde_json::to_vec(v).expect("JSON values serialize"),
        ))
        .expect("valid response")
}

fn error_response(e: &ApiError) -> Response {
    let mut r = json_response(e.code(), &e.to_status());
    // The apiserver sends Retry-After with throttling and "too large resource version".
    if matches!(e.code(), 429 | 504) {
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    r
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn flag(q: &Query, name: &str) -> bool {
    matches!(q.get(name).map(String::as_str), Some("true" | "1"))
}

async fn entry(AxumState(shared): AxumState<Arc<Shared>>, req: Request) -> Response {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let q: Query = url_query_pairs(&query).into_iter().collect();
    let mut record = RequestRecord {
        method: method.clone(),
        path: path.clone(),
        query: query.clone(),
        content_type: header_str(req.headers(), header::CONTENT_TYPE).map(str::to_string),
        field_manager: q.get("fieldManager").cloned(),
        status: 0,
        injected: false,
    };
    let path_and_query = if query.is_empty() {
        path
    } else {
        format!("{path}?{query}")
    };
    let response = match shared.faults.take(&method, &path_and_query) {
        Some(err) => {
            record.injected = true;
            error_response(&err)
        }
        None => dispatch(&shared, req, &q)
            .await
            .unwrap_or_else(|e| error_response(&e)),
    };
    record.status = response.status().as_u16();
    tracing::debug!(method = %record.method, path = %record.path, query = %record.query, status = record.status, "fake-apiserver");
    shared.log.push(record);
    response
}

async fn dispatch(shared: &Shared, req: Request, q: &Query) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, BODY_LIMIT)
        .await
        .map_err(|e| ApiError::BadRequest(format!("reading the request body: {e}")))?;
    let path = parse(parts.uri.path()).ok_or(ApiError::NoSuchResource)?;
    let aggregated =
        header_str(&parts.headers, header::ACCEPT).is_some_and(discovery::wants_aggregated);
    if parts.method != Method::GET && !matches!(path, ApiPath::Resource(_)) {
        return Err(ApiError::MethodNotAllowed);
    }
    let aggregated_response = |v: Value| {
        let mut r = json_response(200, &v);
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static(discovery::AGGREGATED_CONTENT_TYPE),
        );
        r
    };
    let state = shared.lock();
    match path {
        ApiPath::Version => Ok(json_response(200, &discovery::version_info())),
        ApiPath::CoreVersions if aggregated => Ok(aggregated_response(discovery::aggregated(
            &state.registry,
            true,
        ))),
        ApiPath::CoreVersions => Ok(json_response(
            200,
            &discovery::core_versions(&shared.addr.to_string()),
        )),
        ApiPath::Groups if aggregated => Ok(aggregated_response(discovery::aggregated(
            &state.registry,
            false,
        ))),
        ApiPath::Groups => Ok(json_response(200, &discovery::group_list(&state.registry))),
        ApiPath::Group(g) => discovery::group(&state.registry, &g)
            .map(|v| json_response(200, &v))
            .ok_or(ApiError::NoSuchResource),
        ApiPath::GroupVersion(g, v) => discovery::resource_list(&state.registry, &g, &v)
            .map(|v| json_response(200, &v))
            .ok_or(ApiError::NoSuchResource),
        ApiPath::Resource(rp) => resource_request(state, &parts, &body, &rp, q),
    }
}

fn selectors(served: &Served, q: &Query) -> Result<Selectors, ApiError> {
    let bad = |e: crate::selectors::SelectorError| ApiError::BadRequest(e.to_string());
    Ok(Selectors {
        labels: LabelSelector::parse(
            q.get("labelSelector")
                .map(String::as_str)
                .unwrap_or_default(),
        )
        .map_err(bad)?,
        fields: FieldSelector::parse(
            q.get("fieldSelector")
                .map(String::as_str)
                .unwrap_or_default(),
            &served.kind.selectable_fields,
        )
        .map_err(bad)?,
    })
}

fn write_options(parts: &Parts, q: &Query) -> WriteOptions {
    // Like the apiserver: without fieldManager, the User-Agent's product name manages.
    let default_manager = header_str(&parts.headers, header::USER_AGENT)
        .and_then(|ua| ua.split('/').next())
        .filter(|m| !m.is_empty())
        .unwrap_or("unknown")
        .to_string();
    WriteOptions {
        field_manager: q.get("fieldManager").cloned(),
        default_manager,
        force: flag(q, "force"),
        dry_run: q.contains_key("dryRun"),
    }
}

fn parse_json_body(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("the request body is not valid JSON: {e}")))
}

fn resource_request(
    mut state: MutexGuard<'_, State>,
    parts: &Parts,
    body: &[u8],
    rp: &ResourcePath,
    q: &Query,
) -> Result<Response, ApiError> {
    let served = state
        .registry
        .lookup(&rp.group, &rp.version, &rp.plural)
        .ok_or(ApiError::NoSuchResource)?;
    let namespaced = served.kind.namespaced;
    match (&rp.namespace, &rp.name) {
        (Some(_), _) if !namespaced => return Err(ApiError::NoSuchResource),
        (None, Some(_)) if namespaced => return Err(ApiError::NoSuchResource),
        _ => {}
    }
    let sub = match rp.subresource.as_deref() {
        None => Subresource::Main,
        Some("status") if served.has_status => Subresource::Status,
        Some(_) => return Err(ApiError::NoSuchResource),
    };
    let ns = rp.namespace.clone().unwrap_or_default();
    let view = match header_str(&parts.headers, header::ACCEPT) {
        Some(a) if a.contains("as=PartialObjectMetadata") => View::Metadata,
        _ => View::Full,
    };
    let api_version = served.api_version();
    let object_response =
        |status: u16, obj: &Value| json_response(status, &render(obj, &api_version, view));
    let watching = flag(q, "watch");

    match (&parts.method, rp.name.as_deref()) {
        (&Method::GET, name) if watching => {
            let mut selectors = selectors(&served, q)?;
            if let Some(name) = name {
                // Watching a single object path is a watch with a name field selector.
                selectors.fields = FieldSelector::parse(&format!("metadata.name={name}"), &[])
                    .map_err(|e| ApiError::BadRequest(e.to_string()))?;
            }
            let params = WatchParams {
                namespace: rp.namespace.clone(),
                selectors,
                resource_version: q.get("resourceVersion").cloned(),
                version_match: q.get("resourceVersionMatch").cloned(),
                send_initial_events: q.get("sendInitialEvents").map(|v| v == "true" || v == "1"),
                bookmarks: flag(q, "allowWatchBookmarks"),
                timeout: q
                    .get("timeoutSeconds")
                    .and_then(|t| t.parse().ok())
                    .filter(|t| *t > 0)
                    .map(Duration::from_secs)
                    .unwrap_or(DEFAULT_TIMEOUT),
            };
            let watch = watch::open(&state, &served, view, params)?;
            drop(state);
            Ok(Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/json")
                .body(watch.into_body())
                .expect("valid response"))
        }
        (&Method::GET, None) => {
            let params = ListParams {
                selectors: selectors(&served, q)?,
                limit: q.get("limit").and_then(|l| l.parse().ok()),
                continue_token: q.get("continue").cloned(),
                resource_version: q.get("resourceVersion").cloned(),
                version_match: q.get("resourceVersionMatch").cloned(),
            };
            let page = list(
                &state.store,
                &served.group_resource(),
                rp.namespace.as_deref(),
                &params,
            )?;
            let (kind, list_api_version) = list_type(&served.kind, &api_version, view);
            let mut metadata = json!({"resourceVersion": page.resource_version.to_string()});
            if let Some(token) = page.continue_token {
                metadata["continue"] = json!(token);
            }
            if let Some(n) = page.remaining {
                metadata["remainingItemCount"] = json!(n);
            }
            let items: Vec<Value> = page
                .items
                .iter()
                .map(|o| render(o, &api_version, view))
                .collect();
            Ok(json_response(
                200,
                &json!({"kind": kind, "apiVersion": list_api_version, "metadata": metadata, "items": items}),
            ))
        }
        (&Method::GET, Some(name)) => {
            let obj = verbs::get(&state, &served, &ns, name)?;
            Ok(object_response(200, &obj))
        }
        (&Method::POST, None) => {
            let created = verbs::create(
                &mut state,
                &served,
                &ns,
                parse_json_body(body)?,
                &write_options(parts, q),
            )?;
            Ok(object_response(201, &created))
        }
        (&Method::PUT, Some(name)) => {
            let written = verbs::replace(
                &mut state,
                &served,
                &ns,
                name,
                sub,
                parse_json_body(body)?,
                &write_options(parts, q),
            )?;
            Ok(object_response(
                if written.created { 201 } else { 200 },
                &written.object,
            ))
        }
        (&Method::PATCH, Some(name)) => {
            let content_type = header_str(&parts.headers, header::CONTENT_TYPE).unwrap_or_default();
            let kind = PatchKind::from_content_type(content_type).ok_or_else(|| {
                ApiError::UnsupportedMediaType(format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml{}",
                    if served.kind.custom { "" } else { ", application/strategic-merge-patch+json" }
                ))
            })?;
            let written = verbs::patch(
                &mut state,
                &served,
                &ns,
                name,
                sub,
                kind,
                body,
                &write_options(parts, q),
            )?;
            Ok(object_response(
                if written.created { 201 } else { 200 },
                &written.object,
            ))
        }
        (&Method::DELETE, Some(name)) if sub == Subresource::Main => {
            let opts = DeleteOptions::parse(body, q.contains_key("dryRun"))?;
            let answer = verbs::delete(&mut state, &served, &ns, name, &opts)?;
            Ok(json_response(200, &answer))
        }
        (&Method::DELETE, None) => {
            let opts = DeleteOptions::parse(body, q.contains_key("dryRun"))?;
            let selectors = selectors(&served, q)?;
            let answer = verbs::delete_collection(
                &mut state,
                &served,
                rp.namespace.as_deref(),
                &selectors,
                &opts,
            )?;
            Ok(json_response(200, &answer))
        }
        _ => Err(ApiError::MethodNotAllowed),
    }
}

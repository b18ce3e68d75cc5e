//! The request log behind [`crate::FakeApiServer::requests`].

use std::sync::Mutex;

use crate::paths::{ApiPath, parse};

/// One request the server answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// HTTP method, upper case (`GET`, `PATCH`, ...).
    pub method: String,
    /// Path without the query, e.g. `/api/v1/namespaces/default/services`.
    pub path: String,
    /// Raw query string without `?` (empty when none), still percent-encoded.
    pub query: String,
    /// The request's `Content-Type`, if any.
    pub content_type: Option<String>,
    /// The `fieldManager` query parameter, if any.
    pub field_manager: Option<String>,
    /// HTTP status of the response (200 for watches, whose errors come as events).
    pub status: u16,
    /// Whether the response was forced by [`crate::FakeApiServer::fail_next`].
    pub injected: bool,
}

impl RequestRecord {
    /// Whether the query string has parameter `name` (in any form: `name=...`).
    pub fn has_param(&self, name: &str) -> bool {
        self.param(name).is_some()
    }

    /// The decoded value of query parameter `name`.
    pub fn param(&self, name: &str) -> Option<String> {
        url_query_pairs(&self.query)
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// Whether this was a watch request.
    pub fn is_watch(&self) -> bool {
        self.method == "GET" && matches!(self.param("watch").as_deref(), Some("true" | "1"))
    }

    /// Whether this was a list request (a GET on a collection that is not a watch).
    /// `plural` is the resource, e.g. `services`.
    pub fn is_list_of(&self, plural: &str) -> bool {
        self.method == "GET" && !self.is_watch() && self.path.ends_with(&format!("/{plural}"))
    }
}

/// A request as Kubernetes RBAC names it: what a Role or ClusterRole rule
/// must allow for the request to pass authorization.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiRequest {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete` or
    /// `deletecollection`.
    pub verb: &'static str,
    /// API group, `""` for core.
    pub api_group: String,
    /// Plural resource name.
    pub resource: String,
    /// e.g. `status`.
    pub subresource: Option<String>,
    /// None for cluster-scoped objects and requests across all namespaces.
    pub namespace: Option<String>,
}

impl ApiRequest {
    /// `resource` or `resource/subresource`, as RBAC rules spell it.
    pub fn rbac_resource(&self) -> String {
        match &self.subresource {
            Some(sub) => format!("{}/{sub}", self.resource),
            None => self.resource.clone(),
        }
    }
}

impl RequestRecord {
    /// The request as RBAC names it; None for discovery and other
    /// non-resource paths (`/api`, `/apis/...`, `/version`), which every
    /// authenticated client may read (the `system:discovery` role).
    pub fn api_request(&self) -> Option<ApiRequest> {
        let Some(ApiPath::Resource(r)) = parse(&self.path) else {
            return None;
        };
        let verb = match (self.method.as_str(), r.name.is_some()) {
            ("GET", true) => "get",
            ("GET", false) if self.is_watch() => "watch",
            ("GET", false) => "list",
            ("POST", _) => "create",
            ("PUT", _) => "update",
            ("PATCH", _) => "patch",
            ("DELETE", true) => "delete",
            ("DELETE", false) => "deletecollection",
            _ => return None,
        };
        Some(ApiRequest {
            verb,
            api_group: r.group,
            resource: r.plural,
            subresource: r.subresource,
            namespace: r.namespace,
        })
    }
}

/// Decodes `a=b&c=d` (with `+` and `%XX` escapes).
pub fn url_query_pairs(query: &str) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                    match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                        Some(b) => {
                            out.push(b);
                            i += 2;
                        }
                        None => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// Thread-safe append-only log.
#[derive(Debug, Default)]
pub struct RequestLog(Mutex<Vec<RequestRecord>>);

impl RequestLog {
    /// Appends.
    pub fn push(&self, r: RequestRecord) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(r);
    }

    /// Copy of everything so far.
    pub fn snapshot(&self) -> Vec<RequestRecord> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Forgets everything so far.
    pub fn clear(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(method: &str, path: &str, query: &str) -> RequestRecord {
        RequestRecord {
            method: method.into(),
            path: path.into(),
            query: query.into(),
            content_type: None,
            field_manager: None,
            status: 200,
            injected: false,
        }
    }

    #[test]
    fn requests_are_named_as_rbac_names_them() {
        let cases = [
            (
                "GET",
                "/api/v1/services",
                "",
                Some(("list", "", "services", None)),
            ),
            (
                "GET",
                "/api/v1/services",
                "watch=true&resourceVersion=5",
                Some(("watch", "", "services", None)),
            ),
            (
                "GET",
                "/apis/coordination.k8s.io/v1/namespaces/ns/leases/l",
                "",
                Some(("get", "coordination.k8s.io", "leases", Some("ns"))),
            ),
            (
                "PUT",
                "/apis/coordination.k8s.io/v1/namespaces/ns/leases/l",
                "",
                Some(("update", "coordination.k8s.io", "leases", Some("ns"))),
            ),
            (
                "POST",
                "/api/v1/namespaces/ns/secrets",
                "",
                Some(("create", "", "secrets", Some("ns"))),
            ),
            (
                "PATCH",
                "/apis/ballast.dev/v1alpha1/addresspools/p/status",
                "fieldManager=x",
                Some(("patch", "ballast.dev", "addresspools/status", None)),
            ),
            (
                "DELETE",
                "/api/v1/namespaces/ns/secrets/s",
                "",
                Some(("delete", "", "secrets", Some("ns"))),
            ),
            (
                "DELETE",
                "/api/v1/namespaces/ns/secrets",
                "",
                Some(("deletecollection", "", "secrets", Some("ns"))),
            ),
            (
                "GET",
                "/api/v1/namespaces/ns",
                "",
                Some(("get", "", "namespaces", None)),
            ),
            ("GET", "/apis/ballast.dev/v1alpha1", "", None),
            ("GET", "/version", "", None),
        ];
        for (method, path, query, want) in cases {
            let got = record(method, path, query).api_request();
            let got = got.as_ref().map(|r| {
                (
                    r.verb,
                    r.api_group.as_str(),
                    r.rbac_resource(),
                    r.namespace.as_deref(),
                )
            });
            let want = want.map(|(v, g, res, ns)| (v, g, res.to_string(), ns));
            assert_eq!(got, want, "{method} {path}?{query}");
        }
    }

    #[test]
    fn decodes_query_parameters() {
        let pairs = url_query_pairs("labelSelector=app%3Dweb%2Ctier+in+%28a%29&watch=true&x");
        assert_eq!(
            pairs[0],
            ("labelSelector".into(), "app=web,tier in (a)".into())
        );
        assert_eq!(pairs[1], ("watch".into(), "true".into()));
        assert_eq!(pairs[2], ("x".into(), String::new()));
        assert_eq!(url_query_pairs("a=%2"), vec![("a".into(), "%2".into())]);
    }
}

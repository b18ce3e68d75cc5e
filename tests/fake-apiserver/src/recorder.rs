//! The request log behind [`crate::FakeApiServer::requests`].

use std::sync::Mutex;

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

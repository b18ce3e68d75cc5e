//! Object metadata rules: names, server-owned fields, generation, rendering.

use serde_json::{Map, Value, json};

use crate::resources::{NameRule, ResourceKind};

/// `metadata` fields only the server sets; client values are replaced by the stored ones.
pub const SERVER_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "creationTimestamp",
    "generation",
    "resourceVersion",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// A string field of `metadata`, if set and non-empty.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?
        .get(field)?
        .as_str()
        .filter(|s| !s.is_empty())
}

/// `metadata` as a mutable map, created if missing or not a map.
pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = json!({});
    }
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    obj["metadata"].as_object_mut().expect("just made a map")
}

/// Copies the server-owned metadata (and apiVersion/kind) of `from` onto `to`,
/// dropping what the client sent for them, and drops `managedFields` (re-rendered by the caller).
pub fn restore_server_fields(to: &mut Value, from: &Value) {
    for key in ["apiVersion", "kind"] {
        to[key] = from[key].clone();
    }
    let from_meta = from["metadata"].as_object().cloned().unwrap_or_default();
    let meta = meta_mut(to);
    for key in SERVER_METADATA {
        match from_meta.get(*key) {
            Some(v) => meta.insert(key.to_string(), v.clone()),
            None => meta.remove(*key),
        };
    }
    meta.remove("managedFields");
    meta.remove("selfLink");
}

/// The part of an object whose change bumps `metadata.generation`: `spec`
/// when the object has one, otherwise everything but metadata and status.
pub fn generation_view(obj: &Value) -> Value {
    if obj.get("spec").is_some() {
        return obj["spec"].clone();
    }
    let mut m = obj.as_object().cloned().unwrap_or_default();
    for k in ["metadata", "status", "apiVersion", "kind"] {
        m.remove(k);
    }
    Value::Object(m)
}

/// Checks a name against the kind's rule; the error is the validator's message.
pub fn validate_name(rule: NameRule, name: &str) -> Result<(), String> {
    let label_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    };
    match rule {
        NameRule::Subdomain => {
            if name.len() <= 253 && name.split('.').all(label_ok) {
                Ok(())
            } else {
                Err("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".into())
            }
        }
        NameRule::Label => {
            if label_ok(name) {
                Ok(())
            } else {
                Err("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')".into())
            }
        }
        NameRule::Label1035 => {
            if label_ok(name) && name.starts_with(|c: char| c.is_ascii_lowercase()) {
                Ok(())
            } else {
                Err("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')".into())
            }
        }
    }
}

/// How the client asked to see objects (the `Accept` header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// Whole objects.
    Full,
    /// `as=PartialObjectMetadata`: only type and metadata (kube's metadata watcher).
    Metadata,
}

/// The object as served to a client of `api_version`: storage holds one
/// version, multi-version CRDs are served with their apiVersion rewritten
/// (the `None` conversion strategy).
pub fn render(obj: &Value, api_version: &str, view: View) -> Value {
    match view {
        View::Full => {
            let mut v = obj.clone();
            v["apiVersion"] = json!(api_version);
            v
        }
        View::Metadata => json!({
            "apiVersion": "meta.k8s.io/v1",
            "kind": "PartialObjectMetadata",
            "metadata": obj["metadata"].clone(),
        }),
    }
}

/// The `kind` and `apiVersion` of lists for a view.
pub fn list_type(kind: &ResourceKind, api_version: &str, view: View) -> (String, String) {
    match view {
        View::Full => (kind.list_kind.clone(), api_version.to_string()),
        View::Metadata => ("PartialObjectMetadataList".into(), "meta.k8s.io/v1".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_rules() {
        assert!(validate_name(NameRule::Subdomain, "a.b-c").is_ok());
        assert!(validate_name(NameRule::Subdomain, "A").is_err());
        assert!(validate_name(NameRule::Label, "a.b").is_err());
        assert!(validate_name(NameRule::Label1035, "1abc").is_err());
        assert!(validate_name(NameRule::Label1035, "abc-1").is_ok());
    }

    #[test]
    fn generation_view_prefers_spec() {
        let a = json!({"metadata": {"labels": {"x": "1"}}, "spec": {"a": 1}, "status": {"s": 1}});
        let mut b = a.clone();
        b["metadata"]["labels"]["x"] = json!("2");
        b["status"]["s"] = json!(2);
        assert_eq!(generation_view(&a), generation_view(&b));
        let lease = json!({"metadata": {}, "data": {"k": "v"}});
        assert_eq!(generation_view(&lease), json!({"data": {"k": "v"}}));
    }

    #[test]
    fn restore_replaces_client_values_of_server_fields() {
        let stored = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a", "uid": "u", "resourceVersion": "5"}});
        let mut sent = json!({"metadata": {"name": "a", "uid": "other", "labels": {"x": "y"}, "managedFields": []}});
        restore_server_fields(&mut sent, &stored);
        assert_eq!(sent["metadata"]["uid"], "u");
        assert_eq!(sent["metadata"]["resourceVersion"], "5");
        assert_eq!(sent["metadata"]["labels"]["x"], "y");
        assert!(sent["metadata"].get("managedFields").is_none());
        assert_eq!(sent["kind"], "Service");
    }
}

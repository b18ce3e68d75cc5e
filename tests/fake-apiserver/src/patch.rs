//! The patch formats, as pure functions on JSON documents.

use serde_json::Value;
use thiserror::Error;

/// Patch formats, named by the request's Content-Type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/strategic-merge-patch+json`, applied as a merge patch.
    Strategic,
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/apply-patch+yaml`, server-side apply.
    Apply,
}

impl PatchKind {
    /// Recognises a Content-Type (parameters such as `; charset=utf-8` are ignored).
    pub fn from_content_type(ct: &str) -> Option<Self> {
        match ct.split(';').next().unwrap_or_default().trim() {
            "application/merge-patch+json" => Some(PatchKind::Merge),
            "application/strategic-merge-patch+json" => Some(PatchKind::Strategic),
            "application/json-patch+json" => Some(PatchKind::Json),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
                Some(PatchKind::Apply)
            }
            _ => None,
        }
    }
}

/// Why a patch could not be applied.
#[derive(Debug, Error)]
pub enum PatchError {
    /// The body is not a valid document of its format (400).
    #[error("error decoding patch: {0}")]
    Decode(String),
    /// A JSON patch operation failed, e.g. a `test` or a missing path (422).
    #[error("{0}")]
    Apply(String),
}

/// RFC 7386: maps merge recursively, `null` deletes, everything else replaces.
pub fn merge_patch(doc: &mut Value, patch: &Value) {
    json_patch::merge(doc, patch);
}

/// Strategic merge patch, simplified to a JSON merge patch: lists are
/// replaced wholesale instead of merged by their patch-merge keys, and the
/// `$patch` / `$retainKeys` / `$setElementOrder` / `$deleteFromPrimitiveList`
/// directives are dropped.
pub fn strategic_merge_patch(doc: &mut Value, patch: &Value) {
    fn strip_directives(v: &Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.iter()
                    .filter(|(k, _)| !k.starts_with('$'))
                    .map(|(k, v)| (k.clone(), strip_directives(v)))
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
            other => other.clone(),
        }
    }
    merge_patch(doc, &strip_directives(patch));
}

/// RFC 6902, atomically: on failure `doc` is left unchanged.
pub fn json_patch(doc: &mut Value, body: &[u8]) -> Result<(), PatchError> {
    let patch: json_patch::Patch =
        serde_json::from_slice(body).map_err(|e| PatchError::Decode(e.to_string()))?;
    json_patch::patch(doc, &patch).map_err(|e| PatchError::Apply(e.to_string()))
}

/// Parses a merge or strategic patch body, which must be a JSON object.
pub fn parse_object_patch(body: &[u8]) -> Result<Value, PatchError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| PatchError::Decode(e.to_string()))?;
    if !v.is_object() {
        return Err(PatchError::Decode(
            "patch body must be a JSON object".into(),
        ));
    }
    Ok(v)
}

/// Parses an apply configuration: kube sends JSON, kubectl YAML.
pub fn parse_apply_config(body: &[u8]) -> Result<Value, PatchError> {
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => serde_yaml::from_slice(body).map_err(|e| PatchError::Decode(e.to_string()))?,
    };
    if !v.is_object() {
        return Err(PatchError::Decode(
            "apply configuration must be an object".into(),
        ));
    }
    Ok(v)
}

/// Merges an apply configuration into an object: maps merge recursively,
/// lists and scalars replace (lists are atomic), `null` removes the field.
pub fn apply_merge(base: &mut Value, overlay: &Value) {
    let Some(overlay) = overlay.as_object() else {
        *base = overlay.clone();
        return;
    };
    if !base.is_object() {
        *base = Value::Object(Default::default());
    }
    let base = base.as_object_mut().expect("just made an object");
    for (k, v) in overlay {
        match v {
            Value::Null => {
                base.remove(k);
            }
            Value::Object(_) => apply_merge(base.entry(k.clone()).or_insert(Value::Null), v),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn content_types() {
        assert_eq!(
            PatchKind::from_content_type("application/merge-patch+json; charset=utf-8"),
            Some(PatchKind::Merge)
        );
        assert_eq!(PatchKind::from_content_type("application/json"), None);
    }

    #[test]
    fn merge_patch_deletes_with_null_and_replaces_lists() {
        let mut d = json!({"a": {"b": 1, "c": 2}, "l": [1, 2]});
        merge_patch(&mut d, &json!({"a": {"b": null, "d": 3}, "l": [3]}));
        assert_eq!(d, json!({"a": {"c": 2, "d": 3}, "l": [3]}));
    }

    #[test]
    fn strategic_drops_directives() {
        let mut d = json!({"spec": {"ports": [{"port": 1}]}});
        strategic_merge_patch(
            &mut d,
            &json!({"spec": {"$setElementOrder/ports": [{"port": 2}], "ports": [{"port": 2}]}}),
        );
        assert_eq!(d, json!({"spec": {"ports": [{"port": 2}]}}));
    }

    #[test]
    fn json_patch_is_atomic() {
        let mut d = json!({"a": 1});
        let bad =
            br#"[{"op":"replace","path":"/a","value":2},{"op":"test","path":"/a","value":5}]"#;
        assert!(matches!(json_patch(&mut d, bad), Err(PatchError::Apply(_))));
        assert_eq!(d, json!({"a": 1}));
        json_patch(
            &mut d,
            br#"[{"op":"add","path":"/b","value":[1]},{"op":"remove","path":"/a"}]"#,
        )
        .unwrap();
        assert_eq!(d, json!({"b": [1]}));
    }

    #[test]
    fn apply_config_accepts_yaml() {
        let v =
            parse_apply_config(b"apiVersion: v1\nkind: Service\nmetadata:\n  name: x\n").unwrap();
        assert_eq!(v["metadata"]["name"], "x");
    }

    #[test]
    fn apply_merge_merges_maps_and_replaces_lists() {
        let mut d = json!({"spec": {"a": 1, "l": [1, 2], "m": {"x": 1}}});
        apply_merge(
            &mut d,
            &json!({"spec": {"l": [3], "m": {"y": 2}, "a": null}}),
        );
        assert_eq!(d, json!({"spec": {"l": [3], "m": {"x": 1, "y": 2}}}));
    }
}

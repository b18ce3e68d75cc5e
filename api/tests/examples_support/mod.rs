//! What the examples test checks beyond the validation rules: that every
//! field an example sets is one the resource has (serde and the apiserver
//! drop unknown ones silently, so a misspelt field would pass every rule),
//! and that a Service keeps every field through k8s-openapi's types.

use serde_json::Value;

/// `ObjectMeta` fields an example may set.
const METADATA_KEYS: &[&str] = &["name", "namespace", "labels", "annotations"];

/// Every field of `object` (a whole object or a fragment of one: any of
/// `apiVersion`, `kind`, `metadata`, `spec`, `status`) that the CRD schema
/// `schema` (its `openAPIV3Schema`) has no place for, or whose value has
/// the wrong type, as `path: why`.
pub fn schema_problems(schema: &Value, object: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let Some(top) = object.as_object() else {
        return vec!["the example is not a mapping".into()];
    };
    for (key, value) in top {
        match key.as_str() {
            "apiVersion" | "kind" => {
                if !value.is_string() {
                    out.push(format!("{key}: not a string"));
                }
            }
            "metadata" => {
                for k in value.as_object().into_iter().flat_map(|m| m.keys()) {
                    if !METADATA_KEYS.contains(&k.as_str()) {
                        out.push(format!("metadata.{k}: not a field an example sets"));
                    }
                }
            }
            _ => match schema["properties"].get(key) {
                Some(s) => walk(s, value, key, &mut out),
                None => out.push(format!("{key}: no such field")),
            },
        }
    }
    out
}

fn walk(schema: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
    if schema["x-kubernetes-preserve-unknown-fields"] == true {
        return;
    }
    if schema["x-kubernetes-int-or-string"] == true {
        if !(value.is_i64() || value.is_string()) {
            out.push(format!("{path}: neither an integer nor a string"));
        }
        return;
    }
    if value.is_null() && schema["nullable"] == true {
        return;
    }
    let type_ok = match schema["type"].as_str() {
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        _ => true,
    };
    if !type_ok {
        out.push(format!("{path}: not of type {}", schema["type"]));
        return;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        out.push(format!(
            "{path}: {value} is not one of {schema}",
            schema = schema["enum"]
        ));
    }
    match value {
        Value::Object(map) => {
            let properties = schema["properties"].as_object();
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (k, v) in map {
                let p = format!("{path}.{k}");
                match (properties.and_then(|p| p.get(k)), additional) {
                    (Some(s), _) | (None, Some(s)) => walk(s, v, &p, out),
                    (None, None) => out.push(format!("{p}: no such field")),
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                walk(&schema["items"], v, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Every leaf of `given` that `back` (the same object after a round trip
/// through a typed client) lacks or holds differently, as paths.
pub fn dropped(given: &Value, back: &Value, path: &str) -> Vec<String> {
    match (given, back) {
        (Value::Object(g), Value::Object(b)) => g
            .iter()
            .flat_map(|(k, v)| dropped(v, b.get(k).unwrap_or(&Value::Null), &format!("{path}.{k}")))
            .collect(),
        (Value::Array(g), Value::Array(b)) if g.len() == b.len() => g
            .iter()
            .zip(b)
            .enumerate()
            .flat_map(|(i, (g, b))| dropped(g, b, &format!("{path}[{i}]")))
            .collect(),
        (g, b) if g == b => Vec::new(),
        (g, b) => vec![format!("{path}: {g} came back as {b}")],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_misspelt_and_mistyped_fields() {
        let schema = json!({"properties": {"spec": {"type": "object", "properties": {
            "ports": {"type": "array", "items": {"type": "object", "properties": {
                "port": {"type": "integer"}, "protocol": {"type": "string", "enum": ["TCP", "UDP"]}}}},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "port": {"x-kubernetes-int-or-string": true}}}}});
        let ok = json!({"kind": "X", "metadata": {"name": "a"}, "spec": {
            "ports": [{"port": 80, "protocol": "UDP"}], "labels": {"a": "b"}, "port": "http"}});
        assert!(schema_problems(&schema, &ok).is_empty());
        let bad = json!({"metadata": {"lables": {}}, "spec": {
            "ports": [{"prot": 80, "port": "80", "protocol": "SCTP"}], "labels": {"a": 1}},
            "specs": {}});
        assert_eq!(
            schema_problems(&schema, &bad),
            [
                "metadata.lables: not a field an example sets",
                "spec.labels.a: not of type \"string\"",
                "spec.ports[0].port: not of type \"integer\"",
                "spec.ports[0].prot: no such field",
                "spec.ports[0].protocol: \"SCTP\" is not one of [\"TCP\",\"UDP\"]",
                "specs: no such field",
            ]
        );
    }

    #[test]
    fn finds_what_a_round_trip_dropped() {
        let given = json!({"a": {"b": 1, "c": [1, 2]}, "d": "x"});
        let back = json!({"a": {"b": 1, "c": [1, 2], "extra": 0}});
        assert_eq!(dropped(&given, &back, ""), [".d: \"x\" came back as null"]);
    }
}

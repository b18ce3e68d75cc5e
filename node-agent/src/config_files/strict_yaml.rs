//! The strict reading of one hand-written document as a `VirtualServer`:
//! other kinds and versions are refused, and so are unknown `spec` fields.
//!
//! Unknown fields are rejected here, not by `deny_unknown_fields` on the
//! shared types, because objects read back from a cluster may legitimately
//! carry fields from newer schema versions, while in a hand-written file an
//! unknown field is almost always a typo that would otherwise be silently
//! ignored.

use std::sync::OnceLock;

use serde::Deserialize;

use ballast_api::{API_VERSION, KIND, VirtualServer, VirtualServerSpec};

/// Parses one YAML document as a `VirtualServer`, rejecting other kinds and
/// unknown `spec` fields.
///
/// Serde errors keep their `at line L column C` suffix, counted in `doc`
/// (`read_documents` shifts them to the file's lines).
pub fn parse_virtual_server(doc: &str) -> Result<VirtualServer, String> {
    let raw: serde_yaml::Value = serde_yaml::from_str(doc).map_err(|e| e.to_string())?;
    from_parsed(doc, &raw)
}

/// [`parse_virtual_server`] of `doc`, already parsed as `raw`. The object
/// is deserialized from `raw`: the text is scanned again only when that
/// fails, and then its result stands (it is the reading with line and
/// column). Scanning once instead of three times was most of what a
/// reload of 10k documents cost.
pub(crate) fn from_parsed(doc: &str, raw: &serde_yaml::Value) -> Result<VirtualServer, String> {
    let serde_yaml::Value::Mapping(map) = raw else {
        return Err(format!(
            "expected a {KIND} object (a mapping), found {}",
            value_kind(raw)
        ));
    };
    let kind = map.get("kind").and_then(|v| v.as_str());
    let api_version = map.get("apiVersion").and_then(|v| v.as_str());
    match kind {
        None => return Err(format!("missing kind (expected {KIND})")),
        Some(k) if k != KIND => {
            return Err(format!(
                "kind {k} is not supported (expected {KIND}, apiVersion {API_VERSION})"
            ));
        }
        Some(_) => {}
    }
    match api_version {
        None => return Err(format!("missing apiVersion (expected {API_VERSION})")),
        Some(a) if a != API_VERSION => {
            return Err(format!(
                "apiVersion {a} is not supported for kind {KIND} (expected {API_VERSION})"
            ));
        }
        Some(_) => {}
    }

    let vs = match VirtualServer::deserialize(raw) {
        Ok(vs) => vs,
        Err(_) => serde_yaml::from_str(doc).map_err(|e| e.to_string())?,
    };

    let mut unknown = Vec::new();
    if let Some(spec) = map.get("spec") {
        let schema = spec_schema();
        find_unknown("spec", spec, schema, schema, &mut unknown);
    }
    if !unknown.is_empty() {
        return Err(unknown.join("; "));
    }
    Ok(vs)
}

/// The JSON schema of the spec is the one list of field names that cannot
/// drift from the types, so unknown-field detection walks it.
fn spec_schema() -> &'static serde_json::Value {
    static SCHEMA: OnceLock<serde_json::Value> = OnceLock::new();
    SCHEMA.get_or_init(|| schemars::schema_for!(VirtualServerSpec).to_value())
}

/// Follows `$ref` and the `anyOf` schemars emits for `Option<T>` to the node
/// that actually describes the value's shape.
fn resolve<'a>(
    root: &'a serde_json::Value,
    node: &'a serde_json::Value,
) -> Vec<&'a serde_json::Value> {
    let mut out = Vec::new();
    let mut stack = vec![node];
    while let Some(n) = stack.pop() {
        if let Some(r) = n.get("$ref").and_then(|r| r.as_str())
            && let Some(name) = r.strip_prefix("#/$defs/")
            && let Some(def) = root.get("$defs").and_then(|d| d.get(name))
        {
            stack.push(def);
        }
        for key in ["anyOf", "oneOf", "allOf"] {
            if let Some(branches) = n.get(key).and_then(|b| b.as_array()) {
                stack.extend(branches);
            }
        }
        out.push(n);
    }
    out
}

fn find_unknown(
    path: &str,
    raw: &serde_yaml::Value,
    root: &serde_json::Value,
    schema: &serde_json::Value,
    out: &mut Vec<String>,
) {
    use serde_yaml::Value;
    let nodes = resolve(root, schema);
    match raw {
        Value::Mapping(r) => {
            let Some(props) = nodes
                .iter()
                .find_map(|n| n.get("properties").and_then(|p| p.as_object()))
            else {
                return;
            };
            for (key, value) in r {
                let Some(key_str) = key.as_str() else {
                    out.push(format!("{path}: unexpected non-string key {key:?}"));
                    continue;
                };
                match props.get(key_str) {
                    Some(sub) => find_unknown(&format!("{path}.{key_str}"), value, root, sub, out),
                    None => {
                        let hint = props
                            .keys()
                            .find(|c| normalise_key(c) == normalise_key(key_str))
                            .map(|c| format!(" (did you mean {c}?)"))
                            .unwrap_or_default();
                        out.push(format!("{path}.{key_str}: unknown field{hint}"));
                    }
                }
            }
        }
        Value::Sequence(r) => {
            let Some(items) = nodes.iter().find_map(|n| n.get("items")) else {
                return;
            };
            for (i, rv) in r.iter().enumerate() {
                find_unknown(&format!("{path}[{i}]"), rv, root, items, out);
            }
        }
        _ => {}
    }
}

fn normalise_key(k: &str) -> String {
    k.chars()
        .filter(|c| *c != '_' && *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn value_kind(v: &serde_yaml::Value) -> &'static str {
    use serde_yaml::Value;
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The example from the VirtualServer design, verbatim (the api crate's
    /// tests read the same file).
    pub(crate) const EXAMPLE: &str = include_str!("../../../api/examples/virtual-server.yaml");

    #[test]
    fn parse_rejects_other_kinds_and_versions() {
        let cases = [
            (
                EXAMPLE.replace("kind: VirtualServer", "kind: Service"),
                "kind Service is not supported",
            ),
            (EXAMPLE.replace("kind: VirtualServer", ""), "missing kind"),
            (
                EXAMPLE.replace("ballast.dev/v1alpha1", "ballast.dev/v1"),
                "apiVersion ballast.dev/v1 is not supported",
            ),
            ("- a\n- b\n".to_string(), "found a list"),
        ];
        for (doc, want) in cases {
            let err = parse_virtual_server(&doc).unwrap_err();
            assert!(err.contains(want), "{want:?} not in {err:?}");
        }
    }

    #[test]
    fn parse_rejects_unknown_spec_fields() {
        let doc = EXAMPLE
            .replace("targetPort: 8080", "targetport: 8080")
            .replace("scheduler: Maglev", "shceduler: Maglev");
        let err = parse_virtual_server(&doc).unwrap_err();
        assert_eq!(
            err,
            "spec.ports[0].targetport: unknown field (did you mean targetPort?); \
             spec.shceduler: unknown field"
        );
        // Explicit nulls are how optional fields get unset; not unknown.
        let doc = EXAMPLE.replace("persistence: {timeoutSeconds: 0}", "persistence: null");
        assert!(parse_virtual_server(&doc).is_ok());
        // Unknown fields outside spec (e.g. status, annotations) are tolerated.
        let doc = format!("{EXAMPLE}status: {{addresses: [203.0.113.10]}}\n");
        assert!(parse_virtual_server(&doc).is_ok());
    }

    #[test]
    fn parse_errors_carry_location() {
        let doc = EXAMPLE.replace("port: 80,", "port: eighty,");
        let err = parse_virtual_server(&doc).unwrap_err();
        // Line 8: the file starts with a comment line.
        assert!(err.contains("at line 8 column 26"), "{err}");
        let doc = EXAMPLE.replace("forwarding: FullNAT", "forwarding: LVS");
        let err = parse_virtual_server(&doc).unwrap_err();
        assert!(err.contains("unknown variant `LVS`"), "{err}");
    }
}

//! Label and field selectors, parsed from their query-string form.

use serde_json::{Map, Value};
use thiserror::Error;

/// A selector string that could not be parsed (answered with 400 BadRequest).
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum SelectorError {
    /// Syntax error in a label selector.
    #[error("unable to parse requirement: {0}")]
    Label(String),
    /// Syntax error in a field selector.
    #[error("invalid selector: '{0}'; can't understand '{1}'")]
    Field(String, String),
    /// The field is not selectable for this kind.
    #[error("field label not supported: {0}")]
    UnsupportedField(String),
}

#[derive(Clone, Debug, PartialEq)]
enum LabelOp {
    Eq(String),
    NotEq(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
    Gt(i64),
    Lt(i64),
}

/// A parsed `labelSelector`: all requirements must hold.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LabelSelector {
    reqs: Vec<(String, LabelOp)>,
}

/// Splits on commas that are not inside `( )`.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn valid_label_key(k: &str) -> bool {
    !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn valid_label_value(v: &str) -> bool {
    v.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl LabelSelector {
    /// Parses the Kubernetes label selector syntax: `a=b`, `a==b`, `a!=b`, `a`,
    /// `!a`, `a in (x,y)`, `a notin (x,y)`, `a>1`, `a<1`, comma separated.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(LabelSelector { reqs });
        }
        for term in split_top_level(s) {
            let term = term.trim();
            let err = || SelectorError::Label(term.to_string());
            if term.is_empty() {
                return Err(err());
            }
            let (key, op) = if let Some(k) = term.strip_prefix('!') {
                (k.trim(), LabelOp::DoesNotExist)
            } else if let Some(open) = term.find('(') {
                let close = term.rfind(')').filter(|c| *c > open).ok_or_else(err)?;
                let head: Vec<&str> = term[..open].split_whitespace().collect();
                let [key, op] = head.as_slice() else {
                    return Err(err());
                };
                let values: Vec<String> = term[open + 1..close]
                    .split(',')
                    .map(|v| v.trim().to_string())
                    .filter(|v| !v.is_empty())
                    .collect();
                if values.iter().any(|v| !valid_label_value(v)) {
                    return Err(err());
                }
                match *op {
                    "in" => (*key, LabelOp::In(values)),
                    "notin" => (*key, LabelOp::NotIn(values)),
                    _ => return Err(err()),
                }
            } else if let Some((k, v)) = term.split_once("!=") {
                (k.trim(), LabelOp::NotEq(v.trim().to_string()))
            } else if let Some((k, v)) = term.split_once("==") {
                (k.trim(), LabelOp::Eq(v.trim().to_string()))
            } else if let Some((k, v)) = term.split_once('=') {
                (k.trim(), LabelOp::Eq(v.trim().to_string()))
            } else if let Some((k, v)) = term.split_once('>') {
                (k.trim(), LabelOp::Gt(v.trim().parse().map_err(|_| err())?))
            } else if let Some((k, v)) = term.split_once('<') {
                (k.trim(), LabelOp::Lt(v.trim().parse().map_err(|_| err())?))
            } else {
                (term, LabelOp::Exists)
            };
            if !valid_label_key(key) {
                return Err(err());
            }
            if let LabelOp::Eq(v) | LabelOp::NotEq(v) = &op
                && !valid_label_value(v)
            {
                return Err(err());
            }
            reqs.push((key.to_string(), op));
        }
        Ok(LabelSelector { reqs })
    }

    /// Whether the selector selects everything.
    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    /// Whether labels (the object's `metadata.labels`, possibly absent) satisfy every requirement.
    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        self.reqs.iter().all(|(key, op)| {
            let value = labels.and_then(|l| l.get(key)).and_then(Value::as_str);
            match op {
                LabelOp::Eq(v) => value == Some(v.as_str()),
                // Like the apiserver: absent labels satisfy != and notin.
                LabelOp::NotEq(v) => value != Some(v.as_str()),
                LabelOp::In(vs) => value.is_some_and(|x| vs.iter().any(|v| v == x)),
                LabelOp::NotIn(vs) => !value.is_some_and(|x| vs.iter().any(|v| v == x)),
                LabelOp::Exists => value.is_some(),
                LabelOp::DoesNotExist => value.is_none(),
                LabelOp::Gt(n) => value
                    .and_then(|x| x.parse::<i64>().ok())
                    .is_some_and(|x| x > *n),
                LabelOp::Lt(n) => value
                    .and_then(|x| x.parse::<i64>().ok())
                    .is_some_and(|x| x < *n),
            }
        })
    }

    /// Whether an object satisfies the selector.
    pub fn matches_object(&self, obj: &Value) -> bool {
        self.matches(obj["metadata"]["labels"].as_object())
    }
}

/// A parsed `fieldSelector`: `field=value`, `field==value`, `field!=value`, comma separated.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FieldSelector {
    reqs: Vec<(String, bool, String)>,
}

impl FieldSelector {
    /// Parses `s`, accepting `metadata.name`, `metadata.namespace` and the kind's extra `allowed` fields.
    pub fn parse(s: &str, allowed: &[String]) -> Result<Self, SelectorError> {
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(FieldSelector { reqs });
        }
        for term in s.split(',') {
            let term = term.trim();
            let (field, eq, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, true, v)
            } else {
                return Err(SelectorError::Field(s.to_string(), term.to_string()));
            };
            let field = field.trim();
            if field != "metadata.name"
                && field != "metadata.namespace"
                && !allowed.iter().any(|a| a == field)
            {
                return Err(SelectorError::UnsupportedField(field.to_string()));
            }
            reqs.push((field.to_string(), eq, value.trim().to_string()));
        }
        Ok(FieldSelector { reqs })
    }

    /// Whether the selector selects everything.
    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    /// Whether the object's fields satisfy every requirement. Absent fields compare as `""`.
    pub fn matches(&self, obj: &Value) -> bool {
        self.reqs.iter().all(|(field, eq, want)| {
            let mut v = obj;
            for part in field.split('.') {
                v = &v[part];
            }
            let have = match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            (have == *want) == *eq
        })
    }
}

/// Both selectors of a list or watch request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Selectors {
    /// `labelSelector`.
    pub labels: LabelSelector,
    /// `fieldSelector`.
    pub fields: FieldSelector,
}

impl Selectors {
    /// Whether `obj` is selected.
    pub fn matches(&self, obj: &Value) -> bool {
        self.labels.matches_object(obj) && self.fields.matches(obj)
    }

    /// Whether no filtering happens.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(labels: Value) -> Value {
        json!({"metadata": {"name": "a", "namespace": "ns", "labels": labels}, "spec": {"type": "LoadBalancer"}})
    }

    #[test]
    fn equality_and_existence() {
        let o = obj(json!({"app": "web", "tier": "front"}));
        let m = |s: &str| LabelSelector::parse(s).unwrap().matches_object(&o);
        assert!(m("app=web"));
        assert!(m("app==web,tier"));
        assert!(!m("app!=web"));
        assert!(m("app!=db"));
        assert!(m("missing!=x"));
        assert!(m("!missing"));
        assert!(!m("!app"));
        assert!(!m("missing"));
        assert!(m(""));
    }

    #[test]
    fn set_based() {
        let o = obj(json!({"app": "web", "n": "5"}));
        let m = |s: &str| LabelSelector::parse(s).unwrap().matches_object(&o);
        assert!(m("app in (web, db)"));
        assert!(!m("app notin (web,db)"));
        assert!(m("other notin (x)"));
        assert!(m("app in (web),n>3"));
        assert!(!m("n<3"));
    }

    #[test]
    fn rejects_garbage() {
        assert!(LabelSelector::parse("app in web").is_err());
        assert!(LabelSelector::parse("a b=c").is_err());
        assert!(LabelSelector::parse("a=b,").is_err());
    }

    #[test]
    fn field_selectors() {
        let o = obj(json!({}));
        let allowed = vec!["spec.type".to_string()];
        let m = |s: &str| FieldSelector::parse(s, &allowed).unwrap().matches(&o);
        assert!(m("metadata.name=a"));
        assert!(m("metadata.namespace==ns,metadata.name!=b"));
        assert!(!m("metadata.name=b"));
        assert!(m("spec.type=LoadBalancer"));
        assert_eq!(
            FieldSelector::parse("spec.other=x", &allowed),
            Err(SelectorError::UnsupportedField("spec.other".into()))
        );
    }
}

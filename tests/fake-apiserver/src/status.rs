//! Typed API errors and the `metav1.Status` documents they are sent as.
//!
//! Every failure the fake can produce is an [`ApiError`]. Its code, reason,
//! message and details follow what `k8s.io/apimachinery/pkg/api/errors`
//! produces, because `kube::Error::Api` is populated from exactly these
//! fields and callers branch on them (`is_not_found()`, `reason ==
//! "Conflict"`, `code == 410`, ...).

use std::fmt;

use serde_json::{Map, Value, json};
use thiserror::Error;

/// A resource as named in error messages: `services`, `leases.coordination.k8s.io`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QualifiedResource {
    /// API group, empty for the core group.
    pub group: String,
    /// Plural resource name.
    pub resource: String,
}

impl fmt::Display for QualifiedResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group.is_empty() {
            write!(f, "{}", self.resource)
        } else {
            write!(f, "{}.{}", self.resource, self.group)
        }
    }
}

/// One invalid field of a rejected object (`details.causes[]` of an `Invalid` Status).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldCause {
    /// `FieldValueInvalid`, `FieldValueRequired`, ...
    pub reason: String,
    /// The field path, e.g. `metadata.name`.
    pub field: String,
    /// Human readable text, e.g. `Invalid value: "X": must be lower case`.
    pub message: String,
}

/// One field an apply could not take because another manager owns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplyConflict {
    /// The manager currently owning the field.
    pub manager: String,
    /// `Some(apiVersion)` when the owner wrote it with an update rather than an apply;
    /// the apiserver then says `conflict with "m" using v1`.
    pub update_api_version: Option<String>,
    /// The field, formatted like `.spec.replicas`.
    pub field: String,
}

/// Everything that can go wrong in a request, with the HTTP code and Status reason
/// a real apiserver would use.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ApiError {
    /// 404 for a named object that does not exist.
    #[error("{resource} \"{name}\" not found")]
    NotFound {
        /// Resource of the missing object.
        resource: QualifiedResource,
        /// Its name.
        name: String,
    },
    /// 404 for a path that names no served resource.
    #[error("the server could not find the requested resource")]
    NoSuchResource,
    /// 409 on create when the name is taken.
    #[error("{resource} \"{name}\" already exists")]
    AlreadyExists {
        /// Resource of the existing object.
        resource: QualifiedResource,
        /// Its name.
        name: String,
    },
    /// 409 for a failed optimistic-concurrency precondition.
    #[error("Operation cannot be fulfilled on {resource} \"{name}\": {detail}")]
    Conflict {
        /// Resource of the object.
        resource: QualifiedResource,
        /// Its name.
        name: String,
        /// Why, e.g. the "object has been modified" sentence.
        detail: String,
    },
    /// 409 from server-side apply when fields are owned by other managers.
    #[error("{}", apply_conflict_message(.conflicts))]
    ApplyConflicts {
        /// The conflicting fields.
        conflicts: Vec<ApplyConflict>,
    },
    /// 400, malformed request.
    #[error("{0}")]
    BadRequest(String),
    /// 422, the object fails validation.
    #[error("{kind} \"{name}\" is invalid: {}", causes_message(.causes))]
    Invalid {
        /// Group of the kind.
        group: String,
        /// The object's kind (not the plural).
        kind: String,
        /// The object's name.
        name: String,
        /// The failing fields.
        causes: Vec<FieldCause>,
    },
    /// 422 for a JSON patch that cannot be applied (a failed `test`, a missing path).
    #[error("{0}")]
    UnprocessablePatch(String),
    /// 410, the resourceVersion or continue token points before the last compaction.
    #[error("{0}")]
    Expired(String),
    /// 504, a resourceVersion newer than anything the server has seen.
    #[error("Too large resource version: {requested}, current: {current}")]
    TooLargeResourceVersion {
        /// The version asked for.
        requested: u64,
        /// The server's current version.
        current: u64,
    },
    /// 405, e.g. POST to a named object.
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    /// 415, a patch content type the resource does not accept.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// An error forced by [`crate::FakeApiServer::fail_next`].
    #[error("{message}")]
    Injected {
        /// HTTP status code to answer with.
        code: u16,
        /// Message in the Status.
        message: String,
    },
}

fn causes_message(causes: &[FieldCause]) -> String {
    let parts: Vec<String> = causes
        .iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect();
    if parts.len() == 1 {
        parts[0].clone()
    } else {
        format!("[{}]", parts.join(", "))
    }
}

fn conflict_owner(c: &ApplyConflict) -> String {
    match &c.update_api_version {
        Some(v) => format!("\"{}\" using {}", c.manager, v),
        None => format!("\"{}\"", c.manager),
    }
}

/// Formats conflicts like structured-merge-diff's `Conflicts.Error()` as wrapped by the apiserver.
fn apply_conflict_message(conflicts: &[ApplyConflict]) -> String {
    if let [only] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            conflict_owner(only),
            only.field
        );
    }
    // Group by owner, keeping first-seen order.
    let mut groups: Vec<(String, Vec<&str>)> = Vec::new();
    for c in conflicts {
        let owner = conflict_owner(c);
        match groups.iter_mut().find(|(o, _)| *o == owner) {
            Some((_, fields)) => fields.push(&c.field),
            None => groups.push((owner, vec![&c.field])),
        }
    }
    let body: Vec<String> = groups
        .iter()
        .map(|(owner, fields)| {
            if let [f] = fields.as_slice() {
                format!("conflict with {owner}: {f}")
            } else {
                let list: Vec<String> = fields.iter().map(|f| format!("- {f}")).collect();
                format!("conflicts with {owner}:\n{}", list.join("\n"))
            }
        })
        .collect();
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        body.join("\n")
    )
}

/// The Status `reason` the apiserver uses for a bare HTTP code (as in `NewGenericServerResponse`).
pub fn reason_for_code(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        406 => "NotAcceptable",
        409 => "Conflict",
        410 => "Expired",
        413 => "RequestEntityTooLarge",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "Unknown",
    }
}

impl ApiError {
    /// Shorthand for the optimistic-concurrency conflict every stale write gets.
    pub fn modified(resource: QualifiedResource, name: &str) -> Self {
        ApiError::Conflict {
            resource,
            name: name.to_string(),
            detail: "the object has been modified; please apply your changes to the latest version and try again".into(),
        }
    }

    /// Shorthand for a single-field `Invalid` error.
    pub fn invalid(group: &str, kind: &str, name: &str, cause: FieldCause) -> Self {
        ApiError::Invalid {
            group: group.to_string(),
            kind: kind.to_string(),
            name: name.to_string(),
            causes: vec![cause],
        }
    }

    /// The HTTP status code.
    pub fn code(&self) -> u16 {
        match self {
            ApiError::NotFound { .. } | ApiError::NoSuchResource => 404,
            ApiError::AlreadyExists { .. }
            | ApiError::Conflict { .. }
            | ApiError::ApplyConflicts { .. } => 409,
            ApiError::BadRequest(_) => 400,
            ApiError::Invalid { .. } | ApiError::UnprocessablePatch(_) => 422,
            ApiError::Expired(_) => 410,
            ApiError::TooLargeResourceVersion { .. } => 504,
            ApiError::MethodNotAllowed => 405,
            ApiError::UnsupportedMediaType(_) => 415,
            ApiError::Injected { code, .. } => *code,
        }
    }

    /// The Status `reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::NotFound { .. } | ApiError::NoSuchResource => "NotFound",
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::Conflict { .. } | ApiError::ApplyConflicts { .. } => "Conflict",
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Invalid { .. } | ApiError::UnprocessablePatch(_) => "Invalid",
            ApiError::Expired(_) => "Expired",
            ApiError::TooLargeResourceVersion { .. } => "Timeout",
            ApiError::MethodNotAllowed => "MethodNotAllowed",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::Injected { code, .. } => reason_for_code(*code),
        }
    }

    fn details(&self) -> Option<Value> {
        let named = |resource: &QualifiedResource, name: &str| {
            let mut d = Map::new();
            d.insert("name".into(), json!(name));
            if !resource.group.is_empty() {
                d.insert("group".into(), json!(resource.group));
            }
            d.insert("kind".into(), json!(resource.resource));
            Some(Value::Object(d))
        };
        match self {
            ApiError::NotFound { resource, name }
            | ApiError::AlreadyExists { resource, name }
            | ApiError::Conflict { resource, name, .. } => named(resource, name),
            ApiError::ApplyConflicts { conflicts } => Some(json!({
                "causes": conflicts.iter().map(|c| json!({
                    "reason": "FieldManagerConflict",
                    "message": format!("conflict with {}", conflict_owner(c)),
                    "field": c.field,
                })).collect::<Vec<_>>()
            })),
            ApiError::Invalid {
                group,
                kind,
                name,
                causes,
            } => {
                let mut d = Map::new();
                d.insert("name".into(), json!(name));
                if !group.is_empty() {
                    d.insert("group".into(), json!(group));
                }
                d.insert("kind".into(), json!(kind));
                d.insert(
                    "causes".into(),
                    causes
                        .iter()
                        .map(
                            |c| json!({"reason": c.reason, "message": c.message, "field": c.field}),
                        )
                        .collect(),
                );
                Some(Value::Object(d))
            }
            ApiError::TooLargeResourceVersion { .. } => Some(json!({
                "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                "retryAfterSeconds": 1,
            })),
            ApiError::NoSuchResource => Some(json!({})),
            _ => None,
        }
    }

    /// The `metav1.Status` body for this error.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code(),
        });
        if let Some(details) = self.details() {
            status["details"] = details;
        }
        status
    }
}

/// The Status a delete answers with for kinds that do not return the deleted object.
pub fn delete_success(resource: &QualifiedResource, name: &str, uid: &str) -> Value {
    let mut details = json!({"name": name, "kind": resource.resource, "uid": uid});
    if !resource.group.is_empty() {
        details["group"] = json!(resource.group);
    }
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leases() -> QualifiedResource {
        QualifiedResource {
            group: "coordination.k8s.io".into(),
            resource: "leases".into(),
        }
    }

    #[test]
    fn conflict_message_matches_apiserver_wording() {
        let e = ApiError::modified(leases(), "x");
        assert_eq!(
            e.to_string(),
            "Operation cannot be fulfilled on leases.coordination.k8s.io \"x\": the object has been modified; please apply your changes to the latest version and try again"
        );
        let s = e.to_status();
        assert_eq!(s["code"], 409);
        assert_eq!(s["reason"], "Conflict");
        assert_eq!(s["details"]["group"], "coordination.k8s.io");
        assert_eq!(s["details"]["kind"], "leases");
    }

    #[test]
    fn not_found_for_core_resources_has_no_group() {
        let e = ApiError::NotFound {
            resource: QualifiedResource {
                group: String::new(),
                resource: "services".into(),
            },
            name: "web".into(),
        };
        let s = e.to_status();
        assert_eq!(s["message"], "services \"web\" not found");
        assert!(s["details"].get("group").is_none());
    }

    #[test]
    fn apply_conflicts_are_grouped_by_manager() {
        let e = ApiError::ApplyConflicts {
            conflicts: vec![
                ApplyConflict {
                    manager: "a".into(),
                    update_api_version: None,
                    field: ".spec.x".into(),
                },
                ApplyConflict {
                    manager: "a".into(),
                    update_api_version: None,
                    field: ".spec.y".into(),
                },
                ApplyConflict {
                    manager: "b".into(),
                    update_api_version: Some("v1".into()),
                    field: ".spec.z".into(),
                },
            ],
        };
        assert_eq!(
            e.to_string(),
            "Apply failed with 3 conflicts: conflicts with \"a\":\n- .spec.x\n- .spec.y\nconflict with \"b\" using v1: .spec.z"
        );
    }
}

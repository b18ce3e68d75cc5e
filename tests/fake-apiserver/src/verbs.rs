//! The write and read verbs on single objects, independent of HTTP.
//!
//! Every write goes through [`finish_create`] or [`finish_update`], which own
//! the rules shared by all verbs: server-owned metadata, the status
//! subresource split, generation, field ownership, optimistic concurrency,
//! and no-op detection (a write that changes nothing keeps the
//! resourceVersion and emits no event).

use std::sync::Arc;

use serde_json::{Value, json};

use crate::apply::{ApplyRequest, apply};
use crate::clock::now_rfc3339;
use crate::hooks;
use crate::managed::{ManagedFields, Operation, Subresource, tracked_view};
use crate::objects::{
    View, generation_view, list_type, meta_mut, meta_str, render, restore_server_fields,
    validate_name,
};
use crate::patch::{
    PatchError, PatchKind, json_patch, merge_patch, parse_apply_config, parse_object_patch,
    strategic_merge_patch,
};
use crate::resources::{GroupResource, Served, split_api_version};
use crate::selectors::Selectors;
use crate::state::State;
use crate::status::{ApiError, FieldCause, delete_success};

/// Query parameters of a write.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    /// `fieldManager`, if given.
    pub field_manager: Option<String>,
    /// The manager recorded for non-apply writes without `fieldManager`
    /// (the apiserver derives it from the User-Agent).
    pub default_manager: String,
    /// `force=true` (apply only).
    pub force: bool,
    /// `dryRun=All`: validate and answer, store nothing.
    pub dry_run: bool,
}

impl WriteOptions {
    fn update_manager(&self) -> String {
        self.field_manager
            .clone()
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| self.default_manager.clone())
    }
}

/// Result of a write.
#[derive(Clone, Debug)]
pub struct Written {
    /// The stored object.
    pub object: Value,
    /// Whether it was created (201) rather than updated (200).
    pub created: bool,
}

/// How the managedFields of a write are computed.
enum Ownership {
    /// A non-apply write by this manager: it takes the fields it changed.
    Update(String),
    /// Already computed by server-side apply for this manager.
    Applied {
        managed: ManagedFields,
        manager: String,
    },
}

impl Ownership {
    fn acting(&self) -> (&str, Operation) {
        match self {
            Ownership::Update(m) => (m, Operation::Update),
            Ownership::Applied { manager, .. } => (manager, Operation::Apply),
        }
    }
}

fn not_found(served: &Served, name: &str) -> ApiError {
    ApiError::NotFound {
        resource: served.qualified(),
        name: name.to_string(),
    }
}

/// `metadata.finalizers` as strings.
fn finalizers(obj: &Value) -> Vec<&str> {
    obj["metadata"]["finalizers"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn terminating(obj: &Value) -> bool {
    meta_str(obj, "deletionTimestamp").is_some()
}

fn remove_key(obj: &mut Value, key: &str) {
    if let Some(m) = obj.as_object_mut() {
        m.remove(key);
    }
}

fn set_managed(obj: &mut Value, managed: &ManagedFields) {
    let meta = meta_mut(obj);
    if managed.entries.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), managed.render());
    }
}

/// Rejects a body whose kind or apiVersion is not the one addressed.
fn check_body_type(served: &Served, body: &Value) -> Result<(), ApiError> {
    if !body.is_object() {
        return Err(ApiError::BadRequest(
            "the request body must be a JSON object".into(),
        ));
    }
    if let Some(kind) = body["kind"].as_str().filter(|k| !k.is_empty())
        && kind != served.kind.kind
    {
        return Err(ApiError::BadRequest(format!(
            "{kind} in version \"{}\" cannot be handled as a {}: the kind of the object does not match the resource",
            served.version, served.kind.kind
        )));
    }
    if let Some(av) = body["apiVersion"].as_str().filter(|a| !a.is_empty()) {
        let (group, version) = split_api_version(av);
        if group != served.kind.group || served.kind.version(version).is_none() {
            return Err(ApiError::BadRequest(format!(
                "the API version in the data ({av}) does not match the expected API version ({})",
                served.api_version()
            )));
        }
    }
    Ok(())
}

fn check_name_matches(body: &Value, name: &str) -> Result<(), ApiError> {
    match meta_str(body, "name") {
        Some(n) if n != name => Err(ApiError::BadRequest(format!(
            "the name of the object ({n}) does not match the name on the URL ({name})"
        ))),
        _ => Ok(()),
    }
}

fn check_namespace_matches(served: &Served, body: &Value, namespace: &str) -> Result<(), ApiError> {
    match meta_str(body, "namespace") {
        Some(ns) if served.kind.namespaced && ns != namespace => Err(ApiError::BadRequest(
            "the namespace of the provided object does not match the namespace sent on the request"
                .into(),
        )),
        _ => Ok(()),
    }
}

fn decode_error(e: PatchError) -> ApiError {
    match e {
        PatchError::Decode(_) => ApiError::BadRequest(e.to_string()),
        PatchError::Apply(m) => ApiError::UnprocessablePatch(m),
    }
}

/// GET one object (`namespace` is `""` for cluster-scoped kinds).
pub fn get(
    state: &State,
    served: &Served,
    namespace: &str,
    name: &str,
) -> Result<Arc<Value>, ApiError> {
    state
        .store
        .get(&served.group_resource(), namespace, name)
        .map(|o| Arc::clone(&o.value))
        .ok_or_else(|| not_found(served, name))
}

/// POST to a collection.
pub fn create(
    state: &mut State,
    served: &Served,
    namespace: &str,
    body: Value,
    opts: &WriteOptions,
) -> Result<Value, ApiError> {
    check_body_type(served, &body)?;
    let manager = opts.update_manager();
    finish_create(
        state,
        served,
        namespace,
        body,
        Ownership::Update(manager),
        opts,
    )
}

fn finish_create(
    state: &mut State,
    served: &Served,
    namespace: &str,
    mut obj: Value,
    ownership: Ownership,
    opts: &WriteOptions,
) -> Result<Value, ApiError> {
    let kind = Arc::clone(&served.kind);
    let gr = served.group_resource();
    if kind.namespaced {
        check_namespace_matches(served, &obj, namespace)?;
        if state
            .store
            .get(&GroupResource::namespaces(), "", namespace)
            .is_none()
        {
            return Err(ApiError::NotFound {
                resource: GroupResource::namespaces().qualified(),
                name: namespace.to_string(),
            });
        }
    }
    let invalid_name = |name: &str, reason: &str, message: String| {
        ApiError::invalid(
            &kind.group,
            &kind.kind,
            name,
            FieldCause {
                reason: reason.into(),
                field: "metadata.name".into(),
                message,
            },
        )
    };
    let name = match (meta_str(&obj, "name"), meta_str(&obj, "generateName")) {
        (Some(n), _) => n.to_string(),
        (None, Some(prefix)) => {
            // The apiserver retries a colliding generated name a few times
            // (RetryGenerateName) before answering AlreadyExists.
            let ns = if kind.namespaced { namespace } else { "" };
            let mut candidate = format!("{prefix}{}", state.ids.name_suffix());
            for _ in 0..7 {
                if state.store.get(&gr, ns, &candidate).is_none() {
                    break;
                }
                candidate = format!("{prefix}{}", state.ids.name_suffix());
            }
            candidate
        }
        (None, None) => {
            return Err(invalid_name(
                "",
                "FieldValueRequired",
                "Required value: name or generateName is required".into(),
            ));
        }
    };
    validate_name(kind.names, &name).map_err(|m| {
        invalid_name(
            &name,
            "FieldValueInvalid",
            format!("Invalid value: \"{name}\": {m}"),
        )
    })?;
    let ns = if kind.namespaced { namespace } else { "" };
    if state.store.get(&gr, ns, &name).is_some() {
        return Err(ApiError::AlreadyExists {
            resource: served.qualified(),
            name,
        });
    }

    let obj_map = obj.as_object_mut().expect("checked to be an object");
    if served.has_status {
        // The status subresource owns status; creates cannot set it.
        obj_map.remove("status");
    }
    obj_map.insert("apiVersion".into(), json!(kind.storage_api_version()));
    obj_map.insert("kind".into(), json!(kind.kind));
    let now = now_rfc3339();
    let uid = state.ids.uid();
    let meta = meta_mut(&mut obj);
    meta.insert("name".into(), json!(name));
    if kind.namespaced {
        meta.insert("namespace".into(), json!(ns));
    } else {
        meta.remove("namespace");
    }
    meta.insert("uid".into(), json!(uid));
    meta.insert("creationTimestamp".into(), json!(now));
    if kind.generation {
        meta.insert("generation".into(), json!(1));
    } else {
        meta.remove("generation");
    }
    for k in [
        "resourceVersion",
        "managedFields",
        "selfLink",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        meta.remove(k);
    }
    hooks::prepare_create(&gr, &mut obj);
    hooks::validate(&gr, &obj)?;

    let managed = match ownership {
        Ownership::Update(manager) => {
            let mut mf = ManagedFields::default();
            mf.record_update(
                &manager,
                Subresource::Main,
                &served.api_version(),
                &json!({}),
                &tracked_view(&obj, Subresource::Main, served.has_status),
                &now,
            );
            mf
        }
        Ownership::Applied { managed, .. } => managed,
    };
    set_managed(&mut obj, &managed);
    if opts.dry_run {
        return Ok(obj);
    }
    let stored = state.store.insert(&gr, ns, &name, obj, managed);
    hooks::after_write(state, &gr, &stored);
    Ok((*stored).clone())
}

/// PUT to an object or its `/status`. Creates the object if it is missing
/// and the kind allows create-on-update (Leases, Events); otherwise 404.
pub fn replace(
    state: &mut State,
    served: &Served,
    namespace: &str,
    name: &str,
    sub: Subresource,
    body: Value,
    opts: &WriteOptions,
) -> Result<Written, ApiError> {
    check_body_type(served, &body)?;
    check_name_matches(&body, name)?;
    let manager = opts.update_manager();
    let missing = state
        .store
        .get(&served.group_resource(), namespace, name)
        .is_none();
    if missing && served.kind.create_on_update && sub == Subresource::Main {
        if meta_str(&body, "resourceVersion").is_some() {
            return Err(ApiError::modified(served.qualified(), name));
        }
        let mut body = body;
        meta_mut(&mut body).insert("name".into(), json!(name));
        let object = finish_create(
            state,
            served,
            namespace,
            body,
            Ownership::Update(manager),
            opts,
        )?;
        return Ok(Written {
            object,
            created: true,
        });
    }
    let object = finish_update(
        state,
        served,
        namespace,
        name,
        sub,
        body,
        Ownership::Update(manager),
        opts,
    )?;
    Ok(Written {
        object,
        created: false,
    })
}

#[allow(clippy::too_many_arguments)] // the verb's whole context; grouping it would only rename it
fn finish_update(
    state: &mut State,
    served: &Served,
    namespace: &str,
    name: &str,
    sub: Subresource,
    candidate: Value,
    ownership: Ownership,
    opts: &WriteOptions,
) -> Result<Value, ApiError> {
    let gr = served.group_resource();
    let old = state
        .store
        .get(&gr, namespace, name)
        .cloned()
        .ok_or_else(|| not_found(served, name))?;
    // Optimistic concurrency: a resourceVersion in the body is a precondition.
    if let Some(rv) = meta_str(&candidate, "resourceVersion")
        && Some(rv) != meta_str(&old.value, "resourceVersion")
    {
        return Err(ApiError::modified(served.qualified(), name));
    }
    check_namespace_matches(served, &candidate, namespace)?;

    let mut new = match sub {
        Subresource::Status => {
            let mut n = (*old.value).clone();
            match candidate.get("status") {
                Some(s) => n["status"] = s.clone(),
                None => {
                    remove_key(&mut n, "status");
                }
            }
            n
        }
        Subresource::Main => {
            let mut n = candidate;
            if !n.is_object() {
                return Err(ApiError::BadRequest(
                    "the object must be a JSON object".into(),
                ));
            }
            if served.has_status {
                match old.value.get("status") {
                    Some(s) => n["status"] = s.clone(),
                    None => {
                        remove_key(&mut n, "status");
                    }
                }
            }
            n
        }
    };
    restore_server_fields(&mut new, &old.value);
    hooks::prepare_update(&gr, &mut new);
    hooks::validate(&gr, &new)?;
    if served.kind.generation && generation_view(&new) != generation_view(&old.value) {
        let generation = old.value["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
        meta_mut(&mut new).insert("generation".into(), json!(generation));
    }

    let now = now_rfc3339();
    let api_version = served.api_version();
    let (manager, op) = ownership.acting();
    let manager = manager.to_string();
    let mut managed = match ownership {
        Ownership::Update(manager) => {
            let mut mf = old.managed.clone();
            mf.record_update(
                &manager,
                sub,
                &api_version,
                &tracked_view(&old.value, sub, served.has_status),
                &tracked_view(&new, sub, served.has_status),
                &now,
            );
            mf
        }
        Ownership::Applied { managed, .. } => managed,
    };
    set_managed(&mut new, &managed);
    if new == *old.value {
        // No-op: same bytes, same version, no event.
        return Ok((*old.value).clone());
    }
    managed.stamp(&manager, op, sub, &api_version, &now);
    set_managed(&mut new, &managed);
    if terminating(&old.value) {
        let before = finalizers(&old.value);
        let added: Vec<&str> = finalizers(&new)
            .into_iter()
            .filter(|f| !before.contains(f))
            .collect();
        if !added.is_empty() {
            return Err(ApiError::invalid(
                &served.kind.group,
                &served.kind.kind,
                name,
                FieldCause {
                    reason: "FieldValueForbidden".into(),
                    field: "metadata.finalizers".into(),
                    message: format!(
                        "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"
                    ),
                },
            ));
        }
        if finalizers(&new).is_empty() {
            // The last finalizer is gone: the pending deletion completes.
            if opts.dry_run {
                return Ok(new);
            }
            let last = state.store.remove_as(&gr, namespace, name, Some(new));
            return Ok((*last.expect("present under the same lock")).clone());
        }
    }
    if opts.dry_run {
        return Ok(new);
    }
    let stored = state.store.update(&gr, namespace, name, new, managed);
    hooks::after_write(state, &gr, &stored);
    Ok((*stored).clone())
}

/// PATCH an object or its `/status`, in any of the four formats.
#[allow(clippy::too_many_arguments)] // the verb's whole context; grouping it would only rename it
pub fn patch(
    state: &mut State,
    served: &Served,
    namespace: &str,
    name: &str,
    sub: Subresource,
    kind: PatchKind,
    body: &[u8],
    opts: &WriteOptions,
) -> Result<Written, ApiError> {
    if kind == PatchKind::Apply {
        return server_side_apply(state, served, namespace, name, sub, body, opts);
    }
    if opts.force {
        return Err(ApiError::BadRequest(
            "force: Forbidden: may not be specified for non-apply patch".into(),
        ));
    }
    if kind == PatchKind::Strategic && served.kind.custom {
        return Err(ApiError::UnsupportedMediaType(
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml".into(),
        ));
    }
    let old = get(state, served, namespace, name)?;
    let mut doc = render(&old, &served.api_version(), View::Full);
    match kind {
        PatchKind::Merge => merge_patch(&mut doc, &parse_object_patch(body).map_err(decode_error)?),
        PatchKind::Strategic => {
            strategic_merge_patch(&mut doc, &parse_object_patch(body).map_err(decode_error)?)
        }
        PatchKind::Json => json_patch(&mut doc, body).map_err(decode_error)?,
        PatchKind::Apply => unreachable!("handled above"),
    }
    let manager = opts.update_manager();
    let object = finish_update(
        state,
        served,
        namespace,
        name,
        sub,
        doc,
        Ownership::Update(manager),
        opts,
    )?;
    Ok(Written {
        object,
        created: false,
    })
}

fn server_side_apply(
    state: &mut State,
    served: &Served,
    namespace: &str,
    name: &str,
    sub: Subresource,
    body: &[u8],
    opts: &WriteOptions,
) -> Result<Written, ApiError> {
    let manager = opts
        .field_manager
        .clone()
        .filter(|m| !m.is_empty())
        .ok_or_else(|| {
            ApiError::BadRequest(
                "PATCH, application/apply-patch+yaml requires the fieldManager query parameter"
                    .into(),
            )
        })?;
    let config = parse_apply_config(body).map_err(decode_error)?;
    for field in ["apiVersion", "kind"] {
        if config[field].as_str().is_none_or(str::is_empty) {
            return Err(ApiError::BadRequest(format!(
                "Object '{}' is missing in '{config}'",
                if field == "kind" { "Kind" } else { field }
            )));
        }
    }
    check_body_type(served, &config)?;
    check_name_matches(&config, name)?;
    check_namespace_matches(served, &config, namespace)?;

    let gr = served.group_resource();
    let view = tracked_view(&config, sub, served.has_status);
    let now = now_rfc3339();
    let api_version = served.api_version();
    let req = ApplyRequest {
        manager: &manager,
        subresource: sub,
        api_version: &api_version,
        force: opts.force,
        now: &now,
    };
    let conflicts = |conflicts| ApiError::ApplyConflicts { conflicts };
    let precondition = meta_str(&config, "resourceVersion");
    match state.store.get(&gr, namespace, name).cloned() {
        Some(old) => {
            if precondition.is_some_and(|rv| Some(rv) != meta_str(&old.value, "resourceVersion")) {
                return Err(ApiError::modified(served.qualified(), name));
            }
            let (object, managed) =
                apply(&old.value, &old.managed, &view, &req).map_err(conflicts)?;
            let ownership = Ownership::Applied {
                managed,
                manager: manager.clone(),
            };
            let object =
                finish_update(state, served, namespace, name, sub, object, ownership, opts)?;
            Ok(Written {
                object,
                created: false,
            })
        }
        None => {
            if sub == Subresource::Status {
                return Err(not_found(served, name));
            }
            if precondition.is_some() {
                return Err(ApiError::modified(served.qualified(), name));
            }
            let base = json!({"apiVersion": api_version, "kind": served.kind.kind, "metadata": {"name": name}});
            let (object, managed) =
                apply(&base, &ManagedFields::default(), &view, &req).map_err(conflicts)?;
            let ownership = Ownership::Applied {
                managed,
                manager: manager.clone(),
            };
            let object = finish_create(state, served, namespace, object, ownership, opts)?;
            Ok(Written {
                object,
                created: true,
            })
        }
    }
}

/// The parts of `DeleteOptions` (body) and query that matter.
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    /// `dryRun=All`.
    pub dry_run: bool,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
}

impl DeleteOptions {
    /// Reads a `DeleteOptions` body (possibly empty); `dry_run` from the query is OR-ed in.
    pub fn parse(body: &[u8], dry_run: bool) -> Result<Self, ApiError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(DeleteOptions {
                dry_run,
                ..Default::default()
            });
        }
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("error decoding DeleteOptions: {e}")))?;
        let s = |v: &Value| v.as_str().map(str::to_string);
        Ok(DeleteOptions {
            dry_run: dry_run || v["dryRun"].as_array().is_some_and(|a| !a.is_empty()),
            uid: s(&v["preconditions"]["uid"]),
            resource_version: s(&v["preconditions"]["resourceVersion"]),
        })
    }
}

/// What a delete did.
enum Deletion {
    /// The object is gone; its final state.
    Gone(Value),
    /// The object has finalizers: it is marked for deletion (or already was).
    Pending(Value),
}

/// DELETE an object: immediate, unless it has finalizers, in which case it
/// is only marked with a deletionTimestamp and disappears when an update
/// removes the last finalizer. There is no grace period.
pub fn delete(
    state: &mut State,
    served: &Served,
    namespace: &str,
    name: &str,
    opts: &DeleteOptions,
) -> Result<Value, ApiError> {
    let api_version = served.api_version();
    Ok(match delete_object(state, served, namespace, name, opts)? {
        // A pending deletion is answered with the object, whatever the kind.
        Deletion::Pending(obj) => render(&obj, &api_version, View::Full),
        Deletion::Gone(obj) if served.kind.delete_returns_object => {
            render(&obj, &api_version, View::Full)
        }
        Deletion::Gone(obj) => delete_success(
            &served.qualified(),
            name,
            meta_str(&obj, "uid").unwrap_or_default(),
        ),
    })
}

fn delete_object(
    state: &mut State,
    served: &Served,
    namespace: &str,
    name: &str,
    opts: &DeleteOptions,
) -> Result<Deletion, ApiError> {
    let gr = served.group_resource();
    let old = get(state, served, namespace, name)?;
    let precondition_failed = |what: &str, want: &str, have: &str| ApiError::Conflict {
        resource: served.qualified(),
        name: name.to_string(),
        detail: format!(
            "Precondition failed: {what} in precondition: {want}, {what} in object meta: {have}"
        ),
    };
    let uid = meta_str(&old, "uid").unwrap_or_default();
    if let Some(want) = &opts.uid
        && want != uid
    {
        return Err(precondition_failed("UID", want, uid));
    }
    if let Some(want) = &opts.resource_version {
        let have = meta_str(&old, "resourceVersion").unwrap_or_default();
        if want != have {
            return Err(precondition_failed("ResourceVersion", want, have));
        }
    }
    if !finalizers(&old).is_empty() {
        if terminating(&old) || opts.dry_run {
            return Ok(Deletion::Pending((*old).clone()));
        }
        let stored = state
            .store
            .get(&gr, namespace, name)
            .cloned()
            .expect("just read");
        let mut marked = (*stored.value).clone();
        let meta = meta_mut(&mut marked);
        meta.insert("deletionTimestamp".into(), json!(now_rfc3339()));
        meta.insert("deletionGracePeriodSeconds".into(), json!(0));
        if let Some(generation) = meta.get("generation").and_then(Value::as_i64) {
            meta.insert("generation".into(), json!(generation + 1));
        }
        let marked = state
            .store
            .update(&gr, namespace, name, marked, stored.managed);
        return Ok(Deletion::Pending((*marked).clone()));
    }
    if opts.dry_run {
        return Ok(Deletion::Gone((*old).clone()));
    }
    hooks::before_delete(state, &gr, namespace, name);
    let last = state
        .store
        .remove(&gr, namespace, name)
        .expect("present under the same lock");
    Ok(Deletion::Gone((*last).clone()))
}

/// DELETE on a collection: deletes every selected object, answers with the list of them.
pub fn delete_collection(
    state: &mut State,
    served: &Served,
    namespace: Option<&str>,
    selectors: &Selectors,
    opts: &DeleteOptions,
) -> Result<Value, ApiError> {
    let gr = served.group_resource();
    let targets: Vec<(String, String)> = state
        .store
        .objects(&gr, namespace)
        .filter(|(_, o)| selectors.matches(&o.value))
        .map(|(k, _)| k.clone())
        .collect();
    let api_version = served.api_version();
    let mut items = Vec::new();
    for (ns, name) in targets {
        let (Deletion::Gone(obj) | Deletion::Pending(obj)) =
            delete_object(state, served, &ns, &name, opts)?;
        items.push(render(&obj, &api_version, View::Full));
    }
    let (kind, api_version) = list_type(&served.kind, &api_version, View::Full);
    Ok(json!({
        "kind": kind,
        "apiVersion": api_version,
        "metadata": {"resourceVersion": state.store.current_rv().to_string()},
        "items": items,
    }))
}

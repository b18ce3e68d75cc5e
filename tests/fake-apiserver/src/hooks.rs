//! Kind-specific behaviour of the two built-ins that have any: Namespaces
//! (defaults, cascading delete) and CustomResourceDefinitions (validation,
//! registering the served kind, the Established condition, cleanup).

use serde_json::{Value, json};

use crate::objects::{meta_mut, meta_str};
use crate::resources::{GroupResource, kind_from_crd};
use crate::state::State;
use crate::status::{ApiError, FieldCause};

/// Server defaults applied to a new object, after its status was dropped.
pub fn prepare_create(gr: &GroupResource, obj: &mut Value) {
    if *gr == GroupResource::namespaces() {
        prepare_update(gr, obj);
        if obj["spec"]["finalizers"].is_null() {
            obj["spec"]["finalizers"] = json!(["kubernetes"]);
        }
        obj["status"] = json!({"phase": "Active"});
    }
}

/// Server-enforced fields on every write.
pub fn prepare_update(gr: &GroupResource, obj: &mut Value) {
    if *gr == GroupResource::namespaces() {
        let name = meta_str(obj, "name").unwrap_or_default().to_string();
        let meta = meta_mut(obj);
        if !meta.get("labels").is_some_and(Value::is_object) {
            meta.insert("labels".into(), json!({}));
        }
        meta["labels"]["kubernetes.io/metadata.name"] = json!(name);
    }
}

/// Kind-specific validation (422 Invalid).
pub fn validate(gr: &GroupResource, obj: &Value) -> Result<(), ApiError> {
    if *gr == GroupResource::crds() {
        kind_from_crd(obj).map_err(|(field, message)| {
            ApiError::invalid(
                "apiextensions.k8s.io",
                "CustomResourceDefinition",
                meta_str(obj, "name").unwrap_or_default(),
                FieldCause {
                    reason: if message.starts_with("Required") {
                        "FieldValueRequired".into()
                    } else {
                        "FieldValueInvalid".into()
                    },
                    field: field.clone(),
                    message,
                },
            )
        })?;
    }
    Ok(())
}

fn established(crd: &Value) -> bool {
    crd["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Established" && c["status"] == "True")
    })
}

/// Runs after a create or update was committed.
pub fn after_write(state: &mut State, gr: &GroupResource, obj: &Value) {
    if *gr != GroupResource::crds() {
        return;
    }
    let Ok(kind) = kind_from_crd(obj) else { return };
    let storage_version = obj["spec"]["versions"]
        .as_array()
        .and_then(|vs| vs.iter().find(|v| v["storage"] == true))
        .and_then(|v| v["name"].as_str())
        .unwrap_or(&kind.versions[0].name)
        .to_string();
    state.registry.insert(kind);
    if established(obj) {
        return;
    }
    // The apiextensions controllers accept the names and mark the CRD
    // Established right after creation, as a separate status write that
    // clients waiting for the condition observe.
    let name = meta_str(obj, "name").unwrap_or_default().to_string();
    let Some(stored) = state.store.get(gr, "", &name).cloned() else {
        return;
    };
    let mut updated = (*stored.value).clone();
    let now = crate::clock::now_rfc3339();
    let condition = |t: &str, reason: &str, message: &str| json!({"type": t, "status": "True", "lastTransitionTime": now, "reason": reason, "message": message});
    updated["status"] = json!({
        "acceptedNames": obj["spec"]["names"].clone(),
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "storedVersions": [storage_version],
    });
    state.store.update(gr, "", &name, updated, stored.managed);
}

/// Runs before an object is deleted: namespaces take their contents with
/// them, CRDs their custom resources (and stop being served).
pub fn before_delete(state: &mut State, gr: &GroupResource, namespace: &str, name: &str) {
    if *gr == GroupResource::namespaces() {
        let namespaced: Vec<GroupResource> = state
            .registry
            .kinds()
            .filter(|k| k.namespaced)
            .map(|k| k.group_resource())
            .collect();
        for kind in namespaced {
            let names: Vec<String> = state
                .store
                .objects(&kind, Some(name))
                .map(|((_, n), _)| n.clone())
                .collect();
            for n in names {
                state.store.remove(&kind, name, &n);
            }
        }
    } else if *gr == GroupResource::crds() {
        let Some(obj) = state.store.get(gr, namespace, name) else {
            return;
        };
        if let Ok(kind) = kind_from_crd(&obj.value) {
            let served = kind.group_resource();
            state.store.remove_kind(&served);
            state.registry.remove(&served);
        }
    }
}

//! Server-side apply on JSON objects, with field ownership and conflicts.
//!
//! Simplified structured-merge-diff: maps merge key by key, every list is
//! atomic, ownership is per leaf (see [`crate::managed`]). This is faithful
//! for the cases controllers rely on: one manager re-applying its intent
//! (fields it stops applying are removed), several managers owning disjoint
//! fields, conflicts on fields another manager set to a different value, and
//! `force` taking them over.

use serde_json::Value;

use crate::managed::{
    FieldPath, FieldSet, ManagedFields, Operation, Subresource, format_path, get_path, overlaps,
    remove_path,
};
use crate::patch::apply_merge;
use crate::status::ApplyConflict;

/// Who applies, and how.
#[derive(Clone, Copy, Debug)]
pub struct ApplyRequest<'a> {
    /// `fieldManager`.
    pub manager: &'a str,
    /// Endpoint written through.
    pub subresource: Subresource,
    /// apiVersion of the request.
    pub api_version: &'a str,
    /// `force=true`: take conflicting fields instead of failing.
    pub force: bool,
    /// Timestamp for new managedFields entries.
    pub now: &'a str,
}

/// Applies `config` (already reduced with [`crate::managed::tracked_view`])
/// to `current`, returning the new object and ownership, or the conflicts.
pub fn apply(
    current: &Value,
    managed: &ManagedFields,
    config: &Value,
    req: &ApplyRequest<'_>,
) -> Result<(Value, ManagedFields), Vec<ApplyConflict>> {
    let applied = FieldSet::leaves(config);
    let me = |e: &crate::managed::ManagerEntry| {
        e.manager == req.manager
            && e.operation == Operation::Apply
            && e.subresource == req.subresource
    };

    // A field conflicts when someone else owns it (or a field above or below
    // it) and the applied value differs from the live one. Equal values are
    // shared ownership, as in the real apiserver.
    let mut conflicts: Vec<(usize, ApplyConflict, FieldPath)> = Vec::new();
    for p in applied.iter() {
        for (i, e) in managed.entries.iter().enumerate().filter(|(_, e)| !me(e)) {
            for q in e.fields.overlapping(p) {
                let (shorter, longer) = if q.len() < p.len() { (q, p) } else { (p, q) };
                let live = get_path(current, shorter);
                let wanted = get_path(config, shorter);
                // Maps merge: owning a map node does not own its children.
                let both_maps =
                    live.is_some_and(Value::is_object) && wanted.is_some_and(Value::is_object);
                if both_maps || live == wanted {
                    continue;
                }
                let conflict = ApplyConflict {
                    manager: e.manager.clone(),
                    update_api_version: (e.operation == Operation::Update)
                        .then(|| e.api_version.clone()),
                    field: format_path(longer),
                };
                if !conflicts.iter().any(|(_, c, _)| *c == conflict) {
                    conflicts.push((i, conflict, q.clone()));
                }
            }
        }
    }
    let mut managed = managed.clone();
    if !conflicts.is_empty() {
        if !req.force {
            return Err(conflicts.into_iter().map(|(_, c, _)| c).collect());
        }
        // Forced: the other managers lose exactly the fields that conflicted.
        for (i, _, q) in &conflicts {
            managed.entries[*i].fields.remove_overlapping(q);
        }
    }

    // Fields this manager applied last time but not now are removed, unless
    // another manager also owns that value.
    let mut object = current.clone();
    let previous = managed.fields_of(req.manager, Operation::Apply, req.subresource);
    for p in previous.iter() {
        if applied.contains(p) {
            continue;
        }
        let shared = managed
            .entries
            .iter()
            .filter(|e| !me(e))
            .any(|e| e.fields.iter().any(|q| same_value(q, p, current)));
        if !shared {
            remove_path(&mut object, p);
        }
    }
    apply_merge(&mut object, config);

    let entry = managed.entry_mut(
        req.manager,
        Operation::Apply,
        req.subresource,
        req.api_version,
        req.now,
    );
    entry.fields = applied;
    managed.prune();
    Ok((object, managed))
}

/// Whether owning `a` and owning `b` means owning the same value: equal
/// paths do; nested paths only when the outer one is not a map in `obj`
/// (an atomic value contains the inner path's value).
fn same_value(a: &[String], b: &[String], obj: &Value) -> bool {
    if a == b {
        return true;
    }
    if !overlaps(a, b) {
        return false;
    }
    let shorter = if a.len() < b.len() { a } else { b };
    !get_path(obj, shorter).is_some_and(Value::is_object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req<'a>(manager: &'a str, force: bool) -> ApplyRequest<'a> {
        ApplyRequest {
            manager,
            subresource: Subresource::Main,
            api_version: "v1",
            force,
            now: "t",
        }
    }

    #[test]
    fn disjoint_managers_coexist_and_dropped_fields_are_removed() {
        let base = json!({"metadata": {"name": "x"}});
        let (o1, m1) = apply(
            &base,
            &Default::default(),
            &json!({"spec": {"a": 1, "b": 2}}),
            &req("one", false),
        )
        .unwrap();
        let (o2, m2) = apply(&o1, &m1, &json!({"spec": {"c": 3}}), &req("two", false)).unwrap();
        assert_eq!(o2["spec"], json!({"a": 1, "b": 2, "c": 3}));
        let (o3, _) = apply(&o2, &m2, &json!({"spec": {"a": 1}}), &req("one", false)).unwrap();
        assert_eq!(o3["spec"], json!({"a": 1, "c": 3}));
    }

    #[test]
    fn conflicts_unless_same_value_or_forced() {
        let base = json!({});
        let (o1, m1) = apply(
            &base,
            &Default::default(),
            &json!({"spec": {"a": 1}}),
            &req("one", false),
        )
        .unwrap();
        // Same value: shared, no conflict.
        let (o2, m2) = apply(&o1, &m1, &json!({"spec": {"a": 1}}), &req("two", false)).unwrap();
        assert_eq!(m2.entries.len(), 2);
        // Different value: conflict naming the owner.
        let err = apply(&o2, &m2, &json!({"spec": {"a": 5}}), &req("three", false)).unwrap_err();
        assert_eq!(err.len(), 2);
        assert_eq!(err[0].field, ".spec.a");
        // Forced: ownership moves, value changes.
        let (o3, m3) = apply(&o2, &m2, &json!({"spec": {"a": 5}}), &req("three", true)).unwrap();
        assert_eq!(o3["spec"]["a"], 5);
        assert_eq!(m3.entries.len(), 1);
        assert_eq!(m3.entries[0].manager, "three");
    }

    #[test]
    fn owning_a_map_node_does_not_conflict_with_its_children() {
        let (o1, m1) = apply(
            &json!({}),
            &Default::default(),
            &json!({"metadata": {"labels": {"a": "1"}}}),
            &req("one", false),
        )
        .unwrap();
        let (o2, m2) = apply(
            &o1,
            &m1,
            &json!({"metadata": {"labels": {}}}),
            &req("two", false),
        )
        .unwrap();
        assert_eq!(o2["metadata"]["labels"]["a"], "1");
        assert_eq!(m2.entries.len(), 2);
    }

    #[test]
    fn shared_fields_survive_when_one_owner_drops_them() {
        let (o1, m1) = apply(
            &json!({}),
            &Default::default(),
            &json!({"spec": {"a": 1}}),
            &req("one", false),
        )
        .unwrap();
        let (o2, m2) = apply(&o1, &m1, &json!({"spec": {"a": 1}}), &req("two", false)).unwrap();
        let (o3, _) = apply(&o2, &m2, &json!({}), &req("one", false)).unwrap();
        assert_eq!(o3["spec"]["a"], 1);
    }
}

//! Field ownership (`metadata.managedFields`): which manager set which leaf field.
//!
//! A field is identified by its path of map keys from the object root
//! (`["spec", "ports"]`, `["metadata", "labels", "app"]`). Only leaves are
//! owned: values that are not maps, and empty maps. Lists are leaves too:
//! every list is treated as atomic (see the crate docs), so a manager owns a
//! whole list or nothing of it.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

/// Path of map keys from the object root.
pub type FieldPath = Vec<String>;

/// Formats a path the way apply conflicts name fields: `.spec.replicas`.
pub fn format_path(p: &[String]) -> String {
    p.iter().map(|s| format!(".{s}")).collect()
}

/// Whether one path is a prefix of the other (they cover some common field).
pub fn overlaps(a: &[String], b: &[String]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// The value at `p`, if every key on the way exists.
pub fn get_path<'a>(v: &'a Value, p: &[String]) -> Option<&'a Value> {
    p.iter().try_fold(v, |v, k| v.as_object()?.get(k))
}

/// Removes the field at `p`, then any map that removal left empty (except
/// the top-level `metadata`), so dropping the last label also drops `labels`.
pub fn remove_path(v: &mut Value, p: &[String]) {
    fn go(v: &mut Value, p: &[String], depth: usize) {
        let Some(map) = v.as_object_mut() else { return };
        match p {
            [] => {}
            [last] => {
                map.remove(last);
            }
            [first, rest @ ..] => {
                if let Some(child) = map.get_mut(first) {
                    go(child, rest, depth + 1);
                    let emptied = child.as_object().is_some_and(Map::is_empty);
                    if emptied && !(depth == 0 && first == "metadata") {
                        map.remove(first);
                    }
                }
            }
        }
    }
    go(v, p, 0);
}

/// A set of owned leaf fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSet(BTreeSet<FieldPath>);

impl FieldSet {
    /// Every leaf of `value` (which should be a map): the fields a
    /// configuration sets. `null` leaves are skipped: they unset, not set.
    pub fn leaves(value: &Value) -> FieldSet {
        fn walk(v: &Value, path: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
            match v {
                Value::Object(m) if !m.is_empty() => {
                    for (k, child) in m {
                        path.push(k.clone());
                        walk(child, path, out);
                        path.pop();
                    }
                }
                Value::Null => {}
                _ => {
                    if !path.is_empty() {
                        out.insert(path.clone());
                    }
                }
            }
        }
        let mut out = BTreeSet::new();
        walk(value, &mut Vec::new(), &mut out);
        FieldSet(out)
    }

    /// Whether no field is owned.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Iterates the owned paths.
    pub fn iter(&self) -> impl Iterator<Item = &FieldPath> {
        self.0.iter()
    }

    /// Whether `p` is owned exactly.
    pub fn contains(&self, p: &[String]) -> bool {
        self.0.contains(p)
    }

    /// Owns `p`, dropping any owned path that overlaps it.
    pub fn insert(&mut self, p: FieldPath) {
        self.remove_overlapping(&p);
        self.0.insert(p);
    }

    /// Disowns every path overlapping `p`.
    pub fn remove_overlapping(&mut self, p: &[String]) {
        self.0.retain(|q| !overlaps(q, p));
    }

    /// Owned paths overlapping `p`.
    pub fn overlapping<'a>(&'a self, p: &'a [String]) -> impl Iterator<Item = &'a FieldPath> + 'a {
        self.0.iter().filter(move |q| overlaps(q, p))
    }

    /// Whether any owned path overlaps `p`.
    pub fn overlaps(&self, p: &[String]) -> bool {
        self.overlapping(p).next().is_some()
    }

    /// The `fieldsV1` encoding: nested `{"f:key": {...}}` maps with `{}` leaves.
    pub fn to_fields_v1(&self) -> Value {
        let mut root = Map::new();
        for path in &self.0 {
            let mut node = &mut root;
            for key in path {
                node = node
                    .entry(format!("f:{key}"))
                    .or_insert_with(|| Value::Object(Map::new()))
                    .as_object_mut()
                    .expect("fieldsV1 nodes are maps");
            }
        }
        Value::Object(root)
    }
}

/// Whether a write addressed the main resource or the `/status` subresource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subresource {
    /// `/.../{name}`.
    Main,
    /// `/.../{name}/status`.
    Status,
}

/// `Apply` for server-side apply, `Update` for every other write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Server-side apply.
    Apply,
    /// Create, replace and the non-apply patches.
    Update,
}

/// One `managedFields` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManagerEntry {
    /// Field manager name.
    pub manager: String,
    /// How it wrote.
    pub operation: Operation,
    /// Through which endpoint.
    pub subresource: Subresource,
    /// apiVersion of its last write.
    pub api_version: String,
    /// When its last write changed something (RFC 3339).
    pub time: String,
    /// What it owns.
    pub fields: FieldSet,
}

impl ManagerEntry {
    fn is(&self, manager: &str, op: Operation, sub: Subresource) -> bool {
        self.manager == manager && self.operation == op && self.subresource == sub
    }
}

/// Ownership of one object's fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ManagedFields {
    /// Entries in first-write order.
    pub entries: Vec<ManagerEntry>,
}

/// Which part of an object a write through `sub` may touch and owns fields in:
/// identity and server-set metadata are never owned; with a status subresource,
/// the main resource does not own `status` and `/status` owns only `status`.
pub fn tracked_view(obj: &Value, sub: Subresource, has_status: bool) -> Value {
    const OWNED_METADATA: &[&str] = &["labels", "annotations", "finalizers", "ownerReferences"];
    let mut out = Map::new();
    let Some(map) = obj.as_object() else {
        return Value::Object(out);
    };
    for (k, v) in map {
        match (k.as_str(), sub) {
            ("apiVersion" | "kind", _) => {}
            ("status", Subresource::Status) => {
                out.insert(k.clone(), v.clone());
            }
            (_, Subresource::Status) => {}
            ("status", Subresource::Main) if has_status => {}
            ("metadata", Subresource::Main) => {
                let meta: Map<String, Value> = v
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .filter(|(k, _)| OWNED_METADATA.contains(&k.as_str()))
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect()
                    })
                    .unwrap_or_default();
                if !meta.is_empty() {
                    out.insert(k.clone(), Value::Object(meta));
                }
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(out)
}

/// How a leaf differs between two versions of an object.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Change {
    /// Added or given a new value.
    Set(FieldPath),
    /// No longer present.
    Removed(FieldPath),
}

/// Leaf-level differences between two maps, in an order safe to replay.
fn diff_maps(
    a: &Map<String, Value>,
    b: &Map<String, Value>,
    path: &mut FieldPath,
    out: &mut Vec<Change>,
) {
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for k in keys {
        path.push(k.clone());
        diff_values(a.get(k), b.get(k), path, out);
        path.pop();
    }
}

fn non_empty_map(v: Option<&Value>) -> Option<&Map<String, Value>> {
    v.and_then(Value::as_object).filter(|m| !m.is_empty())
}

fn diff_values(
    old: Option<&Value>,
    new: Option<&Value>,
    path: &mut FieldPath,
    out: &mut Vec<Change>,
) {
    match (non_empty_map(old), non_empty_map(new)) {
        (Some(a), Some(b)) => diff_maps(a, b, path, out),
        (None, Some(b)) => {
            if old.is_some_and(|o| !o.is_null()) {
                out.push(Change::Removed(path.clone()));
            }
            diff_maps(&Map::new(), b, path, out);
        }
        (Some(a), None) => {
            diff_maps(a, &Map::new(), path, out);
            if new.is_some_and(|n| !n.is_null()) {
                out.push(Change::Set(path.clone()));
            }
        }
        (None, None) => {
            let old = old.filter(|v| !v.is_null());
            let new = new.filter(|v| !v.is_null());
            if old != new {
                out.push(match new {
                    Some(_) => Change::Set(path.clone()),
                    None => Change::Removed(path.clone()),
                });
            }
        }
    }
}

impl ManagedFields {
    /// Index of an entry.
    fn position(&self, manager: &str, op: Operation, sub: Subresource) -> Option<usize> {
        self.entries.iter().position(|e| e.is(manager, op, sub))
    }

    /// The fields an entry owns (empty if it has none).
    pub fn fields_of(&self, manager: &str, op: Operation, sub: Subresource) -> FieldSet {
        self.position(manager, op, sub)
            .map(|i| self.entries[i].fields.clone())
            .unwrap_or_default()
    }

    /// The entry, created (stamped `now`) if missing.
    pub fn entry_mut(
        &mut self,
        manager: &str,
        op: Operation,
        sub: Subresource,
        api_version: &str,
        now: &str,
    ) -> &mut ManagerEntry {
        let i = match self.position(manager, op, sub) {
            Some(i) => i,
            None => {
                self.entries.push(ManagerEntry {
                    manager: manager.to_string(),
                    operation: op,
                    subresource: sub,
                    api_version: api_version.to_string(),
                    time: now.to_string(),
                    fields: FieldSet::default(),
                });
                self.entries.len() - 1
            }
        };
        &mut self.entries[i]
    }

    /// Records a non-apply write by `manager` that turned `old` into `new`
    /// (both already reduced with [`tracked_view`]): the manager takes the
    /// leaves it set, other managers lose them, and removed leaves lose
    /// every owner.
    pub fn record_update(
        &mut self,
        manager: &str,
        sub: Subresource,
        api_version: &str,
        old: &Value,
        new: &Value,
        now: &str,
    ) {
        let empty = Map::new();
        let mut changes = Vec::new();
        diff_maps(
            old.as_object().unwrap_or(&empty),
            new.as_object().unwrap_or(&empty),
            &mut Vec::new(),
            &mut changes,
        );
        for change in changes {
            match change {
                Change::Removed(p) => {
                    for e in &mut self.entries {
                        e.fields.remove_overlapping(&p);
                    }
                }
                Change::Set(p) => {
                    for e in &mut self.entries {
                        e.fields.remove_overlapping(&p);
                    }
                    self.entry_mut(manager, Operation::Update, sub, api_version, now)
                        .fields
                        .insert(p);
                }
            }
        }
        self.prune();
    }

    /// Drops entries that own nothing, as the apiserver does.
    pub fn prune(&mut self) {
        self.entries.retain(|e| !e.fields.is_empty());
    }

    /// Marks the acting entry as having written now, with `api_version`.
    pub fn stamp(
        &mut self,
        manager: &str,
        op: Operation,
        sub: Subresource,
        api_version: &str,
        now: &str,
    ) {
        if let Some(i) = self.position(manager, op, sub) {
            self.entries[i].time = now.to_string();
            self.entries[i].api_version = api_version.to_string();
        }
    }

    /// The `metadata.managedFields` array.
    pub fn render(&self) -> Value {
        self.entries
            .iter()
            .map(|e| {
                let mut v = json!({
                    "manager": e.manager,
                    "operation": match e.operation { Operation::Apply => "Apply", Operation::Update => "Update" },
                    "apiVersion": e.api_version,
                    "time": e.time,
                    "fieldsType": "FieldsV1",
                    "fieldsV1": e.fields.to_fields_v1(),
                });
                if e.subresource == Subresource::Status {
                    v["subresource"] = json!("status");
                }
                v
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> FieldPath {
        s.split('.').map(str::to_string).collect()
    }

    #[test]
    fn leaves_treat_lists_and_empty_maps_as_leaves() {
        let v = json!({"spec": {"ports": [1, 2], "sel": {}, "a": {"b": 1, "c": null}}});
        let got: Vec<_> = FieldSet::leaves(&v).iter().cloned().collect();
        assert_eq!(got, vec![p("spec.a.b"), p("spec.ports"), p("spec.sel")]);
    }

    #[test]
    fn fields_v1_encoding() {
        let v = json!({"metadata": {"labels": {"app": "x"}}, "spec": {"x": 1}});
        assert_eq!(
            FieldSet::leaves(&v).to_fields_v1(),
            json!({"f:metadata": {"f:labels": {"f:app": {}}}, "f:spec": {"f:x": {}}})
        );
    }

    #[test]
    fn updates_move_ownership_of_changed_leaves_only() {
        let mut mf = ManagedFields::default();
        let v1 = json!({"spec": {"a": 1, "b": 2}});
        mf.record_update("creator", Subresource::Main, "v1", &json!({}), &v1, "t0");
        let v2 = json!({"spec": {"a": 1, "b": 3, "c": 4}});
        mf.record_update("editor", Subresource::Main, "v1", &v1, &v2, "t1");
        assert_eq!(
            mf.fields_of("creator", Operation::Update, Subresource::Main),
            FieldSet([p("spec.a")].into())
        );
        assert_eq!(
            mf.fields_of("editor", Operation::Update, Subresource::Main),
            FieldSet([p("spec.b"), p("spec.c")].into())
        );
        // Removing a field disowns it everywhere; empty entries disappear.
        let v3 = json!({"spec": {"b": 3, "c": 4}});
        mf.record_update("editor", Subresource::Main, "v1", &v2, &v3, "t2");
        assert_eq!(mf.entries.len(), 1);
    }

    #[test]
    fn tracked_view_respects_status_subresource() {
        let obj = json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "n", "labels": {"a": "b"}}, "spec": {"s": 1}, "status": {"t": 2}});
        assert_eq!(
            tracked_view(&obj, Subresource::Main, true),
            json!({"metadata": {"labels": {"a": "b"}}, "spec": {"s": 1}})
        );
        assert_eq!(
            tracked_view(&obj, Subresource::Status, true),
            json!({"status": {"t": 2}})
        );
        assert!(
            tracked_view(&obj, Subresource::Main, false)
                .get("status")
                .is_some()
        );
    }

    #[test]
    fn remove_path_prunes_emptied_maps_but_keeps_metadata() {
        let mut v = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"x": {"y": 1}, "z": 2}});
        remove_path(&mut v, &p("metadata.labels.a"));
        remove_path(&mut v, &p("spec.x.y"));
        assert_eq!(v, json!({"metadata": {}, "spec": {"z": 2}}));
    }
}

//! Objects, the global resourceVersion counter, the event history, and the
//! broadcast that feeds open watches.
//!
//! Every committed change gets the next resourceVersion, is appended to the
//! history and is broadcast while the caller holds the state lock, so a
//! watch that reads the history and subscribes under the same lock sees
//! every event exactly once and in order.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::managed::ManagedFields;
use crate::resources::GroupResource;

/// How many notices a watch may fall behind before it is closed (it then
/// resumes from its last resourceVersion, like after a real watch-cache eviction).
pub const BROADCAST_CAPACITY: usize = 4096;

/// A stored object.
#[derive(Clone, Debug)]
pub struct StoredObject {
    /// The object as served (storage apiVersion), managedFields rendered.
    pub value: Arc<Value>,
    /// Field ownership behind `metadata.managedFields`.
    pub managed: ManagedFields,
}

/// Watch event types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Deleted.
    Deleted,
}

impl EventType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One committed change.
#[derive(Clone, Debug)]
pub struct ChangeRecord {
    /// resourceVersion of the change.
    pub rv: u64,
    /// Kind of the object.
    pub gr: GroupResource,
    /// Namespace (empty for cluster-scoped objects).
    pub namespace: String,
    /// Name.
    pub name: String,
    /// What happened.
    pub event_type: EventType,
    /// The object after the change (for deletes, the final state with the deletion's rv).
    pub object: Arc<Value>,
    /// The object before the change (none for creates); lets watches with
    /// selectors turn updates into ADDED/DELETED, and snapshots be rebuilt.
    pub prev: Option<Arc<Value>>,
}

/// What open watches are told.
#[derive(Clone, Debug)]
pub enum Notice {
    /// A change was committed.
    Change(Arc<ChangeRecord>),
    /// History before `floor` was dropped: every open watch must end with 410.
    Compacted {
        /// Oldest resourceVersion still servable.
        floor: u64,
    },
    /// A kind stopped being served (its CRD was deleted).
    KindRemoved(GroupResource),
    /// The server is shutting down.
    Shutdown,
}

/// (namespace, name); namespace is empty for cluster-scoped objects.
pub type ObjectName = (String, String);

/// The object store.
#[derive(Debug)]
pub struct Store {
    kinds: BTreeMap<GroupResource, BTreeMap<ObjectName, StoredObject>>,
    history: Vec<Arc<ChangeRecord>>,
    rv: u64,
    floor: u64,
    notices: broadcast::Sender<Notice>,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            kinds: BTreeMap::new(),
            history: Vec::new(),
            rv: 0,
            floor: 0,
            notices: broadcast::channel(BROADCAST_CAPACITY).0,
        }
    }
}

/// Sets `metadata.resourceVersion`.
pub fn set_resource_version(v: &mut Value, rv: u64) {
    if !v["metadata"].is_object() {
        v["metadata"] = json!({});
    }
    v["metadata"]["resourceVersion"] = json!(rv.to_string());
}

impl Store {
    /// The latest resourceVersion.
    pub fn current_rv(&self) -> u64 {
        self.rv
    }

    /// The oldest resourceVersion still servable; older ones are "too old" (410).
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// A receiver of every notice sent from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.notices.subscribe()
    }

    /// Sends a notice to all open watches.
    pub fn notify(&self, notice: Notice) {
        // No receivers is fine: nobody is watching.
        let _ = self.notices.send(notice);
    }

    /// One object.
    pub fn get(&self, gr: &GroupResource, namespace: &str, name: &str) -> Option<&StoredObject> {
        self.kinds
            .get(gr)?
            .get(&(namespace.to_string(), name.to_string()))
    }

    /// Objects of a kind, in (namespace, name) order, optionally in one namespace.
    pub fn objects<'a>(
        &'a self,
        gr: &GroupResource,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a ObjectName, &'a StoredObject)> + 'a {
        self.kinds
            .get(gr)
            .into_iter()
            .flat_map(|m| m.iter())
            .filter(move |((ns, _), _)| namespace.is_none_or(|want| ns == want))
    }

    fn record(&mut self, record: ChangeRecord) {
        let record = Arc::new(record);
        self.history.push(Arc::clone(&record));
        self.notify(Notice::Change(record));
    }

    /// Stores a new object with the next resourceVersion.
    pub fn insert(
        &mut self,
        gr: &GroupResource,
        namespace: &str,
        name: &str,
        mut value: Value,
        managed: ManagedFields,
    ) -> Arc<Value> {
        self.rv += 1;
        set_resource_version(&mut value, self.rv);
        let value = Arc::new(value);
        self.kinds.entry(gr.clone()).or_default().insert(
            (namespace.to_string(), name.to_string()),
            StoredObject {
                value: Arc::clone(&value),
                managed,
            },
        );
        self.record(ChangeRecord {
            rv: self.rv,
            gr: gr.clone(),
            namespace: namespace.to_string(),
            name: name.to_string(),
            event_type: EventType::Added,
            object: Arc::clone(&value),
            prev: None,
        });
        value
    }

    /// Replaces an existing object with the next resourceVersion. Callers
    /// skip this for no-op writes, which must not bump the version.
    pub fn update(
        &mut self,
        gr: &GroupResource,
        namespace: &str,
        name: &str,
        mut value: Value,
        managed: ManagedFields,
    ) -> Arc<Value> {
        self.rv += 1;
        set_resource_version(&mut value, self.rv);
        let value = Arc::new(value);
        let slot = self
            .kinds
            .entry(gr.clone())
            .or_default()
            .entry((namespace.to_string(), name.to_string()));
        let prev = match slot {
            std::collections::btree_map::Entry::Occupied(mut o) => {
                let prev = Arc::clone(&o.get().value);
                o.insert(StoredObject {
                    value: Arc::clone(&value),
                    managed,
                });
                Some(prev)
            }
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(StoredObject {
                    value: Arc::clone(&value),
                    managed,
                });
                None
            }
        };
        self.record(ChangeRecord {
            rv: self.rv,
            gr: gr.clone(),
            namespace: namespace.to_string(),
            name: name.to_string(),
            event_type: if prev.is_some() {
                EventType::Modified
            } else {
                EventType::Added
            },
            object: Arc::clone(&value),
            prev,
        });
        value
    }

    /// Deletes an object; returns its final state, stamped with the deletion's resourceVersion.
    pub fn remove(
        &mut self,
        gr: &GroupResource,
        namespace: &str,
        name: &str,
    ) -> Option<Arc<Value>> {
        self.remove_as(gr, namespace, name, None)
    }

    /// Deletes an object whose final state is `last` (e.g. the update that
    /// removed its last finalizer), or the stored state when `None`.
    pub fn remove_as(
        &mut self,
        gr: &GroupResource,
        namespace: &str,
        name: &str,
        last: Option<Value>,
    ) -> Option<Arc<Value>> {
        let old = self
            .kinds
            .get_mut(gr)?
            .remove(&(namespace.to_string(), name.to_string()))?;
        self.rv += 1;
        let mut last = last.unwrap_or_else(|| (*old.value).clone());
        set_resource_version(&mut last, self.rv);
        let last = Arc::new(last);
        self.record(ChangeRecord {
            rv: self.rv,
            gr: gr.clone(),
            namespace: namespace.to_string(),
            name: name.to_string(),
            event_type: EventType::Deleted,
            object: Arc::clone(&last),
            prev: Some(old.value),
        });
        Some(last)
    }

    /// Changes recorded after `rv`, oldest first, for one kind.
    pub fn changes_after(&self, gr: &GroupResource, rv: u64) -> Vec<Arc<ChangeRecord>> {
        let start = self.history.partition_point(|r| r.rv <= rv);
        self.history[start..]
            .iter()
            .filter(|r| r.gr == *gr)
            .cloned()
            .collect()
    }

    /// The objects of a kind as they were at resourceVersion `rv`, rebuilt by
    /// undoing later changes. The caller checks `floor() <= rv <= current_rv()`.
    pub fn snapshot(&self, gr: &GroupResource, rv: u64) -> BTreeMap<ObjectName, Arc<Value>> {
        let mut objects: BTreeMap<ObjectName, Arc<Value>> = self
            .objects(gr, None)
            .map(|(k, o)| (k.clone(), Arc::clone(&o.value)))
            .collect();
        for change in self.changes_after(gr, rv).iter().rev() {
            let key = (change.namespace.clone(), change.name.clone());
            match &change.prev {
                Some(prev) => {
                    objects.insert(key, Arc::clone(prev));
                }
                None => {
                    objects.remove(&key);
                }
            }
        }
        objects
    }

    /// Forgets all history: every resourceVersion handed out so far becomes
    /// too old. The counter also advances by one, as if an unrelated write
    /// happened (in a real cluster compaction always trails writes), so a
    /// fresh list returns a version that is still servable.
    pub fn compact(&mut self) {
        self.rv += 1;
        self.floor = self.rv;
        self.history.clear();
        self.notify(Notice::Compacted { floor: self.floor });
    }

    /// Deletes every object of a kind (emitting DELETED events), then tells
    /// watches of that kind to end.
    pub fn remove_kind(&mut self, gr: &GroupResource) {
        let names: Vec<ObjectName> = self.objects(gr, None).map(|(k, _)| k.clone()).collect();
        for (ns, name) in names {
            self.remove(gr, &ns, &name);
        }
        self.kinds.remove(gr);
        self.notify(Notice::KindRemoved(gr.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gr() -> GroupResource {
        GroupResource::new("", "services")
    }

    fn obj(name: &str, v: i64) -> Value {
        json!({"metadata": {"name": name, "namespace": "ns"}, "spec": {"v": v}})
    }

    #[test]
    fn versions_increase_and_history_rebuilds_snapshots() {
        let mut s = Store::default();
        s.insert(&gr(), "ns", "a", obj("a", 1), Default::default());
        let at1 = s.current_rv();
        s.update(&gr(), "ns", "a", obj("a", 2), Default::default());
        s.insert(&gr(), "ns", "b", obj("b", 1), Default::default());
        s.remove(&gr(), "ns", "a");
        assert_eq!(s.current_rv(), 4);

        let snap = s.snapshot(&gr(), at1);
        assert_eq!(snap.len(), 1);
        assert_eq!(snap[&("ns".into(), "a".into())]["spec"]["v"], 1);
        assert_eq!(
            snap[&("ns".into(), "a".into())]["metadata"]["resourceVersion"],
            "1"
        );

        let changes = s.changes_after(&gr(), at1);
        let types: Vec<_> = changes.iter().map(|c| c.event_type).collect();
        assert_eq!(
            types,
            [EventType::Modified, EventType::Added, EventType::Deleted]
        );
        assert_eq!(changes[2].object["metadata"]["resourceVersion"], "4");
    }

    #[test]
    fn compaction_drops_history_and_moves_the_floor_past_every_issued_version() {
        let mut s = Store::default();
        s.insert(&gr(), "ns", "a", obj("a", 1), Default::default());
        let mut rx = s.subscribe();
        s.compact();
        assert_eq!(s.floor(), 2);
        assert_eq!(s.current_rv(), 2);
        assert!(s.changes_after(&gr(), 0).is_empty());
        assert!(matches!(rx.try_recv(), Ok(Notice::Compacted { floor: 2 })));
    }
}

//! Everything behind the server's one lock.

use serde_json::json;

use crate::clock::{IdGen, now_rfc3339};
use crate::managed::ManagedFields;
use crate::resources::{GroupResource, INITIAL_NAMESPACES, Registry};
use crate::store::Store;

/// The served kinds and the objects. One mutex guards both so that a CRD
/// change and the objects it serves move together.
#[derive(Debug)]
pub struct State {
    /// Served kinds.
    pub registry: Registry,
    /// Objects and history.
    pub store: Store,
    /// uid and generateName source.
    pub ids: IdGen,
}

impl Default for State {
    fn default() -> Self {
        let mut state = State {
            registry: Registry::default(),
            store: Store::default(),
            ids: IdGen::default(),
        };
        // A cluster always has these; objects may only be created in existing namespaces.
        for ns in INITIAL_NAMESPACES {
            let obj = json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": ns,
                    "uid": state.ids.uid(),
                    "creationTimestamp": now_rfc3339(),
                    "labels": {"kubernetes.io/metadata.name": ns},
                },
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            });
            state.store.insert(
                &GroupResource::namespaces(),
                "",
                ns,
                obj,
                ManagedFields::default(),
            );
        }
        state
    }
}

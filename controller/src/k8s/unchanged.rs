//! What the last status write pass found already current, so that the
//! next pass skips the objects whose inputs did not move. A status is a
//! function of the planned status, the verdict on what the agents
//! programmed, and the stored object (plus the clock, which only stamps
//! conditions that change): when the plan hands over the same
//! `Arc<ObjectStatus>`, the verdict is equal and the stored object has the
//! resourceVersion it had when its status was last found current, it is
//! current still. At 10k objects, building and comparing every status
//! after each endpoint change (twice: once for the plan, once for the
//! agent's ack) was the write pass's whole cost, and it ran beside the
//! change's way to the data planes on a 2-core node.

use std::collections::HashMap;
use std::sync::Arc;

use super::programmed::Programmed;
use crate::object_key::ObjectKey;
use crate::plan::ObjectStatus;

/// One object's inputs when its status was found current.
struct Inputs {
    planned: Arc<ObjectStatus>,
    verdict: Programmed,
    resource_version: Option<String>,
}

#[derive(Default)]
pub struct Unchanged {
    last: HashMap<ObjectKey, Inputs>,
    next: HashMap<ObjectKey, Inputs>,
}

impl Unchanged {
    /// Whether `key`'s status was current in the last pass with these very
    /// inputs (then it stays recorded as current for the next pass).
    pub fn still_current(
        &mut self,
        key: &ObjectKey,
        planned: &Arc<ObjectStatus>,
        verdict: &Programmed,
        resource_version: Option<&str>,
    ) -> bool {
        let Some(seen) = self.last.remove(key) else {
            return false;
        };
        let same = Arc::ptr_eq(&seen.planned, planned)
            && seen.verdict == *verdict
            && seen.resource_version.as_deref() == resource_version;
        if same {
            self.next.insert(key.clone(), seen);
        }
        same
    }

    /// Records that `key`'s status is current with these inputs.
    pub fn current(
        &mut self,
        key: &ObjectKey,
        planned: &Arc<ObjectStatus>,
        verdict: Programmed,
        resource_version: Option<&str>,
    ) {
        self.next.insert(
            key.clone(),
            Inputs {
                planned: planned.clone(),
                verdict,
                resource_version: resource_version.map(str::to_string),
            },
        );
    }

    /// Ends a pass: what it recorded is what the next one checks against;
    /// objects it did not find current (written, deleted, gone from the
    /// plan) are checked in full next time.
    pub fn end_pass(&mut self) {
        self.last = std::mem::take(&mut self.next);
    }

    /// Forgets everything: the next pass checks every object in full.
    pub fn clear(&mut self) {
        self.last.clear();
        self.next.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object_key::Kind;
    use crate::plan::{Cond, CondStatus};

    fn key(name: &str) -> ObjectKey {
        ObjectKey::new(Kind::VirtualServer, "default", name)
    }

    fn verdict(ready: usize) -> Programmed {
        Programmed {
            cond: Cond::new(CondStatus::True, "Programmed", "1/1"),
            nodes: Vec::new(),
            ready,
        }
    }

    fn status() -> Arc<ObjectStatus> {
        let cond = Cond::new(CondStatus::True, "Ready", "");
        Arc::new(ObjectStatus {
            generation: Some(1),
            addresses: Vec::new(),
            accepted: cond.clone(),
            ready: cond.clone(),
            programmed: cond,
            backends: None,
            directors: Vec::new(),
            absent: Vec::new(),
        })
    }

    #[test]
    fn only_the_very_same_inputs_skip_and_only_for_one_pass_unless_seen_again() {
        let planned = status();
        let mut u = Unchanged::default();
        assert!(!u.still_current(&key("web"), &planned, &verdict(1), Some("7")));
        u.current(&key("web"), &planned, verdict(1), Some("7"));
        u.end_pass();
        // Same inputs: skipped, and kept for the pass after.
        assert!(u.still_current(&key("web"), &planned, &verdict(1), Some("7")));
        u.end_pass();
        assert!(u.still_current(&key("web"), &planned, &verdict(1), Some("7")));
        u.end_pass();
        // Each input moves it: an equal status planned anew (another Arc),
        // another verdict, another resourceVersion (someone wrote it).
        let replanned = status();
        for (p, v, rv) in [
            (&replanned, verdict(1), "7"),
            (&planned, verdict(0), "7"),
            (&planned, verdict(1), "8"),
        ] {
            let mut u = Unchanged::default();
            u.current(&key("web"), &planned, verdict(1), Some("7"));
            u.end_pass();
            assert!(!u.still_current(&key("web"), p, &v, Some(rv)));
            // Not found current: checked in full next time too.
            u.end_pass();
            assert!(!u.still_current(&key("web"), &planned, &verdict(1), Some("7")));
        }
        // An object not visited in a pass is forgotten.
        let mut u = Unchanged::default();
        u.current(&key("web"), &planned, verdict(1), Some("7"));
        u.end_pass();
        u.end_pass();
        assert!(!u.still_current(&key("web"), &planned, &verdict(1), Some("7")));
        // Cleared: nothing is skipped.
        u.current(&key("web"), &planned, verdict(1), Some("7"));
        u.end_pass();
        u.clear();
        assert!(!u.still_current(&key("web"), &planned, &verdict(1), Some("7")));
    }
}

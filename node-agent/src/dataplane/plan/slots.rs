//! Slot bookkeeping for the planner: free service and backend slot numbers,
//! and the backend slots a service holds. Both are found without a pass
//! over every slot when they can be, so that a reload that changes one
//! service costs about what that service costs.
use std::collections::BTreeMap;

use super::Programmed;
use crate::abi::{BackendValue, SvcKey};

/// Free slot numbers below `max`, lowest first. A slot the plan frees is
/// not free for it (it is in use until the flip): the plan removes its
/// retired slots from the state only once it is done.
pub(super) struct FreeSlots {
    max: u32,
    /// Every number below has been handed out or is in use.
    next: u32,
}

impl FreeSlots {
    pub(super) fn new(max: u32) -> Self {
        Self::from(max, 0)
    }

    /// Free numbers at or above `used_below` (every one below is in use).
    pub(super) fn from(max: u32, used_below: u32) -> Self {
        Self {
            max,
            next: used_below,
        }
    }

    /// Every number below this one is in use or handed out.
    pub(super) fn used_below(&self) -> u32 {
        self.next
    }

    /// The lowest free number at or above the last one taken; `used_from`
    /// lists the numbers in use from a given one up, ascending.
    pub(super) fn take<I: Iterator<Item = u32>>(
        &mut self,
        used_from: impl FnOnce(u32) -> I,
    ) -> Option<u32> {
        let mut id = self.next;
        for used in used_from(id) {
            if used != id {
                break;
            }
            id += 1;
        }
        if id >= self.max {
            return None;
        }
        self.next = id + 1;
        Some(id)
    }
}

/// Backend slots by service id.
pub(super) type ByService = BTreeMap<u32, Vec<(u32, BackendValue)>>;

/// The backend slots of service `key` (`svc_id`): the ones its ring was
/// built from (every listed backend, weight 0 included, so all it holds),
/// or, when that is not known (after a restart), the ones naming it,
/// grouped for every service once (`by_service`, built on first need from
/// `p`, in which each service's own entries stay as they were until the
/// plan reaches it).
pub(super) fn backends_of(
    p: &Programmed,
    key: &SvcKey,
    svc_id: u32,
    by_service: &mut Option<ByService>,
) -> Vec<(u32, BackendValue)> {
    if let Some(input) = p.ring_inputs.get(key) {
        return input
            .iter()
            .filter_map(|&(id, _)| p.backends.get(&id).map(|b| (id, *b)))
            .collect();
    }
    by_service
        .get_or_insert_with(|| {
            let mut m = ByService::new();
            for (&id, b) in &p.backends {
                m.entry(b.svc_id).or_default().push((id, *b));
            }
            m
        })
        .get(&svc_id)
        .cloned()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_slots_fill_gaps_in_order_and_stop_at_max() {
        let used = [0u32, 1, 3, 4, 6];
        let from = |f: u32| used.into_iter().filter(move |&u| u >= f);
        let mut s = FreeSlots::new(8);
        let taken: Vec<Option<u32>> = (0..5).map(|_| s.take(from)).collect();
        assert_eq!(taken, [Some(2), Some(5), Some(7), None, None]);
    }
}

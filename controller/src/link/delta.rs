//! The change between two plans of one node, as a `ballast.v1.Delta`: only
//! the services that differ are sent, so one endpoint change among 10k
//! services costs one service on the wire.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use ballast_proto::v1;

use super::encode::{ip_bytes, object_ref, service};
use crate::plan::NodePlan;

/// What changed from `old` to `new`, with `version` and `base_version` left
/// 0 for [`super::NodeVersions`] to stamp. Lists come out in canonical order
/// (both plans' maps are sorted by object, and `IpAddr` order is address
/// order). Services are compared by pointer first: the planner shares one
/// `Arc` per unchanged service between runs, so the walk over 10k services
/// is cheap when few changed.
pub fn node_delta(old: &NodePlan, new: &NodePlan) -> v1::Delta {
    let mut delta = v1::Delta::default();
    let mut olds = old.services.iter().peekable();
    let mut news = new.services.iter().peekable();
    loop {
        let order = match (olds.peek(), news.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((ok, _)), Some((nk, _))) => ok.cmp(nk),
        };
        match order {
            // Only in the old plan: gone.
            Ordering::Less => {
                let (key, _) = olds.next().expect("peeked");
                delta.removed.push(object_ref(key));
            }
            // Only in the new plan: added.
            Ordering::Greater => {
                let (key, sp) = news.next().expect("peeked");
                delta.upserted.push(service(key, sp));
            }
            Ordering::Equal => {
                let (_, was) = olds.next().expect("peeked");
                let (key, now) = news.next().expect("peeked");
                if !Arc::ptr_eq(was, now) && was != now {
                    delta.upserted.push(service(key, now));
                }
            }
        }
    }
    (delta.l2_added, delta.l2_removed) = set_change(&old.l2_announce, &new.l2_announce);
    (delta.bgp_added, delta.bgp_removed) = set_change(&old.bgp_announce, &new.bgp_announce);
    delta
}

/// (added, removed), each in address order.
fn set_change(old: &BTreeSet<IpAddr>, new: &BTreeSet<IpAddr>) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    (
        new.difference(old).map(|ip| ip_bytes(*ip)).collect(),
        old.difference(new).map(|ip| ip_bytes(*ip)).collect(),
    )
}

#[cfg(test)]
mod tests;

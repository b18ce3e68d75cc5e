//! Pure planning of map writes: from what is programmed and what is wanted,
//! the ordered writes that take the data plane there with no window in which
//! a VIP forwards to nothing (backends, then rings, then the service flip,
//! then retirements).
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use crate::abi::{self, BackendValue, SvcKey, SvcValue};
use crate::dataplane::ring_alloc::{RingAllocator, RingFull};
use slots::{ByService, FreeSlots};

mod slots;
mod types;
use crate::maglev;
pub use types::{DesiredBackend, DesiredService, MapWrites, Programmed, SrcRange};

/// Where the planner reads what each key is wanted as (None: not wanted):
/// a map of the whole desired state, or the agent's state with one
/// version's change over it.
pub trait DesiredByKey {
    fn get(&self, key: &SvcKey) -> Option<&DesiredService>;
}

impl DesiredByKey for BTreeMap<SvcKey, &DesiredService> {
    fn get(&self, key: &SvcKey) -> Option<&DesiredService> {
        BTreeMap::get(self, key).copied()
    }
}

impl DesiredByKey for BTreeMap<SvcKey, DesiredService> {
    fn get(&self, key: &SvcKey) -> Option<&DesiredService> {
        BTreeMap::get(self, key)
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
/// A service the plan could not program; `service` is its name, `key` which
/// (VIP, port, protocol) it is.
pub enum PlanError {
    #[error("{service}: {source}")]
    RingFull {
        service: String,
        key: SvcKey,
        source: RingFull,
    },
    #[error("{service}: Maglev table size {size}: {reason}")]
    Maglev {
        service: String,
        key: SvcKey,
        size: u32,
        reason: String,
    },
    #[error("{service}: no free service slot ({max} in use)")]
    TooManyServices {
        service: String,
        key: SvcKey,
        max: u32,
    },
    #[error("{service}: no free backend slot ({max} in use; raise --backend-slots)")]
    TooManyBackends {
        service: String,
        key: SvcKey,
        max: u32,
    },
    #[error("{service}: the source-range table is full ({max} prefixes over all services)")]
    TooManySourceRanges {
        service: String,
        key: SvcKey,
        max: u32,
    },
}

impl PlanError {
    /// The (VIP, port, protocol) of the service refused.
    pub fn key(&self) -> SvcKey {
        match self {
            PlanError::RingFull { key, .. }
            | PlanError::Maglev { key, .. }
            | PlanError::TooManyServices { key, .. }
            | PlanError::TooManyBackends { key, .. }
            | PlanError::TooManySourceRanges { key, .. } => *key,
        }
    }
}

/// Sizes and id sources the planner needs.
pub struct PlanLimits {
    /// One Maglev table size for every service (`--maglev-size`); None: each
    /// service's own, from its backend count.
    pub forced_maglev_size: Option<u32>,
    pub max_services: u32,
    pub max_backends: u32,
    pub max_src_ranges: u32,
}

/// Result of planning: the writes, the state after them, and the services
/// that could not be programmed (they keep what they had, if anything).
#[derive(Debug)]
pub struct Planned {
    pub writes: MapWrites,
    pub next: Programmed,
    pub errors: Vec<PlanError>,
}

/// The table size `d` gets: its own, else the agent-wide one, else the
/// automatic one. The automatic size counts every listed backend, weight 0
/// included, so that drains and health verdicts (which reach the planner as
/// weight 0, and differ between directors) never change it.
pub fn table_size(d: &DesiredService, limits: &PlanLimits) -> u32 {
    d.maglev_size
        .or(limits.forced_maglev_size)
        .unwrap_or_else(|| maglev::table_size_for(d.backends.len()))
}

/// Every key of one VIP (`vip` as the maps hold it): keys order by VIP
/// first.
fn vip_keys(vip: u32) -> std::ops::RangeInclusive<SvcKey> {
    let key = |port, proto, pad| SvcKey {
        vip,
        port,
        proto,
        pad,
    };
    key(0, 0, 0)..=key(u16::MAX, u8::MAX, u8::MAX)
}

fn backend_identity(addr: Ipv4Addr, port: u16) -> u64 {
    // Stable across processes: the ring only moves when backends change.
    ((u32::from(addr) as u64) << 16) | port as u64
}

/// Plans the writes from `cur` to `desired`, taking `cur` over (it becomes
/// `next`: cloning it per reload would cost as much as the whole plan of a
/// reload that changes nothing). `ring` is the allocator matching `cur`;
/// `next_gen` yields fresh backend generations.
pub fn plan(
    cur: Programmed,
    desired: &[DesiredService],
    ring: &mut RingAllocator,
    limits: &PlanLimits,
    next_gen: &mut impl FnMut() -> u32,
) -> Planned {
    let wanted: BTreeMap<SvcKey, &DesiredService> = desired.iter().map(|d| (d.key(), d)).collect();
    let keys = Keys {
        touched: wanted.keys().chain(cur.services.keys()).copied().collect(),
        every_vip: true,
    };
    plan_keys(cur, &wanted, &keys, ring, limits, next_gen)
}

/// Which keys a plan looks at.
pub struct Keys {
    /// Every key whose wanted value may differ from what it was last
    /// planned with, and every programmed key no longer wanted. The others
    /// are left as they are, unread: a plan costs what it touches.
    pub touched: BTreeSet<SvcKey>,
    /// Recompute the flags of every VIP the maps hold, not only those of
    /// touched keys (after a restart, when the maps may hold VIPs of
    /// services no longer there).
    pub every_vip: bool,
}

/// [`plan`] of the keys `keys` names only, reading what each is wanted as
/// from `wanted`.
pub fn plan_keys(
    cur: Programmed,
    wanted: &impl DesiredByKey,
    keys: &Keys,
    ring: &mut RingAllocator,
    limits: &PlanLimits,
    next_gen: &mut impl FnMut() -> u32,
) -> Planned {
    let mut w = MapWrites::default();
    // Read as the state before the plan for each service until that
    // service is planned: each one's entries are its own.
    let mut next = cur;
    let mut errors = Vec::new();
    let mut freed_regions = Vec::new();

    let mut free_svc_ids = FreeSlots::new(limits.max_services);
    // Service slots in use, listed when a new service first needs one.
    let mut svc_ids: Option<BTreeSet<u32>> = None;
    let used_below = next.backends_used_below;
    let mut free_backend_ids = FreeSlots::from(limits.max_backends, used_below);
    // Backend slots this plan retires: removed from `next` at the end, as
    // they are in use until the flip.
    let mut retired: Vec<u32> = Vec::new();
    let mut by_service: Option<ByService> = None;

    // Entries the trie holds once this plan's additions are in (its
    // deletions come after the flip, so they do not make room for them).
    let mut src_range_total: u64 = next.src_ranges.values().map(|r| r.len() as u64).sum();

    for key in &keys.touched {
        let Some(d) = wanted.get(key) else {
            continue;
        };
        let size = table_size(d, limits);
        if next
            .planned
            .get(key)
            .is_some_and(|(p, s)| p == d && *s == size)
        {
            continue;
        }
        let existing = next.services.get(key).copied();
        let Some(svc_id) = existing.map(|v| v.id).or_else(|| {
            let used =
                svc_ids.get_or_insert_with(|| next.services.values().map(|v| v.id).collect());
            free_svc_ids.take(|from| used.range(from..).copied())
        }) else {
            errors.push(PlanError::TooManyServices {
                service: d.name.clone(),
                key: *key,
                max: limits.max_services,
            });
            continue;
        };

        // Backend slots: keep the slot (and generation) of a backend that
        // stays, so its established flows keep going.
        let mine: BTreeMap<(u32, u16), (u32, BackendValue)> =
            slots::backends_of(&next, key, svc_id, &mut by_service)
                .into_iter()
                .map(|(id, b)| ((b.addr, b.port), (id, b)))
                .collect();
        let mut slots = Vec::with_capacity(d.backends.len());
        let mut new_backends = Vec::new();
        let mut out_of_slots = false;
        for b in &d.backends {
            let k = (abi::be_addr(b.addr), abi::be_port(b.port));
            let flags = abi::BACKEND_LIVE
                | if b.weight > 0 {
                    abi::BACKEND_ACCEPTS
                } else {
                    0
                };
            let (id, value) = match mine.get(&k) {
                Some(&(id, v)) => (id, BackendValue { flags, ..v }),
                None => match free_backend_ids
                    .take(|from| next.backends.range(from..).map(|(&id, _)| id))
                {
                    Some(id) => (
                        id,
                        BackendValue {
                            addr: k.0,
                            port: k.1,
                            flags,
                            pad: 0,
                            gen_: next_gen(),
                            svc_id,
                        },
                    ),
                    None => {
                        out_of_slots = true;
                        break;
                    }
                },
            };
            if !mine.contains_key(&k) {
                new_backends.push(id);
            }
            slots.push((id, value, b));
        }
        if out_of_slots {
            errors.push(PlanError::TooManyBackends {
                service: d.name.clone(),
                key: *key,
                max: limits.max_backends,
            });
            continue;
        }

        let ranges: BTreeSet<SrcRange> = d.source_ranges.iter().map(SrcRange::of).collect();
        let old_ranges = next.src_ranges.get(&svc_id).cloned().unwrap_or_default();
        let range_adds = ranges.difference(&old_ranges).count() as u64;
        if src_range_total + range_adds > u64::from(limits.max_src_ranges) {
            errors.push(PlanError::TooManySourceRanges {
                service: d.name.clone(),
                key: *key,
                max: limits.max_src_ranges,
            });
            continue;
        }

        // The ring, rebuilt only when its input changed.
        let ring_input: Vec<(u32, u32)> = slots.iter().map(|(id, _, b)| (*id, b.weight)).collect();
        let old = existing;
        let mut value = SvcValue {
            id: svc_id,
            ring_offset: old.map_or(0, |o| o.ring_offset),
            ring_size: old.map_or(0, |o| o.ring_size),
            persist_timeout_s: d.persist_timeout_s,
            mode: d.mode,
            flags: d.flags
                | if ranges.is_empty() {
                    0
                } else {
                    abi::SVC_SOURCE_RANGES
                },
            mss_max: d.mss_max,
        };
        let mut new_ring = None;
        let active = ring_input.iter().any(|&(_, weight)| weight > 0);
        if next.ring_inputs.get(key) != Some(&ring_input)
            || old.is_none()
            || (active && old.is_some_and(|o| o.ring_size != size))
        {
            let mbs: Vec<maglev::MaglevBackend> = slots
                .iter()
                .map(|(_, _, b)| maglev::MaglevBackend {
                    key: backend_identity(b.addr, b.port),
                    weight: b.weight,
                })
                .collect();
            if !active {
                value.ring_offset = 0;
                value.ring_size = 0;
            } else {
                let table = match maglev::build_table(&mbs, size) {
                    Ok(t) => t,
                    Err(e) => {
                        errors.push(PlanError::Maglev {
                            service: d.name.clone(),
                            key: *key,
                            size,
                            reason: e.to_string(),
                        });
                        continue;
                    }
                };
                let off = match ring.alloc(size) {
                    Ok(o) => o,
                    Err(source) => {
                        errors.push(PlanError::RingFull {
                            service: d.name.clone(),
                            key: *key,
                            source,
                        });
                        continue;
                    }
                };
                let ids: Vec<u32> = table.iter().map(|&i| slots[i as usize].0).collect();
                new_ring = Some((off, ids));
                value.ring_offset = off;
                value.ring_size = size;
            }
            if let Some(o) = old {
                freed_regions.push((o.ring_offset, o.ring_size));
            }
            next.ring_inputs.insert(*key, ring_input);
        }

        for (id, v, _) in &slots {
            if next.backends.get(id) != Some(v) {
                w.backends.push((*id, *v));
            }
            next.backends.insert(*id, *v);
        }
        if let Some(r) = new_ring {
            w.rings.push(r);
        }
        src_range_total += range_adds;
        w.src_ranges_add
            .extend(ranges.difference(&old_ranges).map(|r| (svc_id, *r)));
        w.src_ranges_delete
            .extend(old_ranges.difference(&ranges).map(|r| (svc_id, *r)));
        if ranges.is_empty() {
            next.src_ranges.remove(&svc_id);
        } else {
            next.src_ranges.insert(svc_id, ranges);
        }
        if old != Some(value) {
            w.services.push((*key, value));
        }
        if old.is_none() {
            w.svc_counter_resets.push(svc_id);
        }
        w.backend_counter_resets.extend(new_backends);
        next.services.insert(*key, value);
        next.planned.insert(*key, (d.clone(), size));
        // Backends of this service that are no longer wanted.
        let kept: BTreeSet<u32> = slots.iter().map(|(id, _, _)| *id).collect();
        for &(id, b) in mine.values() {
            if !kept.contains(&id) {
                w.backend_retires.push((id, BackendValue { flags: 0, ..b }));
                retired.push(id);
            }
        }
    }

    let gone: Vec<(SvcKey, SvcValue)> = keys
        .touched
        .iter()
        .filter(|key| wanted.get(key).is_none())
        .filter_map(|k| next.services.get(k).map(|v| (*k, *v)))
        .collect();
    for (key, v) in &gone {
        for (id, b) in slots::backends_of(&next, key, v.id, &mut by_service) {
            w.backend_retires.push((id, BackendValue { flags: 0, ..b }));
            retired.push(id);
        }
        w.service_deletes.push(*key);
        next.services.remove(key);
        next.ring_inputs.remove(key);
        next.planned.remove(key);
        if let Some(ranges) = next.src_ranges.remove(&v.id) {
            w.src_ranges_delete
                .extend(ranges.into_iter().map(|r| (v.id, r)));
        }
        freed_regions.push((v.ring_offset, v.ring_size));
    }
    // Slots handed to a service that then failed stay free: the search
    // starts where it did when any did.
    next.backends_used_below = if errors.is_empty() {
        free_backend_ids.used_below()
    } else {
        used_below
    };
    for id in retired {
        next.backends.remove(&id);
        next.backends_used_below = next.backends_used_below.min(id);
    }

    // VIPs: every address of a programmed service; announced if any of its
    // services asks. Only the VIPs of touched keys can change.
    let mut vips: BTreeSet<u32> = keys.touched.iter().map(|k| k.vip).collect();
    if keys.every_vip {
        vips.extend(next.vips.keys().copied());
    }
    for vip in vips {
        let mut flags = None;
        for (k, _) in next.services.range(vip_keys(vip)) {
            if let Some(d) = wanted.get(k) {
                let f = flags.get_or_insert(0);
                if d.announce {
                    *f |= abi::VIP_ANNOUNCE;
                }
            }
        }
        match flags {
            Some(f) if next.vips.get(&vip) != Some(&f) => {
                w.vips_set.push((vip, f));
                next.vips.insert(vip, f);
            }
            Some(_) => {}
            None => {
                if next.vips.remove(&vip).is_some() {
                    w.vips_delete.push(vip);
                }
            }
        }
    }

    for (off, len) in freed_regions {
        ring.free(off, len);
    }
    Planned {
        writes: w,
        next,
        errors,
    }
}

#[cfg(test)]
mod tests;

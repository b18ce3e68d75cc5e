//! Pure planning of map writes: from what is programmed and what is wanted,
//! the ordered writes that take the data plane there with no window in which
//! a VIP forwards to nothing (backends, then rings, then the service flip,
//! then retirements).
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::IpNet;

use crate::abi::{self, BackendValue, SrcRangeData, SvcKey, SvcValue};
use crate::dataplane::ring_alloc::{RingAllocator, RingFull};
use slots::{ByService, FreeSlots};

mod slots;
use crate::maglev;

/// One (VIP, port, protocol) as the data plane needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredService {
    /// Human name for stats and errors, e.g. `default/web:http`.
    pub name: String,
    pub vip: Ipv4Addr,
    pub port: u16,
    pub proto: u8,
    pub mode: u8,
    pub flags: u8,
    pub mss_max: u16,
    pub persist_timeout_s: u32,
    pub announce: bool,
    /// Clients allowed to start a flow; empty admits everyone.
    pub source_ranges: Vec<IpNet>,
    pub backends: Vec<DesiredBackend>,
    /// This service's Maglev table size, over the agent-wide one and the
    /// automatic one (`maglev::table_size_for`). Standalone files cannot set
    /// it (VirtualServer has no such field); a bad size (not prime, fewer
    /// slots than weighted backends) is this service's error.
    pub maglev_size: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredBackend {
    pub addr: Ipv4Addr,
    pub port: u16,
    pub weight: u32,
}

impl DesiredService {
    /// A service with no TOA, no persistence, announced, `backends` as
    /// (address, weight) on `target_port`.
    pub fn new(
        name: impl Into<String>,
        (vip, port, proto): (Ipv4Addr, u16, u8),
        mode: u8,
        target_port: u16,
        backends: impl IntoIterator<Item = (Ipv4Addr, u32)>,
    ) -> Self {
        Self {
            name: name.into(),
            vip,
            port,
            proto,
            mode,
            flags: 0,
            mss_max: 0,
            persist_timeout_s: 0,
            announce: true,
            source_ranges: Vec::new(),
            maglev_size: None,
            backends: backends
                .into_iter()
                .map(|(addr, weight)| DesiredBackend {
                    addr,
                    port: target_port,
                    weight,
                })
                .collect(),
        }
    }

    pub fn key(&self) -> SvcKey {
        SvcKey {
            vip: abi::be_addr(self.vip),
            port: abi::be_port(self.port),
            proto: self.proto,
            pad: 0,
        }
    }
}

/// What the maps hold (rebuilt from them after a restart).
#[derive(Debug, Clone, Default)]
pub struct Programmed {
    pub services: BTreeMap<SvcKey, SvcValue>,
    /// Live backend slots.
    pub backends: BTreeMap<u32, BackendValue>,
    pub vips: BTreeMap<u32, u32>,
    /// The Maglev input each service's current ring was built from; absent
    /// after a restart, which forces one rebuild.
    pub ring_inputs: BTreeMap<SvcKey, Vec<(u32, u32)>>,
    /// The desired service each programmed service was last planned from,
    /// and the table size it was planned with: one asked for again
    /// unchanged, at the same size, has nothing to write and is skipped
    /// whole, so a reload costs what changed. Absent after a restart (and
    /// for a service refused since), which plans the service in full.
    pub planned: BTreeMap<SvcKey, (DesiredService, u32)>,
    /// `src_ranges` trie entries by service id.
    pub src_ranges: BTreeMap<u32, BTreeSet<SrcRange>>,
}

/// One `src_ranges` trie entry without its service id: the prefix length
/// counted from the start of the address (IPv4 as IPv4-mapped IPv6, see
/// shared.h `struct src_range_key`) and the address bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SrcRange {
    // Address first: entries sort by address, then length.
    pub addr: [u8; 16],
    pub addr_bits: u32,
}

impl SrcRange {
    /// The trie entry of a client prefix (host bits cleared: the trie
    /// compares whole keys inside a prefix).
    pub fn of(net: &IpNet) -> Self {
        match net.trunc() {
            IpNet::V4(n) => SrcRange {
                addr_bits: 96 + u32::from(n.prefix_len()),
                addr: n.addr().to_ipv6_mapped().octets(),
            },
            IpNet::V6(n) => SrcRange {
                addr_bits: u32::from(n.prefix_len()),
                addr: n.addr().octets(),
            },
        }
    }

    /// The LPM key of this entry for service `svc_id`.
    pub fn key(&self, svc_id: u32) -> (u32, SrcRangeData) {
        (
            abi::SRC_RANGE_SVC_BITS + self.addr_bits,
            SrcRangeData {
                svc_id,
                addr: self.addr,
            },
        )
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct MapWrites {
    /// Step 0: the counters of the slots new services and backends take
    /// start from zero (a slot may be reused).
    pub svc_counter_resets: Vec<u32>,
    pub backend_counter_resets: Vec<u32>,
    /// Step 1: backend slots, new or with changed flags.
    pub backends: Vec<(u32, BackendValue)>,
    /// Step 2: ring regions (offset, backend ids).
    pub rings: Vec<(u32, Vec<u32>)>,
    /// Step 2: source-range entries (service id, range) a service gains:
    /// written before the flip, so a service that turns ranges on never
    /// denies an admitted client.
    pub src_ranges_add: Vec<(u32, SrcRange)>,
    /// Step 3: service entries (the flip).
    pub services: Vec<(SvcKey, SvcValue)>,
    pub vips_set: Vec<(u32, u32)>,
    /// Step 4: removals once nothing new can reach them.
    pub service_deletes: Vec<SvcKey>,
    pub vips_delete: Vec<u32>,
    pub backend_retires: Vec<(u32, BackendValue)>,
    /// Source-range entries a service lost, or those of a deleted service:
    /// removed after the flip, so a narrowing edit is widest in between.
    pub src_ranges_delete: Vec<(u32, SrcRange)>,
}

impl MapWrites {
    /// Entries written or deleted, a Maglev table counting as one: zero for
    /// a plan that changes nothing.
    pub fn entries(&self) -> usize {
        let MapWrites {
            svc_counter_resets,
            backend_counter_resets,
            backends,
            rings,
            src_ranges_add,
            services,
            vips_set,
            service_deletes,
            vips_delete,
            backend_retires,
            src_ranges_delete,
        } = self;
        svc_counter_resets.len()
            + backend_counter_resets.len()
            + backends.len()
            + rings.len()
            + src_ranges_add.len()
            + services.len()
            + vips_set.len()
            + service_deletes.len()
            + vips_delete.len()
            + backend_retires.len()
            + src_ranges_delete.len()
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
    let mut w = MapWrites::default();
    // Read as the state before the plan for each service until that
    // service is planned: each one's entries are its own.
    let mut next = cur;
    let mut errors = Vec::new();
    let mut freed_regions = Vec::new();

    let mut free_svc_ids = FreeSlots::new(limits.max_services);
    // Service slots in use, listed when a new service first needs one.
    let mut svc_ids: Option<BTreeSet<u32>> = None;
    let mut free_backend_ids = FreeSlots::new(limits.max_backends);
    // Backend slots this plan retires: removed from `next` at the end, as
    // they are in use until the flip.
    let mut retired: Vec<u32> = Vec::new();
    let mut by_service: Option<ByService> = None;

    let wanted: BTreeMap<SvcKey, &DesiredService> = desired.iter().map(|d| (d.key(), d)).collect();
    // Entries the trie holds once this plan's additions are in (its
    // deletions come after the flip, so they do not make room for them).
    let mut src_range_total: u64 = next.src_ranges.values().map(|r| r.len() as u64).sum();

    for (key, d) in &wanted {
        let size = table_size(d, limits);
        if next
            .planned
            .get(key)
            .is_some_and(|(p, s)| p == *d && *s == size)
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
        next.planned.insert(*key, ((*d).clone(), size));
        // Backends of this service that are no longer wanted.
        let kept: BTreeSet<u32> = slots.iter().map(|(id, _, _)| *id).collect();
        for &(id, b) in mine.values() {
            if !kept.contains(&id) {
                w.backend_retires.push((id, BackendValue { flags: 0, ..b }));
                retired.push(id);
            }
        }
    }

    let gone: Vec<(SvcKey, SvcValue)> = next
        .services
        .iter()
        .filter(|(key, _)| !wanted.contains_key(key))
        .map(|(k, v)| (*k, *v))
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
    for id in retired {
        next.backends.remove(&id);
    }

    // VIPs: every address of a programmed service; announced if any of its
    // services asks.
    let mut vips: BTreeMap<u32, u32> = BTreeMap::new();
    for d in desired {
        if next.services.contains_key(&d.key()) {
            let f = vips.entry(abi::be_addr(d.vip)).or_default();
            if d.announce {
                *f |= abi::VIP_ANNOUNCE;
            }
        }
    }
    for (a, f) in &vips {
        if next.vips.get(a) != Some(f) {
            w.vips_set.push((*a, *f));
        }
    }
    w.vips_delete = next
        .vips
        .keys()
        .filter(|a| !vips.contains_key(a))
        .copied()
        .collect();
    next.vips = vips;

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

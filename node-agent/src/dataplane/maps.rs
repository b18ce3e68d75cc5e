//! Typed access to the data plane's maps: applying planned writes in order,
//! reading the programmed state back (adoption after a restart), the node
//! config, counters, and the mmapped Maglev ring.
use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::path::Path;

use aya::maps::lpm_trie::{Key as LpmKey, LpmTrie};
use aya::maps::{Array, HashMap, Map, MapData, PerCpuArray};
use tracing::debug;

use crate::abi::{
    self, BackendValue, DpConfig, RefusalLimit, SrcRangeData, SvcKey, SvcValue, TrafficCounters,
};
use crate::dataplane::batch;
use crate::dataplane::error::DataplaneError;
use crate::dataplane::plan::{MapWrites, Programmed, SrcRange};

/// Every map of the object (the two next-hop caches are the program's own,
/// held here so that `map_memory` accounts for them too).
const MAP_NAMES: [&str; 18] = [
    "services",
    "src_ranges",
    "vips",
    "local_addrs",
    "backends",
    "ring",
    "conntrack",
    "persist",
    "config",
    "svc_stats",
    "backend_stats",
    "reasons",
    "nexthops",
    "backend_nexthops",
    "l2_owned",
    "l2_liveness",
    "refusal_limit",
    "refusal_bucket",
];

/// The user-space end of the mmapped `ring` array. Array maps lay values
/// out in 8-byte aligned elements, so each u32 backend id sits in a u64.
struct RingMmap {
    ptr: *mut u64,
    slots: u32,
}

// SAFETY: the mapping is owned by this struct and only written through &mut.
unsafe impl Send for RingMmap {}

impl RingMmap {
    fn new(map: &Map) -> Result<Self, DataplaneError> {
        let err = |reason: String| DataplaneError::Map {
            map: "ring",
            reason,
        };
        let Map::Array(data) = map else {
            return Err(err("not an array".into()));
        };
        let slots = data.info().map_err(|e| err(e.to_string()))?.max_entries();
        let len = slots as usize * 8;
        let fd = std::os::fd::AsRawFd::as_raw_fd(&std::os::fd::AsFd::as_fd(data.fd()));
        // SAFETY: mapping a BPF_F_MMAPABLE array of `len` bytes, shared so
        // that the program sees our writes.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(err(format!("mmap: {}", std::io::Error::last_os_error())));
        }
        Ok(Self {
            ptr: ptr.cast(),
            slots,
        })
    }

    fn write(&mut self, offset: u32, ids: &[u32]) -> Result<(), DataplaneError> {
        if offset as u64 + ids.len() as u64 > self.slots as u64 {
            return Err(DataplaneError::Map {
                map: "ring",
                reason: format!("region {offset}+{} out of range", ids.len()),
            });
        }
        // SAFETY: in bounds (checked above); the program only reads.
        let region =
            unsafe { std::slice::from_raw_parts_mut(self.ptr.add(offset as usize), ids.len()) };
        for (slot, id) in region.iter_mut().zip(ids) {
            *slot = *id as u64;
        }
        // Order the table before the service entry that publishes it (the
        // bpf() syscall that follows is a full barrier as well).
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    fn read(&self, offset: u32, len: u32) -> Vec<u32> {
        let end = (offset as u64 + len as u64).min(self.slots as u64) as u32;
        // SAFETY: clamped to the mapping.
        let region = unsafe {
            std::slice::from_raw_parts(
                self.ptr.add(offset as usize),
                (end - offset.min(end)) as usize,
            )
        };
        region.iter().map(|&v| v as u32).collect()
    }
}

impl Drop for RingMmap {
    fn drop(&mut self) {
        // SAFETY: the mapping made in new().
        unsafe { libc::munmap(self.ptr.cast(), self.slots as usize * 8) };
    }
}

pub struct Maps {
    maps: BTreeMap<&'static str, Map>,
    /// Mapped on first use: the kernel populates a BPF array's mapping
    /// whole when it is made, so every mapping costs the ring's size in
    /// RSS (32 MiB by default) at once. Handles that never touch the ring
    /// (the sweeper's, each `/metrics` scrape's, `stats`) do not map it.
    ring: OnceCell<RingMmap>,
    ring_slots: u32,
}

/// Entries per batch read when counting.
const COUNT_CHUNK: usize = 8192;

/// How full one flow table is.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FlowTable {
    pub table: &'static str,
    pub entries: u64,
    pub capacity: u32,
}

/// The map data behind a hash or LRU hash map.
pub(crate) fn hash_map_data<'a>(
    map: &'a Map,
    name: &'static str,
) -> Result<&'a MapData, DataplaneError> {
    match map {
        Map::HashMap(d) | Map::LruHashMap(d) => Ok(d),
        _ => Err(DataplaneError::Map {
            map: name,
            reason: "not a hash map".into(),
        }),
    }
}

pub(crate) fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> DataplaneError {
    move |e| DataplaneError::Map {
        map,
        reason: e.to_string(),
    }
}

impl Maps {
    pub(crate) fn take(ebpf: &mut aya::Ebpf) -> Result<Self, DataplaneError> {
        let mut maps = BTreeMap::new();
        for name in MAP_NAMES {
            let m = ebpf.take_map(name).ok_or(DataplaneError::Map {
                map: name,
                reason: "missing in object".into(),
            })?;
            maps.insert(name, m);
        }
        Self::with_ring(maps)
    }

    fn with_ring(maps: BTreeMap<&'static str, Map>) -> Result<Self, DataplaneError> {
        let Map::Array(ring) = &maps["ring"] else {
            return Err(DataplaneError::Map {
                map: "ring",
                reason: "not an array".into(),
            });
        };
        let ring_slots = ring.info().map_err(map_err("ring"))?.max_entries();
        Ok(Self {
            maps,
            ring: OnceCell::new(),
            ring_slots,
        })
    }

    /// The ring's mapping, made on first use.
    fn ring(&self) -> Result<&RingMmap, DataplaneError> {
        if self.ring.get().is_none() {
            let _ = self.ring.set(RingMmap::new(&self.maps["ring"])?);
        }
        Ok(self.ring.get().expect("set above"))
    }

    /// Opens the maps pinned under `pin_dir` without loading anything
    /// (`stats`, `cleanup`).
    pub fn open_pinned(pin_dir: &Path) -> Result<Self, DataplaneError> {
        let mut maps = BTreeMap::new();
        for name in MAP_NAMES {
            let data = MapData::from_pin(pin_dir.join(name)).map_err(map_err(name))?;
            let m = Map::from_map_data(data).map_err(map_err(name))?;
            maps.insert(name, m);
        }
        Self::with_ring(maps)
    }

    pub(crate) fn get(&mut self, name: &'static str) -> &mut Map {
        self.maps.get_mut(name).expect("all maps taken at open")
    }

    /// Every map, by name.
    pub(crate) fn all(&self) -> impl Iterator<Item = (&'static str, &Map)> {
        self.maps.iter().map(|(&name, map)| (name, map))
    }

    pub(crate) fn get_ref(&self, name: &'static str) -> &Map {
        self.maps.get(name).expect("all maps taken at open")
    }

    pub fn ring_slots(&self) -> u32 {
        self.ring_slots
    }

    /// The backend ids the maps hold: the smallest of the arrays indexed
    /// by backend id (pinned maps keep the size they were created with,
    /// whatever `--backend-slots` says now).
    pub fn backend_slots(&self) -> Result<u32, DataplaneError> {
        let entries = |name: &'static str| -> Result<u32, DataplaneError> {
            let data = match self.get_ref(name) {
                Map::Array(d) | Map::PerCpuArray(d) => d,
                _ => {
                    return Err(DataplaneError::Map {
                        map: name,
                        reason: "not an array".into(),
                    });
                }
            };
            Ok(data.info().map_err(map_err(name))?.max_entries())
        };
        Ok(entries("backends")?
            .min(entries("backend_stats")?)
            .min(entries("backend_nexthops")?))
    }

    pub fn ring_read(&self, offset: u32, len: u32) -> Result<Vec<u32>, DataplaneError> {
        Ok(self.ring()?.read(offset, len))
    }

    /// How many refusals each CPU may send (see shared.h `refusal_limit`).
    pub fn write_refusal_limit(&mut self, limit: RefusalLimit) -> Result<(), DataplaneError> {
        let mut a: Array<_, RefusalLimit> =
            Array::try_from(self.get("refusal_limit")).map_err(map_err("refusal_limit"))?;
        a.set(0, limit, 0).map_err(map_err("refusal_limit"))
    }

    pub fn write_config(&mut self, cfg: &DpConfig) -> Result<(), DataplaneError> {
        let mut a: Array<_, DpConfig> =
            Array::try_from(self.get("config")).map_err(map_err("config"))?;
        a.set(0, cfg, 0).map_err(map_err("config"))?;
        let wanted: Vec<u32> = cfg.snat_addrs[..cfg.n_snat_addrs as usize].to_vec();
        let mut h: HashMap<_, u32, u32> =
            HashMap::try_from(self.get("local_addrs")).map_err(map_err("local_addrs"))?;
        let stale: Vec<u32> = h
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !wanted.contains(k))
            .collect();
        for k in stale {
            h.remove(&k).map_err(map_err("local_addrs"))?;
        }
        for (i, a) in wanted.iter().enumerate() {
            h.insert(a, i as u32, 0).map_err(map_err("local_addrs"))?;
        }
        Ok(())
    }

    fn src_ranges(&mut self) -> Result<LpmTrie<&mut MapData, SrcRangeData, u32>, DataplaneError> {
        LpmTrie::try_from(self.get("src_ranges")).map_err(map_err("src_ranges"))
    }

    fn src_ranges_ref(&self) -> Result<LpmTrie<&MapData, SrcRangeData, u32>, DataplaneError> {
        LpmTrie::try_from(self.get_ref("src_ranges")).map_err(map_err("src_ranges"))
    }

    pub fn read_config(&self) -> Result<DpConfig, DataplaneError> {
        let a: Array<_, DpConfig> =
            Array::try_from(self.get_ref("config")).map_err(map_err("config"))?;
        a.get(&0, 0).map_err(map_err("config"))
    }

    /// Reads what the maps hold: services, live backends and VIPs.
    pub fn read_programmed(&self) -> Result<Programmed, DataplaneError> {
        let svcs: HashMap<_, SvcKey, SvcValue> =
            HashMap::try_from(self.get_ref("services")).map_err(map_err("services"))?;
        let services: BTreeMap<SvcKey, SvcValue> = svcs.iter().filter_map(Result::ok).collect();
        let vips_map: HashMap<_, u32, u32> =
            HashMap::try_from(self.get_ref("vips")).map_err(map_err("vips"))?;
        let vips = vips_map.iter().filter_map(Result::ok).collect();
        let mut backends = BTreeMap::new();
        // Drained backends are in no ring, so the array itself is the record:
        // one scan at start-up.
        let arr: Array<_, BackendValue> =
            Array::try_from(self.get_ref("backends")).map_err(map_err("backends"))?;
        let ids: std::collections::BTreeSet<u32> = services.values().map(|v| v.id).collect();
        for i in 0..arr.len() {
            let Ok(b) = arr.get(&i, 0) else { continue };
            if b.flags & abi::BACKEND_LIVE != 0 && ids.contains(&b.svc_id) {
                backends.insert(i, b);
            }
        }
        let mut src_ranges: BTreeMap<u32, std::collections::BTreeSet<SrcRange>> = BTreeMap::new();
        for key in self.src_ranges_ref()?.keys() {
            let key = key.map_err(map_err("src_ranges"))?;
            let data = key.data();
            if ids.contains(&data.svc_id) {
                src_ranges.entry(data.svc_id).or_default().insert(SrcRange {
                    addr_bits: key.prefix_len() - abi::SRC_RANGE_SVC_BITS,
                    addr: data.addr,
                });
            }
        }
        Ok(Programmed {
            services,
            backends,
            vips,
            ring_inputs: BTreeMap::new(),
            planned: BTreeMap::new(),
            src_ranges,
            // Read back: nothing known, the first search starts at 0.
            backends_used_below: 0,
        })
    }

    /// One service's entry; None when it is not programmed. A point lookup,
    /// for watching one service among many without reading every map.
    pub fn service(&self, key: &SvcKey) -> Result<Option<SvcValue>, DataplaneError> {
        let h: HashMap<_, SvcKey, SvcValue> =
            HashMap::try_from(self.get_ref("services")).map_err(map_err("services"))?;
        match h.get(key, 0) {
            Ok(v) => Ok(Some(v)),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(map_err("services")(e)),
        }
    }

    /// Backend slot `id` (live or not: see `BackendValue::flags`).
    pub fn backend(&self, id: u32) -> Result<BackendValue, DataplaneError> {
        let arr: Array<_, BackendValue> =
            Array::try_from(self.get_ref("backends")).map_err(map_err("backends"))?;
        arr.get(&id, 0).map_err(map_err("backends"))
    }

    /// Applies writes in the order that never leaves a VIP without backends.
    pub fn apply(&mut self, w: &MapWrites) -> Result<(), DataplaneError> {
        self.reset_counters("svc_stats", &w.svc_counter_resets)?;
        self.reset_counters("backend_stats", &w.backend_counter_resets)?;
        {
            let mut arr: Array<_, BackendValue> =
                Array::try_from(self.get("backends")).map_err(map_err("backends"))?;
            for (id, b) in &w.backends {
                arr.set(*id, b, 0).map_err(map_err("backends"))?;
            }
        }
        for (off, ids) in &w.rings {
            self.ring()?;
            let ring = self.ring.get_mut().expect("mapped above");
            ring.write(*off, ids)?;
        }
        {
            let mut t = self.src_ranges()?;
            for (svc_id, r) in &w.src_ranges_add {
                let (bits, data) = r.key(*svc_id);
                t.insert(&LpmKey::new(bits, data), 1, 0)
                    .map_err(map_err("src_ranges"))?;
            }
        }
        {
            let mut h: HashMap<_, SvcKey, SvcValue> =
                HashMap::try_from(self.get("services")).map_err(map_err("services"))?;
            for (k, v) in &w.services {
                h.insert(k, v, 0).map_err(map_err("services"))?;
            }
            for k in &w.service_deletes {
                h.remove(k).map_err(map_err("services"))?;
            }
        }
        {
            let mut h: HashMap<_, u32, u32> =
                HashMap::try_from(self.get("vips")).map_err(map_err("vips"))?;
            for (a, f) in &w.vips_set {
                h.insert(a, f, 0).map_err(map_err("vips"))?;
            }
            for a in &w.vips_delete {
                h.remove(a).map_err(map_err("vips"))?;
            }
        }
        {
            let mut arr: Array<_, BackendValue> =
                Array::try_from(self.get("backends")).map_err(map_err("backends"))?;
            for (id, b) in &w.backend_retires {
                arr.set(*id, b, 0).map_err(map_err("backends"))?;
            }
        }
        {
            let mut t = self.src_ranges()?;
            for (svc_id, r) in &w.src_ranges_delete {
                let (bits, data) = r.key(*svc_id);
                t.remove(&LpmKey::new(bits, data))
                    .map_err(map_err("src_ranges"))?;
            }
        }
        debug!(
            backends = w.backends.len(),
            rings = w.rings.len(),
            services = w.services.len(),
            deletes = w.service_deletes.len(),
            retires = w.backend_retires.len(),
            "applied map writes"
        );
        Ok(())
    }

    fn sum_counters(
        &self,
        map: &'static str,
        ids: impl Iterator<Item = u32>,
    ) -> Result<BTreeMap<u32, TrafficCounters>, DataplaneError> {
        let a: PerCpuArray<_, TrafficCounters> =
            PerCpuArray::try_from(self.get_ref(map)).map_err(map_err(map))?;
        let mut out = BTreeMap::new();
        for id in ids {
            let per_cpu = a.get(&id, 0).map_err(map_err(map))?;
            let mut total = TrafficCounters::default();
            for c in per_cpu.iter() {
                total.add(c);
            }
            out.insert(id, total);
        }
        Ok(out)
    }

    pub fn service_counters(
        &self,
        ids: impl Iterator<Item = u32>,
    ) -> Result<BTreeMap<u32, TrafficCounters>, DataplaneError> {
        self.sum_counters("svc_stats", ids)
    }

    pub fn backend_counters(
        &self,
        ids: impl Iterator<Item = u32>,
    ) -> Result<BTreeMap<u32, TrafficCounters>, DataplaneError> {
        self.sum_counters("backend_stats", ids)
    }

    /// Per-reason totals, indexed like `abi::REASONS`.
    pub fn reason_counters(&self) -> Result<Vec<u64>, DataplaneError> {
        let a: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.get_ref("reasons")).map_err(map_err("reasons"))?;
        (0..abi::REASONS.len() as u32)
            .map(|i| {
                a.get(&i, 0)
                    .map(|v| v.iter().sum())
                    .map_err(map_err("reasons"))
            })
            .collect()
    }

    /// Resets the counters of slots about to be reused by another service or
    /// backend, so that figures never carry over.
    pub fn reset_counters(&mut self, map: &'static str, ids: &[u32]) -> Result<(), DataplaneError> {
        if ids.is_empty() {
            return Ok(());
        }
        let ncpu = aya::util::nr_cpus().map_err(|(_, e)| DataplaneError::Map {
            map,
            reason: e.to_string(),
        })?;
        let mut a: PerCpuArray<_, TrafficCounters> =
            PerCpuArray::try_from(self.get(map)).map_err(map_err(map))?;
        for id in ids {
            let zeros = aya::maps::PerCpuValues::try_from(vec![TrafficCounters::default(); ncpu])
                .map_err(|e| DataplaneError::Map {
                map,
                reason: e.to_string(),
            })?;
            a.set(*id, zeros, 0).map_err(map_err(map))?;
        }
        Ok(())
    }

    pub fn conntrack(
        &mut self,
    ) -> Result<HashMap<&mut MapData, abi::FlowKey, abi::CtValue>, DataplaneError> {
        HashMap::try_from(self.get("conntrack")).map_err(map_err("conntrack"))
    }

    pub fn persist(
        &mut self,
    ) -> Result<HashMap<&mut MapData, abi::PersistKey, abi::PersistValue>, DataplaneError> {
        HashMap::try_from(self.get("persist")).map_err(map_err("persist"))
    }

    /// Entries in use and capacity of the flow tables (conntrack, whose
    /// FullNAT and NAT flows take an entry per direction, and persist), counted with batch reads (no per-entry
    /// syscalls): about a third of a second per million entries on a
    /// 2-core VM.
    pub fn flow_tables(&self) -> Result<Vec<FlowTable>, DataplaneError> {
        fn one<K: aya::Pod + Default, V: aya::Pod + Default>(
            maps: &Maps,
            name: &'static str,
        ) -> Result<FlowTable, DataplaneError> {
            let map = maps.get_ref(name);
            // The typed view checks the key and value sizes the batch
            // read relies on.
            HashMap::<&MapData, K, V>::try_from(map).map_err(map_err(name))?;
            let data = hash_map_data(map, name)?;
            let capacity = data.info().map_err(map_err(name))?.max_entries();
            let entries = batch::count::<K, V>(data.fd().as_fd(), COUNT_CHUNK).map_err(|e| {
                DataplaneError::Map {
                    map: name,
                    reason: format!("batch lookup: {e}"),
                }
            })?;
            Ok(FlowTable {
                table: name,
                entries,
                capacity,
            })
        }
        Ok(vec![
            one::<abi::FlowKey, abi::CtValue>(self, "conntrack")?,
            one::<abi::PersistKey, abi::PersistValue>(self, "persist")?,
        ])
    }
}

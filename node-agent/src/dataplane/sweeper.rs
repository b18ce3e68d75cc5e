//! The flow-table sweeper: deletes expired entries from `conntrack` and
//! `persist`, which the data plane only judges expired when a packet looks
//! them up (conntrack.h, select.h) and which are otherwise evicted by the
//! LRU, possibly in favour of dead ones.
//!
//! The rules (pure, tested below) are the data plane's own:
//! - conntrack: `ct_expired` of conntrack.h, timeouts from the `config` map
//!   by protocol and state (CLOSING has its own), and an entry stamped at or
//!   after our clock reading is never expired;
//! - a reply entry expired by its own stamp is kept while the forward entry
//!   of its flow is alive: the data plane reverses replies without an
//!   expiry check, and only refreshes a reply entry from the forward
//!   direction once a second, so deleting it would break a live flow;
//! - persist: the owning service's `persist_timeout_s` (select.h). An entry
//!   whose service id has no persistent service is never read by the data
//!   plane, and is deleted once it is older than the services snapshot.
//!
//! Time is the data plane's own clock, jiffies, read through the pinned
//! `ballast_clock` program (clock.rs); `config.hz` converts timeouts.
use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aya::Pod;
use aya::maps::{HashMap, MapData, MapError};
use serde::Serialize;
use tracing::{debug, warn};

use crate::abi::{self, CtValue, DpConfig, FlowKey, PersistKey, PersistValue};
use crate::dataplane::batch::BatchReader;
use crate::dataplane::clock::DataplaneClock;
use crate::dataplane::error::DataplaneError;
use crate::dataplane::maps::{FlowTable, Maps, hash_map_data, map_err};

const IPPROTO_TCP: u8 = 6;

/// The swept tables, in sweep order.
pub const TABLES: [&str; 2] = ["conntrack", "persist"];

// ------------------------------------------------------------ the rules

/// `ct_timeout` of conntrack.h, in jiffies.
pub fn ct_timeout(cfg: &DpConfig, proto: u8, state: u8) -> u64 {
    let s = if proto != IPPROTO_TCP {
        cfg.udp_timeout_s
    } else if state == abi::CT_CLOSING {
        cfg.tcp_closing_timeout_s
    } else if state == abi::CT_ESTABLISHED {
        cfg.tcp_established_timeout_s
    } else {
        cfg.tcp_syn_timeout_s
    };
    u64::from(s) * u64::from(cfg.hz)
}

/// `ct_expired` of conntrack.h.
pub fn ct_expired(cfg: &DpConfig, proto: u8, state: u8, last_seen: u64, now: u64) -> bool {
    now > last_seen && now - last_seen > ct_timeout(cfg, proto, state)
}

/// Who reads a persist entry: the service with its id, if persistent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PersistOwner {
    /// A service with this id remembers clients for `timeout_s` (> 0).
    Service { timeout_s: u32 },
    /// No persistent service has this id in the services snapshot taken
    /// at `snapshot` (jiffies): the data plane never reads the entry.
    Unused { snapshot: u64 },
}

impl PersistOwner {
    /// From the owning service's `persist_timeout_s`, if there is a service.
    pub fn of(timeout_s: Option<u32>, snapshot: u64) -> Self {
        match timeout_s {
            Some(t) if t > 0 => Self::Service { timeout_s: t },
            _ => Self::Unused { snapshot },
        }
    }
}

/// Whether a persist entry is dead. select.h reuses an entry while
/// `now - last_seen <= timeout`, and treats a stamp newer than its own
/// clock reading as fresh; so does the sweeper. An unused entry stamped at
/// or after the services snapshot may belong to a service published since,
/// so it stays until the next sweep.
pub fn persist_expired(owner: PersistOwner, hz: u32, last_seen: u64, now: u64) -> bool {
    match owner {
        PersistOwner::Service { timeout_s } => {
            now > last_seen && now - last_seen > u64::from(timeout_s) * u64::from(hz)
        }
        PersistOwner::Unused { snapshot } => last_seen < snapshot,
    }
}

/// Whether `fwd` (found at `reply.other_key`) is the forward entry of the
/// flow that owns the reply entry `reply` at `rk`: same service, backend
/// and mode, and its packets leave with the tuple the reply arrives on
/// mirrored (flow.h, ct_create).
pub fn reply_belongs_to(rk: &FlowKey, reply: &CtValue, fwd: &CtValue) -> bool {
    fwd.dir == abi::CT_FORWARD
        && fwd.mode == reply.mode
        && fwd.svc_id == reply.svc_id
        && fwd.backend_id == reply.backend_id
        && fwd.other_key(rk.proto) == *rk
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Live,
    /// Expired by its own stamp, but its flow is alive (reply entries only).
    Held,
    Expired,
}

/// What reading a reply entry's forward entry gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardEntry {
    Found(CtValue),
    Absent,
    /// The read failed: the reply entry is kept, the next sweep decides.
    Unreadable,
}

/// A conntrack entry's fate. `read_forward` is asked for the entry at a
/// reply entry's `other_key` only when that is needed: the reply entry
/// has expired by its own stamp.
pub fn ct_verdict(
    cfg: &DpConfig,
    k: &FlowKey,
    v: &CtValue,
    now: u64,
    read_forward: impl FnOnce(&FlowKey) -> ForwardEntry,
) -> Verdict {
    if !ct_expired(cfg, k.proto, v.state, v.last_seen, now) {
        return Verdict::Live;
    }
    if v.dir != abi::CT_REPLY {
        return Verdict::Expired;
    }
    match read_forward(&v.other_key(k.proto)) {
        ForwardEntry::Found(f)
            if reply_belongs_to(k, v, &f)
                && !ct_expired(cfg, k.proto, f.state, f.last_seen, now) =>
        {
            Verdict::Held
        }
        ForwardEntry::Unreadable => Verdict::Held,
        _ => Verdict::Expired,
    }
}

// ------------------------------------------------------------ one sweep

#[derive(Clone, Debug)]
pub struct SweepOptions {
    /// Entries read per batch syscall, and judged between two pauses.
    pub chunk: usize,
    /// Share of one core the sweep may use (0, 1]: after each chunk it
    /// sleeps so that work / (work + sleep) stays at most this. 1: no pause.
    pub max_cpu: f64,
    /// Set to stop a sweep between chunks (the report is then partial).
    pub cancel: Option<Arc<AtomicBool>>,
}

impl Default for SweepOptions {
    fn default() -> Self {
        Self {
            chunk: 4096,
            max_cpu: 0.25,
            cancel: None,
        }
    }
}

impl SweepOptions {
    /// As fast as possible (tests, and measuring the sweep's own cost).
    pub fn unpaced() -> Self {
        Self {
            max_cpu: 1.0,
            ..Default::default()
        }
    }
}

/// What one sweep did to one table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TableSweep {
    /// Entries read.
    pub scanned: u64,
    /// Judged expired when read.
    pub expired: u64,
    /// Deleted: expired, and unchanged when re-read right before deleting.
    pub deleted: u64,
    /// Expired when read but refreshed, replaced or gone by the time they
    /// were re-read: left to the data plane and the next sweep.
    pub changed: u64,
    /// Reply entries expired by their own stamp but kept for a live flow.
    pub held: u64,
    /// The table's max_entries.
    pub capacity: u32,
}

impl TableSweep {
    fn add(&mut self, o: &TableSweep) {
        self.scanned += o.scanned;
        self.expired += o.expired;
        self.deleted += o.deleted;
        self.changed += o.changed;
        self.held += o.held;
        self.capacity = o.capacity;
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SweepReport {
    pub conntrack: TableSweep,
    pub persist: TableSweep,
    /// Wall time of the sweep, pauses included.
    pub elapsed: Duration,
    /// Time spent working (reading, judging, deleting), pauses excluded.
    pub busy: Duration,
    /// False when cancelled part way.
    pub complete: bool,
}

impl SweepReport {
    /// (table name, its figures), in `TABLES` order.
    pub fn tables(&self) -> [(&'static str, &TableSweep); 2] {
        [(TABLES[0], &self.conntrack), (TABLES[1], &self.persist)]
    }

    /// How full the tables were when the sweep ended (entries added while
    /// it ran not counted).
    pub fn occupancy(&self) -> Vec<FlowTable> {
        self.tables()
            .into_iter()
            .map(|(table, t)| FlowTable {
                table,
                entries: t.scanned - t.deleted,
                capacity: t.capacity,
            })
            .collect()
    }
}

/// Keeps the sweep's CPU share at `max_cpu` by sleeping after each chunk.
struct Pacer {
    max_cpu: f64,
    busy: Duration,
    chunk_start: Instant,
}

impl Pacer {
    fn new(max_cpu: f64) -> Self {
        Self {
            max_cpu: if max_cpu.is_finite() && max_cpu > 0.0 {
                max_cpu.min(1.0)
            } else {
                1.0
            },
            busy: Duration::ZERO,
            chunk_start: Instant::now(),
        }
    }

    fn chunk_done(&mut self) {
        let worked = self.chunk_start.elapsed();
        self.busy += worked;
        if self.max_cpu < 1.0 {
            std::thread::sleep(worked.mul_f64((1.0 - self.max_cpu) / self.max_cpu));
        }
        self.chunk_start = Instant::now();
    }
}

/// Deletes `key` if it still holds `seen`. Ok(false): changed or gone.
///
/// The bpf syscalls have no compare-and-delete, so a window remains between
/// the re-read and the delete (a few microseconds): a packet of the flow in
/// that window refreshes (or, the entry being expired, re-creates) the entry
/// and the delete then removes the fresh one. The flow's next packet
/// re-creates it: same backend when the Maglev choice is unchanged (every TCP
/// packet may create a flow, forward.h), though a FullNAT flow may get another
/// SNAT port if its reply entry survived. That needs a packet on a flow idle
/// for longer than its timeout within those microseconds.
fn delete_if_unchanged<K: Pod, V: Pod + PartialEq>(
    map: &mut HashMap<&mut MapData, K, V>,
    key: &K,
    seen: &V,
) -> Result<bool, MapError> {
    match map.get(key, 0) {
        Ok(v) if v == *seen => {}
        Ok(_) | Err(MapError::KeyNotFound) => return Ok(false),
        Err(e) => return Err(e),
    }
    match map.remove(key) {
        Ok(()) => Ok(true),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Walks one table in chunks: `judge` decides each entry's fate (it may
/// read other maps), expired entries are deleted if unchanged.
fn sweep_table<K, V>(
    maps: &mut Maps,
    clock: &DataplaneClock,
    name: &'static str,
    opts: &SweepOptions,
    pacer: &mut Pacer,
    out: &mut TableSweep,
    mut judge: impl FnMut(&Maps, &K, &V, u64) -> Verdict,
) -> Result<bool, DataplaneError>
where
    K: Pod + Default,
    V: Pod + Default + PartialEq,
{
    let batch_err = |e: std::io::Error| DataplaneError::Map {
        map: name,
        reason: format!("batch lookup: {e}"),
    };
    let mut reader = {
        let map = maps.get_ref(name);
        // The typed view checks the key and value sizes the batch read
        // relies on.
        HashMap::<&MapData, K, V>::try_from(map).map_err(map_err(name))?;
        let data = hash_map_data(map, name)?;
        out.capacity = data.info().map_err(map_err(name))?.max_entries();
        BatchReader::<K, V>::new(data.fd().as_fd(), opts.chunk).map_err(batch_err)?
    };
    let mut doomed = Vec::new();
    pacer.chunk_start = Instant::now();
    while let Some((keys, values)) = reader.next_chunk().map_err(batch_err)? {
        // Read after the chunk: every stamp in it is at most this (the data
        // plane reads the same clock), so a refresh since shows as a change.
        let now = clock.now()?;
        doomed.clear();
        for (i, (k, v)) in keys.iter().zip(values).enumerate() {
            out.scanned += 1;
            match judge(maps, k, v, now) {
                Verdict::Live => {}
                Verdict::Held => out.held += 1,
                Verdict::Expired => {
                    out.expired += 1;
                    doomed.push(i);
                }
            }
        }
        if !doomed.is_empty() {
            let mut map: HashMap<&mut MapData, K, V> =
                HashMap::try_from(maps.get(name)).map_err(map_err(name))?;
            for &i in &doomed {
                if delete_if_unchanged(&mut map, &keys[i], &values[i]).map_err(map_err(name))? {
                    out.deleted += 1;
                } else {
                    out.changed += 1;
                }
            }
        }
        pacer.chunk_done();
        if opts
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
        {
            return Ok(false);
        }
    }
    Ok(true)
}

/// One sweep of the tables with the data plane's current timeouts.
pub fn sweep(
    maps: &mut Maps,
    clock: &DataplaneClock,
    opts: &SweepOptions,
) -> Result<SweepReport, DataplaneError> {
    let start = Instant::now();
    let cfg = maps.read_config()?;
    if cfg.hz == 0 {
        // Not configured yet: the data plane forwards nothing either.
        return Err(DataplaneError::Clock(
            "config.hz is 0: no agent has configured the data plane yet".into(),
        ));
    }
    let mut pacer = Pacer::new(opts.max_cpu);
    let mut report = SweepReport::default();

    let complete = sweep_table::<FlowKey, CtValue>(
        maps,
        clock,
        "conntrack",
        opts,
        &mut pacer,
        &mut report.conntrack,
        |maps, k, v, now| {
            ct_verdict(&cfg, k, v, now, |fk| {
                let Ok(ct) =
                    HashMap::<&MapData, FlowKey, CtValue>::try_from(maps.get_ref("conntrack"))
                else {
                    return ForwardEntry::Unreadable;
                };
                match ct.get(fk, 0) {
                    Ok(c) => ForwardEntry::Found(c),
                    Err(MapError::KeyNotFound) => ForwardEntry::Absent,
                    Err(_) => ForwardEntry::Unreadable,
                }
            })
        },
    )? && {
        // Read before the snapshot: an entry of a service published after
        // the snapshot is stamped at or after this.
        let snapshot = clock.now()?;
        let persistent = persistent_services(maps)?;
        sweep_table::<PersistKey, PersistValue>(
            maps,
            clock,
            "persist",
            opts,
            &mut pacer,
            &mut report.persist,
            |_, k, v, now| {
                let owner = PersistOwner::of(persistent.get(&k.svc_id).copied(), snapshot);
                if persist_expired(owner, cfg.hz, v.last_seen, now) {
                    Verdict::Expired
                } else {
                    Verdict::Live
                }
            },
        )?
    };
    report.complete = complete;
    report.busy = pacer.busy;
    report.elapsed = start.elapsed();
    Ok(report)
}

/// Service id -> persist_timeout_s, from the services map.
fn persistent_services(maps: &Maps) -> Result<BTreeMap<u32, u32>, DataplaneError> {
    let h: HashMap<&MapData, abi::SvcKey, abi::SvcValue> =
        HashMap::try_from(maps.get_ref("services")).map_err(map_err("services"))?;
    let mut out = BTreeMap::new();
    for r in h.iter() {
        let (_, v) = r.map_err(map_err("services"))?;
        out.insert(v.id, v.persist_timeout_s);
    }
    Ok(out)
}

// ------------------------------------------------------------ periodically

/// Running totals of a periodic sweeper, for metrics.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SweepTotals {
    pub sweeps: u64,
    pub failures: u64,
    /// Summed over all sweeps, in `TABLES` order.
    pub tables: [TableSweep; TABLES.len()],
    pub last: Option<SweepReport>,
}

impl SweepTotals {
    fn record(&mut self, r: &SweepReport) {
        self.sweeps += 1;
        for (i, (_, t)) in r.tables().into_iter().enumerate() {
            self.tables[i].add(t);
        }
        self.last = Some(r.clone());
    }
}

/// A thread that sweeps the maps pinned in `pin_dir` every `interval`
/// (measured from the end of one sweep to the start of the next), at a
/// lowered scheduling priority. Stopped and joined on drop.
pub struct PeriodicSweeper {
    stop: Arc<AtomicBool>,
    totals: Arc<Mutex<SweepTotals>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PeriodicSweeper {
    pub fn start(
        pin_dir: PathBuf,
        interval: Duration,
        mut opts: SweepOptions,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        opts.cancel = Some(stop.clone());
        let totals = Arc::new(Mutex::new(SweepTotals::default()));
        let (t_stop, t_totals) = (stop.clone(), totals.clone());
        let thread = std::thread::Builder::new()
            .name("ct-sweeper".into())
            .spawn(move || {
                // SAFETY: plain syscalls on this thread only (Linux nice
                // values are per thread).
                unsafe {
                    let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
                    libc::setpriority(libc::PRIO_PROCESS, tid, 10);
                }
                let mut maps = None;
                loop {
                    let deadline = Instant::now() + interval;
                    while !t_stop.load(Ordering::Relaxed) {
                        let left = deadline.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            break;
                        }
                        std::thread::park_timeout(left);
                    }
                    if t_stop.load(Ordering::Relaxed) {
                        return;
                    }
                    if maps.is_none() {
                        let opened = Maps::open_pinned(&pin_dir)
                            .and_then(|m| Ok((m, DataplaneClock::open_pinned(&pin_dir)?)));
                        match opened {
                            Ok(m) => maps = Some(m),
                            Err(e) => {
                                warn!("conntrack sweeper: opening {}: {e}", pin_dir.display());
                                t_totals.lock().expect("not poisoned").failures += 1;
                                continue;
                            }
                        }
                    }
                    let (m, clock) = maps.as_mut().expect("opened above");
                    match sweep(m, clock, &opts) {
                        Ok(r) if r.complete => {
                            debug!(
                                conntrack_scanned = r.conntrack.scanned,
                                conntrack_deleted = r.conntrack.deleted,
                                conntrack_held = r.conntrack.held,
                                persist_scanned = r.persist.scanned,
                                persist_deleted = r.persist.deleted,
                                changed = r.conntrack.changed + r.persist.changed,
                                elapsed_ms = r.elapsed.as_millis() as u64,
                                busy_ms = r.busy.as_millis() as u64,
                                "swept flow tables"
                            );
                            t_totals.lock().expect("not poisoned").record(&r);
                        }
                        Ok(_) => return,
                        Err(e) => {
                            warn!("conntrack sweeper: {e}");
                            t_totals.lock().expect("not poisoned").failures += 1;
                            // Reopen: the pins may have been replaced.
                            maps = None;
                        }
                    }
                }
            })?;
        Ok(Self {
            stop,
            totals,
            thread: Some(thread),
        })
    }

    pub fn totals(&self) -> SweepTotals {
        self.totals.lock().expect("not poisoned").clone()
    }

    /// A handle on the totals that outlives borrows of the sweeper (the
    /// metrics server holds one).
    pub fn totals_handle(&self) -> Arc<Mutex<SweepTotals>> {
        self.totals.clone()
    }
}

impl Drop for PeriodicSweeper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One second in jiffies, with the tick rate cfg() sets.
    const S: u64 = 1000;
    const TCP: u8 = 6;
    const UDP: u8 = 17;
    const ICMP: u8 = 1;

    fn cfg() -> DpConfig {
        DpConfig {
            tcp_syn_timeout_s: 60,
            tcp_established_timeout_s: 900,
            tcp_closing_timeout_s: 10,
            udp_timeout_s: 300,
            hz: S as u32,
            ..Default::default()
        }
    }

    #[test]
    fn ct_expiry_follows_the_data_plane() {
        let c = cfg();
        let now = 10_000 * S;
        // (proto, state, age in jiffies (negative: stamped after `now`), expired)
        let cases: &[(u8, u8, i64, bool)] = &[
            // TCP by state, just within and just past each timeout.
            (TCP, abi::CT_OPEN, 60 * S as i64, false),
            (TCP, abi::CT_OPEN, 60 * S as i64 + 1, true),
            (TCP, abi::CT_ESTABLISHED, 900 * S as i64, false),
            (TCP, abi::CT_ESTABLISHED, 900 * S as i64 + 1, true),
            (TCP, abi::CT_ESTABLISHED, 61 * S as i64, false),
            (TCP, abi::CT_CLOSING, 10 * S as i64, false),
            (TCP, abi::CT_CLOSING, 10 * S as i64 + 1, true),
            (TCP, abi::CT_CLOSING, 11 * S as i64, true),
            // An unknown state counts as OPEN (the C `else`).
            (TCP, 7, 61 * S as i64, true),
            (TCP, 7, 59 * S as i64, false),
            // Anything but TCP has the UDP timeout whatever its state, even
            // CLOSING (which only TCP reaches).
            (UDP, abi::CT_ESTABLISHED, 300 * S as i64, false),
            (UDP, abi::CT_ESTABLISHED, 300 * S as i64 + 1, true),
            (UDP, abi::CT_CLOSING, 11 * S as i64, false),
            (UDP, abi::CT_OPEN, 61 * S as i64, false),
            (ICMP, abi::CT_OPEN, 301 * S as i64, true),
            // The `now > last_seen` guard: a stamp from our own instant or
            // later (a refresh racing the clock read) is never expired.
            (TCP, abi::CT_CLOSING, 0, false),
            (UDP, abi::CT_ESTABLISHED, -1, false),
            (TCP, abi::CT_OPEN, -(1000 * S as i64), false),
        ];
        for &(proto, state, age, want) in cases {
            let last_seen = (now as i64 - age) as u64;
            assert_eq!(
                ct_expired(&c, proto, state, last_seen, now),
                want,
                "proto {proto} state {state} age {age}ns"
            );
        }
    }

    #[test]
    fn ct_timeouts_come_from_the_config() {
        let mut c = cfg();
        c.tcp_closing_timeout_s = 0;
        c.udp_timeout_s = u32::MAX;
        // A zero timeout: expired one tick later.
        assert!(!ct_expired(&c, TCP, abi::CT_CLOSING, 5, 5));
        assert!(ct_expired(&c, TCP, abi::CT_CLOSING, 5, 6));
        // The largest timeout does not overflow.
        assert_eq!(ct_timeout(&c, UDP, 0), u64::from(u32::MAX) * S);
        assert!(!ct_expired(&c, UDP, 0, 0, u64::from(u32::MAX) * S));
        assert!(ct_expired(&c, UDP, 0, 0, u64::from(u32::MAX) * S + 1));
        // Near the clock's end, no wrap-around either.
        assert!(!ct_expired(&c, TCP, abi::CT_OPEN, u64::MAX - 1, u64::MAX));
    }

    #[test]
    fn persist_expiry() {
        let now = 10_000 * S;
        let snap = now - 2 * S;
        let svc = |t| PersistOwner::of(Some(t), snap);
        // (owner, last_seen, expired)
        let cases: &[(PersistOwner, u64, bool)] = &[
            // select.h reuses an entry while now - last_seen <= timeout.
            (svc(300), now - 300 * S, false),
            (svc(300), now - 300 * S - 1, true),
            (svc(1), now - 2 * S, true),
            (svc(1), now, false),
            // Stamped after our clock reading (by a CPU a tick ahead): kept,
            // as select.h keeps it.
            (svc(1), now + 5 * S, false),
            // Timeout 0 or no service: the data plane never reads it;
            // deleted once older than the services snapshot.
            (PersistOwner::of(Some(0), snap), snap - 1, true),
            (PersistOwner::of(None, snap), snap - 1, true),
            (PersistOwner::of(None, snap), 0, true),
            (PersistOwner::of(None, snap), snap, false),
            (PersistOwner::of(None, snap), now, false),
        ];
        for &(owner, last_seen, want) in cases {
            assert_eq!(
                persist_expired(owner, S as u32, last_seen, now),
                want,
                "{owner:?} last_seen {last_seen}"
            );
        }
        assert_eq!(
            PersistOwner::of(Some(0), 7),
            PersistOwner::Unused { snapshot: 7 }
        );
    }

    const CLIENT: u32 = 0x0100_00c0; // 192.0.2.1 as __be32 on little endian
    const VIP: u32 = 0x0a71_00cb; // 203.0.113.10
    const BACKEND: u32 = 0x0b64_33c6; // 198.51.100.11
    const SNAT: u32 = 0x0364_33c6; // 198.51.100.3

    /// A FullNAT flow, client:40000 -> VIP:80 via SNAT:20000 to
    /// backend:8080: (forward key, forward entry, reply key, reply entry).
    fn fullnat(proto: u8) -> (FlowKey, CtValue, FlowKey, CtValue) {
        let fk = FlowKey {
            saddr: CLIENT,
            daddr: VIP,
            sport: 40000u16.to_be(),
            dport: 80u16.to_be(),
            proto,
            pad: [0; 3],
        };
        let fwd = CtValue {
            last_seen: 0,
            to_saddr: SNAT,
            to_daddr: BACKEND,
            to_sport: 20000u16.to_be(),
            to_dport: 8080u16.to_be(),
            backend_id: 3,
            backend_gen: 9,
            svc_id: 1,
            dir: abi::CT_FORWARD,
            state: abi::CT_ESTABLISHED,
            mode: abi::MODE_FULLNAT,
            ..Default::default()
        };
        let rk = fwd.other_key(proto);
        let reply = CtValue {
            to_saddr: VIP,
            to_daddr: CLIENT,
            to_sport: fk.dport,
            to_dport: fk.sport,
            dir: abi::CT_REPLY,
            ..fwd
        };
        (fk, fwd, rk, reply)
    }

    /// The same flow in NAT mode: the reply comes from the backend straight
    /// to the client's address and port.
    fn nat(proto: u8) -> (FlowKey, CtValue, FlowKey, CtValue) {
        let (fk, mut fwd, _, mut reply) = fullnat(proto);
        fwd.mode = abi::MODE_NAT;
        fwd.to_saddr = CLIENT;
        fwd.to_sport = fk.sport;
        reply.mode = abi::MODE_NAT;
        (fk, fwd, fwd.other_key(proto), reply)
    }

    #[test]
    fn a_reply_entry_leads_to_its_forward_entry() {
        for (fk, fwd, rk, reply) in [fullnat(TCP), nat(UDP)] {
            assert_eq!(reply.other_key(rk.proto), fk);
            assert_eq!(fwd.other_key(fk.proto), rk);
            assert!(reply_belongs_to(&rk, &reply, &fwd));
        }
        assert_eq!(nat(TCP).2.daddr, CLIENT, "a NAT reply goes to the client");
        let (_, fwd, rk, reply) = fullnat(TCP);
        // Another flow now holds that forward key, or this one moved.
        type Change = (&'static str, fn(&mut CtValue));
        let other: &[Change] = &[
            ("another SNAT port", |c| c.to_sport = 20001u16.to_be()),
            ("another SNAT address", |c| c.to_saddr = 0x0464_33c6),
            ("another backend", |c| c.backend_id = 4),
            ("another service", |c| c.svc_id = 2),
            ("another mode", |c| c.mode = abi::MODE_NAT),
            ("DR", |c| c.mode = abi::MODE_DR),
            ("a reply entry", |c| c.dir = abi::CT_REPLY),
        ];
        for (what, f) in other {
            let mut c = fwd;
            f(&mut c);
            assert!(!reply_belongs_to(&rk, &reply, &c), "{what}");
        }
        let (_, fwd, mut rk, reply) = nat(TCP);
        rk.dport = 1u16.to_be();
        assert!(
            !reply_belongs_to(&rk, &reply, &fwd),
            "NAT reply to another port"
        );
    }

    #[test]
    fn ct_verdicts() {
        let c = cfg();
        let now = 10_000 * S;
        let fresh = now - S;
        let old = now - 1000 * S; // past every timeout in cfg()
        let closing_old = now - 11 * S; // past the closing timeout only
        // (mode, reply stamp, reply state, forward: None or (stamp, state), verdict)
        type Case = (u8, u64, u8, Option<(u64, u8)>, Verdict);
        let cases: &[Case] = &[
            (
                abi::MODE_FULLNAT,
                fresh,
                abi::CT_ESTABLISHED,
                None,
                Verdict::Live,
            ),
            (
                abi::MODE_FULLNAT,
                old,
                abi::CT_ESTABLISHED,
                None,
                Verdict::Expired,
            ),
            // Flow alive: the reply entry stays whatever its own stamp.
            (
                abi::MODE_NAT,
                old,
                abi::CT_ESTABLISHED,
                Some((fresh, abi::CT_ESTABLISHED)),
                Verdict::Held,
            ),
            (
                abi::MODE_FULLNAT,
                old,
                abi::CT_ESTABLISHED,
                Some((fresh, abi::CT_OPEN)),
                Verdict::Held,
            ),
            // Flow expired too: both go.
            (
                abi::MODE_NAT,
                old,
                abi::CT_ESTABLISHED,
                Some((old, abi::CT_ESTABLISHED)),
                Verdict::Expired,
            ),
            // The flow's own state decides its timeout: closing for 11 s
            // is expired, established for 11 s is not.
            (
                abi::MODE_FULLNAT,
                old,
                abi::CT_ESTABLISHED,
                Some((closing_old, abi::CT_CLOSING)),
                Verdict::Expired,
            ),
            (
                abi::MODE_FULLNAT,
                old,
                abi::CT_ESTABLISHED,
                Some((closing_old, abi::CT_ESTABLISHED)),
                Verdict::Held,
            ),
            // The reply entry's own state too.
            (
                abi::MODE_NAT,
                closing_old,
                abi::CT_CLOSING,
                None,
                Verdict::Expired,
            ),
            (
                abi::MODE_NAT,
                closing_old,
                abi::CT_ESTABLISHED,
                None,
                Verdict::Live,
            ),
            // Stamped after our clock reading.
            (
                abi::MODE_FULLNAT,
                now + S,
                abi::CT_CLOSING,
                None,
                Verdict::Live,
            ),
        ];
        for &(mode, stamp, state, forward, want) in cases {
            let (_, mut fwd, rk, mut reply) = if mode == abi::MODE_NAT {
                nat(TCP)
            } else {
                fullnat(TCP)
            };
            reply.last_seen = stamp;
            reply.state = state;
            let forward = forward.map(|(s, st)| {
                fwd.last_seen = s;
                fwd.state = st;
                fwd
            });
            let read = |fk: &FlowKey| {
                assert_eq!(*fk, reply.other_key(TCP), "asked for the forward key");
                forward.map_or(ForwardEntry::Absent, ForwardEntry::Found)
            };
            assert_eq!(
                ct_verdict(&c, &rk, &reply, now, read),
                want,
                "mode {mode} reply ({stamp}, {state}) forward {forward:?}"
            );
        }
        // A live forward entry of another flow on that key does not hold it.
        let (_, mut fwd, rk, mut reply) = fullnat(UDP);
        reply.last_seen = old;
        fwd.last_seen = fresh;
        fwd.to_sport = 20001u16.to_be();
        assert_eq!(
            ct_verdict(&c, &rk, &reply, now, |_| ForwardEntry::Found(fwd)),
            Verdict::Expired
        );
        // An unreadable forward entry keeps the reply entry until next time.
        assert_eq!(
            ct_verdict(&c, &rk, &reply, now, |_| ForwardEntry::Unreadable),
            Verdict::Held
        );
        // A forward entry goes by its own stamp alone; nothing else is read.
        let (fk, mut fwd, _, _) = fullnat(TCP);
        let never = |_: &FlowKey| -> ForwardEntry { panic!("no other entry is read") };
        fwd.last_seen = old;
        assert_eq!(ct_verdict(&c, &fk, &fwd, now, never), Verdict::Expired);
        fwd.last_seen = fresh;
        assert_eq!(ct_verdict(&c, &fk, &fwd, now, never), Verdict::Live);
        // Nor for a live reply entry.
        let (_, _, rk, mut reply) = fullnat(TCP);
        reply.last_seen = fresh;
        assert_eq!(ct_verdict(&c, &rk, &reply, now, never), Verdict::Live);
    }

    #[test]
    fn pacer_bounds_the_cpu_share() {
        let mut p = Pacer::new(0.5);
        let t = Instant::now();
        p.chunk_start = Instant::now();
        std::thread::sleep(Duration::from_millis(20));
        p.chunk_done();
        // 20 ms of "work" at 50%: at least 20 ms of pause.
        assert!(
            t.elapsed() >= Duration::from_millis(40),
            "{:?}",
            t.elapsed()
        );
        assert!(p.busy >= Duration::from_millis(20));
        for bad in [0.0, -1.0, f64::NAN, 7.0] {
            assert_eq!(Pacer::new(bad).max_cpu, 1.0, "{bad}");
        }
    }

    /// A pin directory of the test's own, removed on drop.
    struct Pins(PathBuf);

    impl Drop for Pins {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// The re-read before the delete: entries the data plane refreshed,
    /// replaced or deleted after the sweep read them are left alone.
    #[test]
    fn entries_changed_after_the_read_are_not_deleted() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root (BPF maps)");
            return;
        }
        use crate::dataplane::{Director, LoadOptions, NodeSettings};
        use aya::maps::Map;
        let pins = Pins(
            PathBuf::from(crate::dataplane::BPFFS_ROOT)
                .join(format!("ballast-unit-sweeper-{}", std::process::id())),
        );
        let _ = std::fs::remove_dir_all(&pins.0);
        let opts = LoadOptions {
            interface: None,
            pin_dir: pins.0.clone(),
            ring_slots: 251,
            conntrack_entries: Some(1024),
            mode: Default::default(),
            netns: None,
        };
        let mut d = Director::open(&opts, &NodeSettings::default(), 251).expect("open");
        let clock = d.dp.clock().expect("clock");
        let cfg = d.dp.maps.read_config().expect("config");
        let s = u64::from(cfg.hz);
        let now = clock.now().expect("now");
        // Closed 100 s ago: expired (closing timeout 10 s).
        let stale = CtValue {
            last_seen: now - 100 * s,
            state: abi::CT_CLOSING,
            backend_id: 1,
            ..Default::default()
        };
        let k = |port: u16| FlowKey {
            saddr: 1,
            daddr: 2,
            sport: port.to_be(),
            dport: 80u16.to_be(),
            proto: TCP,
            pad: [0; 3],
        };
        let (unchanged, refreshed, gone, replaced) = (k(1), k(2), k(3), k(4));
        {
            let mut m = d.dp.maps.conntrack().unwrap();
            for key in [unchanged, refreshed, gone, replaced] {
                m.insert(key, stale, 0).unwrap();
            }
        }
        // Another handle on the map plays the data plane, acting between the
        // sweep's read and its delete.
        let mut dp_map =
            Map::from_map_data(MapData::from_pin(pins.0.join("conntrack")).unwrap()).unwrap();
        let mut dp: HashMap<&mut MapData, FlowKey, CtValue> =
            HashMap::try_from(&mut dp_map).unwrap();
        let mut out = TableSweep::default();
        let complete = sweep_table::<FlowKey, CtValue>(
            &mut d.dp.maps,
            &clock,
            "conntrack",
            &SweepOptions::unpaced(),
            &mut Pacer::new(1.0),
            &mut out,
            |_, key, v, now| {
                assert!(ct_expired(&cfg, TCP, v.state, v.last_seen, now));
                if *key == refreshed {
                    let fresh = CtValue {
                        last_seen: now,
                        ..stale
                    };
                    dp.insert(key, fresh, 0).unwrap();
                } else if *key == gone {
                    dp.remove(key).unwrap();
                } else if *key == replaced {
                    // A new flow on the same tuple (its stamp from a CPU
                    // whose clock read came a tick earlier).
                    let new = CtValue {
                        backend_id: 2,
                        state: abi::CT_OPEN,
                        ..stale
                    };
                    dp.insert(key, new, 0).unwrap();
                }
                Verdict::Expired
            },
        )
        .unwrap();
        assert!(complete);
        assert_eq!(
            (out.scanned, out.expired, out.deleted, out.changed),
            (4, 4, 1, 3),
            "{out:?}"
        );
        let m = d.dp.maps.conntrack().unwrap();
        assert!(
            m.get(&unchanged, 0).is_err(),
            "unchanged expired entry deleted"
        );
        assert!(
            m.get(&refreshed, 0).unwrap().last_seen >= now,
            "refreshed entry kept"
        );
        assert!(m.get(&gone, 0).is_err());
        assert_eq!(m.get(&replaced, 0).unwrap().backend_id, 2);
    }
}

//! One sweep: each table walked in batched chunks, every entry judged by
//! the rules (rules.rs), the expired ones deleted if unchanged (delete.rs),
//! paced between chunks (pacer.rs).
use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use aya::Pod;
use aya::maps::{HashMap, MapData, MapError};

use super::delete::delete_if_unchanged;
use super::pacer::Pacer;
use super::report::{SweepReport, TableSweep};
use super::rules::{ForwardEntry, PersistOwner, Verdict, ct_verdict, persist_expired};
use super::snat::SnatCount;
use crate::abi::{self, CtValue, FlowKey, PersistKey, PersistValue};
use crate::dataplane::batch::BatchReader;
use crate::dataplane::clock::DataplaneClock;
use crate::dataplane::error::DataplaneError;
use crate::dataplane::maps::{Maps, hash_map_data, map_err};

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

/// Walks one table in chunks: `judge` decides each entry's fate (it may
/// read other maps), expired entries are deleted if unchanged. `pacer`
/// spans the tables of one sweep.
pub fn sweep_table<K, V>(
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
    pacer.start_chunk();
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
    let mut snat = SnatCount::default();

    let complete = sweep_table::<FlowKey, CtValue>(
        maps,
        clock,
        "conntrack",
        opts,
        &mut pacer,
        &mut report.conntrack,
        |maps, k, v, now| {
            let verdict = ct_verdict(&cfg, k, v, now, |fk| {
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
            });
            snat.observe(k, v, verdict);
            verdict
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
    report.snat_in_use = snat.in_use();
    report.busy = pacer.busy();
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

//! Sweeping periodically: a thread of its own, at a lowered priority, with
//! running totals for metrics.
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::{debug, warn};

use super::report::{SweepReport, TABLES, TableSweep};
use super::walk::{SweepOptions, sweep};
use crate::dataplane::clock::DataplaneClock;
use crate::dataplane::maps::Maps;

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

//! The prober: one tokio task per probe target, each probing on its own
//! phase within its interval, at most [`MAX_PROBES_IN_FLIGHT`] at a time.
//! Verdict changes are announced on a watch channel so the owner re-applies
//! the data plane; the owner reads the verdicts with [`HealthChecker::verdicts`].

use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ballast_api::HealthCheckSpec;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{info, warn};

use super::probe;
use super::state::{Health, Transition};

/// Probes in flight at once, over every target. Each holds a socket: the
/// bound keeps the agent far below the usual 1024-descriptor soft limit and
/// a burst of connects off the backends, while leaving room for thousands of
/// probes a second when backends answer in milliseconds (10k backends at a
/// 5 s interval need 2k/s). When backends hang until their timeout, probes
/// wait for a permit, so intervals stretch instead of sockets piling up.
pub const MAX_PROBES_IN_FLIGHT: usize = 256;

/// What is probed: a backend's address and target port, with the check.
/// The check is part of the key so that two services sharing a backend and
/// a check probe it once, while different checks keep separate verdicts.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    pub addr: SocketAddr,
    pub check: HealthCheckSpec,
}

/// The verdict of every target currently probed.
pub type Verdicts = HashMap<Target, Health>;

/// Where in its interval a target probes: a deterministic offset from a
/// hash of the target, so 10k targets sharing one interval spread evenly
/// over it instead of probing all at once, and a restarted agent probes on
/// the same schedule.
pub fn phase_offset(target: &Target) -> Duration {
    let interval = target.check.interval.as_nanos() as u64;
    if interval == 0 {
        return Duration::ZERO;
    }
    // DefaultHasher::new() has fixed keys: the same offset in every process.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    target.hash(&mut h);
    Duration::from_nanos(h.finish() % interval)
}

struct Shared {
    verdicts: Mutex<Verdicts>,
    /// Bumped on every UP/DOWN transition.
    changes: watch::Sender<u64>,
    permits: Semaphore,
}

/// Probes the targets it is given until they are withdrawn or it is dropped.
/// Needs a tokio runtime when targets are set.
pub struct HealthChecker {
    shared: Arc<Shared>,
    tasks: HashMap<Target, JoinHandle<()>>,
    /// Verdicts a previous agent left, by (backend, check as `describe`
    /// names it): the first targets set start from them (see [`Self::seed`]).
    known: HashMap<(SocketAddr, String), Health>,
}

impl Default for HealthChecker {
    fn default() -> Self {
        Self::new()
    }
}

impl HealthChecker {
    pub fn new() -> Self {
        Self::with_concurrency(MAX_PROBES_IN_FLIGHT)
    }

    pub fn with_concurrency(max_in_flight: usize) -> Self {
        HealthChecker {
            shared: Arc::new(Shared {
                verdicts: Mutex::new(HashMap::new()),
                changes: watch::channel(0).0,
                permits: Semaphore::new(max_in_flight.max(1)),
            }),
            tasks: HashMap::new(),
            known: HashMap::new(),
        }
    }

    /// The last known verdicts of a previous agent on this interface (read
    /// back from its inventory), for [`Self::adopt_known`] to give the
    /// first targets after the restart (UP or DOWN, with their transitions
    /// and last failure; the counts of the probes in a row start again), so
    /// that a restart sends no new flow to a backend known to be down. A
    /// target it never probed starts UP, as always; the first
    /// [`Self::set_targets`] drops what was not adopted.
    pub fn seed(&mut self, known: HashMap<(SocketAddr, String), Health>) {
        self.known = known;
    }

    /// Whether seeded verdicts wait for their targets.
    pub fn has_known(&self) -> bool {
        !self.known.is_empty()
    }

    /// Gives each of `targets` that the previous agent knew its verdict
    /// now, before its probing starts: so that the apply that introduces
    /// the targets already programs a DOWN backend out (no window in which
    /// it gets new flows). The rest of the seed is dropped: only the first
    /// targets after a restart are the previous agent's.
    pub fn adopt_known<'a>(&mut self, targets: impl IntoIterator<Item = &'a Target>) {
        let known = std::mem::take(&mut self.known);
        let mut verdicts = self.shared.verdicts.lock().expect("not poisoned");
        for t in targets {
            if let Some(h) = known.get(&(t.addr, super::apply::describe(&t.check))) {
                verdicts.entry(t.clone()).or_insert_with(|| Health {
                    consecutive_successes: 0,
                    consecutive_failures: 0,
                    ..h.clone()
                });
            }
        }
    }

    /// Probes exactly `wanted` from now on. A target already probed keeps
    /// its verdict and schedule (a reload that keeps a backend keeps its
    /// health); a new one starts UP; one no longer wanted stops and is
    /// forgotten.
    pub fn set_targets(&mut self, wanted: BTreeSet<Target>) {
        let mut verdicts = self.shared.verdicts.lock().expect("not poisoned");
        self.tasks.retain(|t, task| {
            let keep = wanted.contains(t);
            if !keep {
                task.abort();
                // Removed under the lock the task records under, and the
                // task only updates an existing entry: an aborted task
                // finishing its last probe cannot bring it back.
                verdicts.remove(t);
            }
            keep
        });
        // Only the first targets after a restart are the previous agent's.
        self.known.clear();
        for t in wanted {
            if self.tasks.contains_key(&t) {
                continue;
            }
            // A verdict adopted ahead of the task stays; else UP.
            let start = verdicts.remove(&t).unwrap_or_default();
            verdicts.insert(t.clone(), start);
            let task = tokio::spawn(probe_forever(t.clone(), self.shared.clone()));
            self.tasks.insert(t, task);
        }
    }

    /// Fires (the value is a change count) after every UP/DOWN transition.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.changes.subscribe()
    }

    pub fn verdicts(&self) -> Verdicts {
        self.shared.verdicts.lock().expect("not poisoned").clone()
    }

    /// How many targets are probed.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}

impl Drop for HealthChecker {
    fn drop(&mut self) {
        for task in self.tasks.values() {
            task.abort();
        }
    }
}

async fn probe_forever(target: Target, shared: Arc<Shared>) {
    let interval = target.check.interval.max(Duration::from_millis(1));
    let mut ticks = tokio::time::interval_at(Instant::now() + phase_offset(&target), interval);
    // A probe delayed by the concurrency bound shifts the schedule rather
    // than being followed by a burst of catch-up probes.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let result = {
            let Ok(_permit) = shared.permits.acquire().await else {
                return;
            };
            // The timeout starts once the probe may run, not while it waits.
            probe::run(target.addr, &target.check.probe, target.check.timeout).await
        };
        let transition = {
            let mut verdicts = shared.verdicts.lock().expect("not poisoned");
            let Some(h) = verdicts.get_mut(&target) else {
                return; // withdrawn
            };
            h.record(
                result.map_err(|e| e.to_string()),
                target.check.healthy_threshold,
                target.check.unhealthy_threshold,
            )
            .map(|t| (t, h.clone()))
        };
        match transition {
            Some((Transition::WentDown, h)) => warn!(
                backend = %target.addr,
                failures = h.consecutive_failures,
                reason = h.last_failure.as_deref().unwrap_or(""),
                "health check: backend DOWN, no new flows"
            ),
            Some((Transition::CameUp, h)) => info!(
                backend = %target.addr,
                successes = h.consecutive_successes,
                "health check: backend UP, receives new flows again"
            ),
            None => continue,
        }
        shared.changes.send_modify(|n| *n += 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ballast_api::Probe;

    fn target(port: u16, interval_ms: u64) -> Target {
        Target {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            check: HealthCheckSpec {
                probe: Probe::Tcp,
                interval: Duration::from_millis(interval_ms),
                timeout: Duration::from_millis(interval_ms / 2),
                healthy_threshold: 1,
                unhealthy_threshold: 1,
            },
        }
    }

    #[test]
    fn phases_are_deterministic_and_spread() {
        let a = target(8080, 5000);
        assert_eq!(phase_offset(&a), phase_offset(&a.clone()));
        // 10k targets over 10 slices of the interval: every slice gets a
        // fair share (a herd would put them all in one).
        let mut slices = [0usize; 10];
        for i in 0..10_000u32 {
            let t = Target {
                addr: SocketAddr::from((std::net::Ipv4Addr::from(0xC633_6400 + i), 80)),
                ..a.clone()
            };
            let off = phase_offset(&t);
            assert!(off < t.check.interval);
            slices[(off.as_millis() / 500) as usize] += 1;
        }
        for (i, n) in slices.iter().enumerate() {
            assert!((800..=1200).contains(n), "slice {i} has {n} of 10000");
        }
    }

    #[tokio::test]
    async fn probes_in_flight_are_bounded() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::AsyncReadExt;
        // A server that accepts and never answers: every HTTP probe holds
        // its connection until its timeout. Counted server-side.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (open, max, total) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
        );
        let counters = (open.clone(), max.clone(), total.clone());
        tokio::spawn(async move {
            let (open, max, total) = counters;
            while let Ok((mut s, _)) = l.accept().await {
                let now = open.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(now, Ordering::SeqCst);
                total.fetch_add(1, Ordering::SeqCst);
                let open = open.clone();
                tokio::spawn(async move {
                    let mut b = [0u8; 256];
                    while matches!(s.read(&mut b).await, Ok(n) if n > 0) {}
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        // 8 targets (one listener, 8 paths), each holding a connection 75%
        // of its interval: unbounded, about 6 would be open at once.
        let targets: BTreeSet<Target> = (0..8)
            .map(|i| Target {
                addr,
                check: HealthCheckSpec {
                    probe: Probe::Http {
                        path: format!("/{i}"),
                        expect_status: 200,
                    },
                    interval: Duration::from_millis(200),
                    timeout: Duration::from_millis(150),
                    healthy_threshold: 1,
                    unhealthy_threshold: 1,
                },
            })
            .collect();
        let mut checker = HealthChecker::with_concurrency(2);
        checker.set_targets(targets.clone());
        let deadline = Instant::now() + Duration::from_secs(10);
        while total.load(Ordering::SeqCst) < 24 {
            assert!(Instant::now() < deadline, "probes stalled");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // One more than the bound: the server may accept the next probe
        // before it reads the FIN of the one that just timed out.
        let seen = max.load(Ordering::SeqCst);
        assert!(seen <= 3, "{seen} probes open at once with 2 permits");
        let verdicts = checker.verdicts();
        for t in &targets {
            assert_eq!(
                verdicts[t].last_failure.as_deref(),
                Some("timed out after 150ms"),
                "every target probed in turn"
            );
        }
    }

    #[tokio::test]
    async fn the_first_targets_start_from_the_previous_agents_verdicts() {
        let (down, fresh, later) = (target(1, 60_000), target(2, 60_000), target(3, 60_000));
        let mut checker = HealthChecker::new();
        let known = Health {
            up: false,
            consecutive_successes: 0,
            consecutive_failures: 7,
            last_failure: Some("connect: connection refused".into()),
            transitions: 3,
        };
        checker.seed(HashMap::from([
            ((down.addr, "tcp".to_string()), known.clone()),
            // Known but checked differently now: not the same verdict.
            ((fresh.addr, "http GET / -> 200".to_string()), known.clone()),
            ((later.addr, "tcp".to_string()), known.clone()),
        ]));
        // As the agent's first apply does: adopted, then probed.
        checker.adopt_known(&[down.clone(), fresh.clone()]);
        checker.set_targets([down.clone(), fresh.clone()].into());
        let v = checker.verdicts();
        assert_eq!(
            v[&down],
            Health {
                consecutive_failures: 0,
                ..known
            },
            "DOWN as it was, counting probes in a row afresh"
        );
        assert_eq!(v[&fresh], Health::new(), "another check: starts UP");
        // Only the first targets are the previous agent's: one added later
        // starts UP, as every new backend does.
        checker.set_targets([down.clone(), fresh.clone(), later.clone()].into());
        assert_eq!(checker.verdicts()[&later], Health::new());
    }

    #[tokio::test]
    async fn detects_a_closed_listener_and_recovers() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = target(port, 50);
        let mut checker = HealthChecker::new();
        let mut changes = checker.subscribe();
        checker.set_targets([t.clone()].into());
        assert!(checker.verdicts()[&t].up, "starts up");

        drop(l);
        tokio::time::timeout(Duration::from_secs(5), changes.changed())
            .await
            .expect("a transition")
            .unwrap();
        let h = checker.verdicts()[&t].clone();
        assert!(!h.up);
        assert_eq!(
            h.last_failure.as_deref(),
            Some("connect: connection refused")
        );
        assert_eq!(h.transitions, 1);

        let _l = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        tokio::time::timeout(Duration::from_secs(5), changes.changed())
            .await
            .expect("a transition")
            .unwrap();
        let h = checker.verdicts()[&t].clone();
        assert!(h.up);
        assert_eq!(h.transitions, 2);

        // Kept across a new target set that still holds it; forgotten when
        // withdrawn.
        let other = target(port, 60);
        checker.set_targets([t.clone(), other.clone()].into());
        assert_eq!(checker.verdicts()[&t].transitions, 2);
        assert_eq!(checker.len(), 2);
        checker.set_targets([other.clone()].into());
        assert!(!checker.verdicts().contains_key(&t));
        assert_eq!(checker.len(), 1);
    }
}

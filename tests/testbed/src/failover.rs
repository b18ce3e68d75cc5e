//! A client that opens a connection every few milliseconds and records
//! which succeeded: the gap a failover leaves is the longest stretch
//! between two successful connections.
use std::net::{SocketAddrV4, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::netns::{NetnsThread, spawn_in_netns};

/// Attempts in flight at once: a connection to a dead MAC waits its whole
/// timeout, and attempts must go on starting every `every` meanwhile.
const WORKERS: usize = 24;

/// One connection attempt: when it started and whether it connected.
#[derive(Clone, Copy, Debug)]
pub struct Attempt {
    pub at: Instant,
    pub ok: bool,
}

pub struct Prober {
    stop: Arc<AtomicBool>,
    attempts: Arc<Mutex<Vec<Attempt>>>,
    workers: Vec<NetnsThread<()>>,
}

impl Prober {
    /// From namespace `ns`, a TCP connection to `target` every `every`,
    /// each given `timeout` to connect.
    pub fn start(
        ns: &str,
        target: SocketAddrV4,
        every: Duration,
        timeout: Duration,
    ) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let next = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let mut workers = Vec::new();
        for _ in 0..WORKERS {
            let (stop, attempts, next) = (stop.clone(), attempts.clone(), next.clone());
            workers.push(spawn_in_netns(ns, move || {
                while !stop.load(Ordering::SeqCst) {
                    let k = next.fetch_add(1, Ordering::SeqCst);
                    let at = start + every * k as u32;
                    if let Some(wait) = at.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let ok = TcpStream::connect_timeout(&target.into(), timeout).is_ok();
                    attempts.lock().unwrap().push(Attempt { at, ok });
                }
            })?);
        }
        Ok(Prober {
            stop,
            attempts,
            workers,
        })
    }

    /// The attempts so far, in start order.
    pub fn attempts(&self) -> Vec<Attempt> {
        let mut v = self.attempts.lock().unwrap().clone();
        v.sort_by_key(|a| a.at);
        v
    }

    pub fn stop(mut self) -> Vec<Attempt> {
        self.halt();
        self.attempts()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The longest time between two successful attempts that started at or
/// after `from` (the last success before `from` opens the first stretch),
/// and how many attempts failed in that window. None without a success
/// after `from`.
pub fn longest_gap(attempts: &[Attempt], from: Instant) -> Option<(Duration, usize)> {
    let mut last_ok = attempts.iter().rev().find(|a| a.at < from && a.ok)?.at;
    let mut longest = Duration::ZERO;
    let mut failed = 0;
    let mut any = false;
    for a in attempts.iter().filter(|a| a.at >= from) {
        if a.ok {
            longest = longest.max(a.at - last_ok);
            last_ok = a.at;
            any = true;
        } else {
            failed += 1;
        }
    }
    any.then_some((longest, failed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gap_spans_the_failures() {
        let t0 = Instant::now();
        let at = |ms: u64, ok: bool| Attempt {
            at: t0 + Duration::from_millis(ms),
            ok,
        };
        let a = [
            at(0, true),
            at(10, true),
            at(20, false),
            at(30, false),
            at(40, true),
            at(50, true),
        ];
        let from = t0 + Duration::from_millis(15);
        assert_eq!(longest_gap(&a, from), Some((Duration::from_millis(30), 2)));
        assert_eq!(longest_gap(&a[..4], from), None, "no success after");
    }
}

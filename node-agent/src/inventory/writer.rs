//! The inventory off the apply path. At 10k services it is 3.6 MB of JSON:
//! writing it on every version would cost each one-endpoint change more
//! than the change itself. Instead the agent marks it stale when a version
//! (or a health verdict) changed what it shows, and writes it
//! - at once when the last write is older than the interval (a lone
//!   change shows in `stats` as soon as it is applied),
//! - else once the interval since the last write has passed, with the
//!   latest state (a burst of changes costs one write per interval),
//! - and at shutdown, if still stale.
//!
//! So `stats` and `/metrics` name services as of at most one interval ago
//! ([`INTERVAL`]). The file is serialized and written on a thread of its
//! own ([`Writer`]), latest wins: a write still running when the next is
//! handed over is followed by that one only.
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::warn;

use super::InventoryService;

/// The longest `stats` and `/metrics` lag behind an applied change.
pub const INTERVAL: Duration = Duration::from_millis(500);

/// When the stale inventory is due (pure: the caller brings the clock).
#[derive(Debug)]
pub struct Coalescer {
    every: Duration,
    last: Option<Instant>,
    stale: bool,
}

impl Coalescer {
    pub fn new(every: Duration) -> Self {
        Coalescer {
            every,
            last: None,
            stale: false,
        }
    }

    /// What the inventory shows changed.
    pub fn changed(&mut self) {
        self.stale = true;
    }

    pub fn is_stale(&self) -> bool {
        self.stale
    }

    /// When the stale inventory is to be written (None: it is not stale):
    /// `now` if the last write is an interval old (or there was none).
    pub fn due(&self, now: Instant) -> Option<Instant> {
        self.stale.then(|| match self.last {
            Some(last) => (last + self.every).max(now),
            None => now,
        })
    }

    /// Whether to write at `now`; if so, the write is counted as done.
    pub fn take(&mut self, now: Instant) -> bool {
        if self.due(now).is_some_and(|at| at <= now) {
            self.stale = false;
            self.last = Some(now);
            true
        } else {
            false
        }
    }

    /// A write made regardless of the interval (shutdown, an explicit
    /// flush).
    pub fn written(&mut self, now: Instant) {
        self.stale = false;
        self.last = Some(now);
    }
}

/// Where inventories go (the file; a recorder in tests).
pub trait Sink: Send + 'static {
    fn write(&mut self, inv: &[InventoryService]) -> std::io::Result<()>;
}

#[derive(Default)]
struct Slot {
    next: Option<Vec<InventoryService>>,
    busy: bool,
    closed: bool,
}

type Shared = Arc<(Mutex<Slot>, Condvar)>;

/// A thread writing the latest inventory handed to it.
pub struct Writer {
    shared: Shared,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    pub fn start(mut sink: impl Sink) -> Self {
        let shared: Shared = Arc::default();
        let theirs = shared.clone();
        let thread = std::thread::Builder::new()
            .name("inventory".into())
            .spawn(move || {
                let (lock, wake) = &*theirs;
                let mut slot = lock.lock().expect("not poisoned");
                loop {
                    if let Some(inv) = slot.next.take() {
                        slot.busy = true;
                        drop(slot);
                        if let Err(e) = sink.write(&inv) {
                            warn!("writing the inventory: {e}");
                        }
                        slot = lock.lock().expect("not poisoned");
                        slot.busy = false;
                        wake.notify_all();
                    } else if slot.closed {
                        return;
                    } else {
                        slot = wake.wait(slot).expect("not poisoned");
                    }
                }
            })
            .expect("spawning the inventory writer");
        Writer {
            shared,
            thread: Some(thread),
        }
    }

    /// Hands `inv` over; one not written yet is replaced.
    pub fn write(&self, inv: Vec<InventoryService>) {
        let (lock, wake) = &*self.shared;
        lock.lock().expect("not poisoned").next = Some(inv);
        wake.notify_all();
    }

    /// Waits until everything handed over is written.
    pub fn flush(&self) {
        let (lock, wake) = &*self.shared;
        let mut slot = lock.lock().expect("not poisoned");
        while slot.next.is_some() || slot.busy {
            slot = wake.wait(slot).expect("not poisoned");
        }
    }
}

impl Drop for Writer {
    /// Writes what was handed over, then stops the thread.
    fn drop(&mut self) {
        let (lock, wake) = &*self.shared;
        lock.lock().expect("not poisoned").closed = true;
        wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests;

//! Freeing what an apply no longer needs, off the apply path. A whole
//! version handed to [`super::Agent::apply`] is compared with what is held
//! and then dropped; at 100k services, freeing its ~300k allocations cost
//! about as much as the comparison itself (~15 ms), all of it between the
//! change and its report. The data plane is programmed before the free
//! either way; this only stops the caller from waiting for it.
use std::sync::Mutex;
use std::sync::mpsc::{self, Sender};

type Retired = Box<dyn Send>;

static RETIRED: Mutex<Option<Sender<Retired>>> = Mutex::new(None);

/// Drops `value` on the retiring thread (started on first use); inline
/// when that thread cannot be started or has gone.
pub fn drop_later<T: Send + 'static>(value: T) {
    let mut value: Retired = Box::new(value);
    let mut sender = RETIRED.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..2 {
        let tx = match sender.as_ref() {
            Some(tx) => tx.clone(),
            None => match start() {
                Some(tx) => sender.insert(tx).clone(),
                None => return,
            },
        };
        match tx.send(value) {
            Ok(()) => return,
            // The thread has gone (it panicked on a drop): start another.
            Err(mpsc::SendError(v)) => {
                value = v;
                *sender = None;
            }
        }
    }
}

fn start() -> Option<Sender<Retired>> {
    let (tx, rx) = mpsc::channel::<Retired>();
    std::thread::Builder::new()
        .name("ballast-retire".into())
        .spawn(move || {
            for retired in rx {
                drop(retired);
            }
        })
        .ok()?;
    Some(tx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    #[test]
    fn values_are_dropped_on_another_thread() {
        struct Noted(Arc<Mutex<Option<std::thread::ThreadId>>>);
        impl Drop for Noted {
            fn drop(&mut self) {
                *self.0.lock().unwrap() = Some(std::thread::current().id());
            }
        }
        let seen = Arc::new(Mutex::new(None));
        drop_later(Noted(seen.clone()));
        let deadline = Instant::now() + Duration::from_secs(5);
        let dropper = loop {
            if let Some(id) = *seen.lock().unwrap() {
                break id;
            }
            assert!(Instant::now() < deadline, "never dropped");
            std::thread::sleep(Duration::from_millis(1));
        };
        assert_ne!(dropper, std::thread::current().id());
    }
}

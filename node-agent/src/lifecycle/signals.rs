//! Signals handled from the agent's first moment. Until a handler is
//! installed, SIGHUP's default action kills the process without a word, and
//! opening the data plane takes seconds (clock measurement, the verifier):
//! so the streams are registered before anything slow and handed to the
//! code that runs later, and the thread that opens the data plane blocks
//! them, so that the verifier is never interrupted (it gives up with EAGAIN
//! when a signal is pending for its thread).
use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
use tokio::signal::unix::{SignalKind, signal};

/// SIGTERM and SIGINT: stop.
pub struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Waits for the next stop signal; returns its name.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// The agent's signal streams. Signals arriving before anyone waits on a
/// stream are kept (one per kind) and seen at the next `recv`.
pub struct Signals {
    /// SIGHUP: reload.
    pub hup: tokio::signal::unix::Signal,
    pub stop: StopSignals,
}

impl Signals {
    /// Installs the handlers. Must run inside a tokio runtime.
    pub fn register() -> std::io::Result<Signals> {
        Ok(Signals {
            hup: signal(SignalKind::hangup())?,
            stop: StopSignals {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            },
        })
    }
}

/// Blocks SIGHUP, SIGTERM, SIGINT and SIGCHLD for the calling thread (the
/// threads it spawns inherit the mask; std resets it in child processes),
/// so that the kernel delivers them to the runtime's threads instead.
pub fn block_in_this_thread() -> nix::Result<()> {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGHUP,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGCHLD,
    ] {
        set.add(s);
    }
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
}

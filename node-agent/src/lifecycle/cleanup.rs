//! `ballast-agent cleanup`: detach an interface's data plane and remove its
//! pins and /run state, refusing while an agent runs on it (pulling the
//! data plane from under a running agent is never what a user wants), and
//! removing what older agents left at `<pin root>/<interface>`.
use std::path::{Path, PathBuf};

use crate::dataplane::loader;
use crate::lifecycle::identity::{self, IdentityError, Interface};
use crate::lifecycle::lock::{AgentLock, LockError};

#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(
        "interface {interface}: a ballast-agent ({}) is running on it; stop it first (cleanup would pull the data plane from under it)",
        pid.map_or_else(|| "PID not yet written".to_string(), |p| format!("PID {p}"))
    )]
    AgentRunning { interface: String, pid: Option<u32> },
    #[error("interface {interface}: {source}")]
    Lock {
        interface: String,
        source: LockError,
    },
    #[error("interface {interface}: removing {path}: {source}")]
    Remove {
        interface: String,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What cleanup did, one item per directory looked at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Removed {
    /// The pin directory was removed (the program detached with its link).
    Pins(PathBuf),
    /// Nothing was pinned there.
    NothingAt(PathBuf),
    /// An older agent's `<pin root>/<interface>` directory was removed.
    LegacyPins(PathBuf),
}

impl std::fmt::Display for Removed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Removed::Pins(p) => write!(f, "removed {} (program detached)", p.display()),
            Removed::NothingAt(p) => write!(f, "nothing pinned at {}", p.display()),
            Removed::LegacyPins(p) => write!(
                f,
                "removed legacy pin directory {} (left by an older agent; its program detached)",
                p.display()
            ),
        }
    }
}

/// Removes the data plane of `interface` (resolved in the calling thread's
/// network namespace) under `pin_root`.
pub fn cleanup(pin_root: &Path, interface: &str) -> Result<Vec<Removed>, CleanupError> {
    let iface = Interface::resolve(interface)?;
    let run_dir = iface.run_dir(pin_root);
    // Held while removing, so that no agent starts on half-removed pins.
    let lock = AgentLock::acquire(&run_dir, interface).map_err(|e| match e {
        LockError::Held { pid, .. } => CleanupError::AgentRunning {
            interface: interface.into(),
            pid,
        },
        e => CleanupError::Lock {
            interface: interface.into(),
            source: e,
        },
    })?;
    let remove_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CleanupError::Remove {
            interface: interface.into(),
            path,
            source,
        }
    };
    let mut done = Vec::new();
    let pin_dir = iface.pin_dir(pin_root);
    done.push(
        if loader::cleanup(&pin_dir).map_err(remove_err(&pin_dir))? {
            Removed::Pins(pin_dir)
        } else {
            Removed::NothingAt(pin_dir)
        },
    );
    let legacy = identity::legacy_pin_dir(pin_root, interface);
    if loader::cleanup(&legacy).map_err(remove_err(&legacy))? {
        done.push(Removed::LegacyPins(legacy));
    }
    let _ = std::fs::remove_dir_all(identity::legacy_run_dir(pin_root, interface));
    std::fs::remove_dir_all(&run_dir).map_err(remove_err(&run_dir))?;
    drop(lock);
    // /run/<root name> too once no interface is left in it (remove_dir
    // fails on a non-empty directory).
    let _ = std::fs::remove_dir(identity::run_root(pin_root));
    Ok(done)
}

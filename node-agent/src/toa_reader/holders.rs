//! Who keeps the TOA reader on this node (`realserver --toa --hold`, the
//! chart's DaemonSet pods). The reader is pinned, so it outlives any one
//! holder; the last holder to leave removes it. That gives both lifecycles
//! a DaemonSet needs without asking the API server: in a rolling upgrade
//! with surge the new pod joins before the old one leaves, so the reader
//! stays attached throughout; when the DaemonSet is deleted (`helm
//! uninstall`, `toaReader.enabled=false`) or stops selecting the node, its
//! pod is the last holder and takes the hooks with it.
//!
//! A holder is a file under `/run/<pin root name>/toa-holders/` on which its
//! process holds an exclusive flock(2): the kernel drops the lock however
//! the process dies, so a file nobody locks is a holder that died (SIGKILL,
//! OOM) and is not counted. `/run` is a tmpfs like bpffs: a reboot clears
//! both. Joining and leaving happen under a registry lock (`.registry`), so
//! "join, then install" and "leave, count, remove" never interleave.
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::error::ToaError;

const REGISTRY_LOCK: &str = ".registry";

/// The directory of holder files for a pin root.
pub fn holders_dir(pin_root: &Path) -> PathBuf {
    crate::lifecycle::identity::run_root(pin_root).join("toa-holders")
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> ToaError + '_ {
    move |source| ToaError::Holders {
        path: path.to_path_buf(),
        source,
    }
}

/// flock(2) on `file`; `Ok(false)` when `wait` is false and another open
/// file description holds it.
fn flock(file: &File, wait: bool) -> std::io::Result<bool> {
    let op = libc::LOCK_EX | if wait { 0 } else { libc::LOCK_NB };
    // SAFETY: flock(2) on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EWOULDBLOCK) if !wait => Ok(false),
        _ => Err(err),
    }
}

/// Held while joining and installing, or leaving and removing.
#[derive(Debug)]
pub struct Registry {
    dir: PathBuf,
    _lock: File,
}

impl Registry {
    /// Takes the registry lock, waiting for another holder's install or
    /// removal (about a second: the verifier) to finish.
    pub fn lock(dir: &Path) -> Result<Registry, ToaError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let path = dir.join(REGISTRY_LOCK);
        let file = File::options()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err(&path))?;
        flock(&file, true).map_err(io_err(&path))?;
        Ok(Registry {
            dir: dir.to_path_buf(),
            _lock: file,
        })
    }

    /// Registers this process as a holder until [`Registry::leave`] or
    /// its death. `name` tells humans whose file it is (the pod's host
    /// name); a counter and the time keep it unique.
    pub fn join(&self, name: &str) -> Result<Holder, ToaError> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let path = self
            .dir
            .join(format!("{name}-{}-{stamp}", std::process::id()));
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err(&path))?;
        if !flock(&file, false).map_err(io_err(&path))? {
            // Nobody else has this new file open: not reachable.
            return Err(ToaError::Holders {
                path,
                source: std::io::Error::from(std::io::ErrorKind::WouldBlock),
            });
        }
        Ok(Holder { path, _file: file })
    }

    /// Holders alive, not counting `leaving`; files of dead holders are
    /// deleted on the way.
    pub fn live_holders(&self, leaving: Option<&Holder>) -> Result<Vec<PathBuf>, ToaError> {
        let mut live = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let path = entry.map_err(io_err(&self.dir))?.path();
            if path.file_name().is_some_and(|n| n == REGISTRY_LOCK)
                || leaving.is_some_and(|h| h.path == path)
            {
                continue;
            }
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&path)(e)),
            };
            if flock(&file, false).map_err(io_err(&path))? {
                // Locked by nobody: its holder died without leaving.
                let _ = std::fs::remove_file(&path);
            } else {
                live.push(path);
            }
        }
        live.sort();
        Ok(live)
    }

    /// Unregisters `holder`; returns the holders still alive (the reader
    /// is the caller's to remove when there are none).
    pub fn leave(&self, holder: Holder) -> Result<Vec<PathBuf>, ToaError> {
        let live = self.live_holders(Some(&holder))?;
        std::fs::remove_file(&holder.path).map_err(io_err(&holder.path))?;
        Ok(live)
    }
}

/// A registered holder: its file stays locked while this lives.
#[derive(Debug)]
pub struct Holder {
    pub path: PathBuf,
    _file: File,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A registry directory of the test's own, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Scratch {
            let dir =
                std::env::temp_dir().join(format!("ballast-holders-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn the_last_holder_to_leave_sees_nobody_else() {
        let scratch = Scratch::new("last");
        let dir = &scratch.0;
        let reg = Registry::lock(dir).unwrap();
        let old = reg.join("pod-old").unwrap();
        let new = reg.join("pod-new").unwrap();
        assert_eq!(
            reg.live_holders(None).unwrap(),
            [new.path.clone(), old.path.clone()]
        );
        // The rolling upgrade: the old pod leaves while the new one holds.
        let new_path = new.path.clone();
        assert_eq!(reg.leave(old).unwrap(), [new_path]);
        // The uninstall: the new pod is the last.
        assert!(reg.leave(new).unwrap().is_empty());
        let left: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, [REGISTRY_LOCK], "only the registry lock remains");
    }

    #[test]
    fn a_holder_that_died_is_not_counted_and_its_file_goes() {
        let scratch = Scratch::new("dead");
        let dir = &scratch.0;
        let reg = Registry::lock(dir).unwrap();
        let me = reg.join("pod-a").unwrap();
        // A file nobody locks: what a SIGKILLed holder leaves.
        let dead = dir.join("pod-b-1-2");
        std::fs::write(&dead, "").unwrap();
        assert!(reg.leave(me).unwrap().is_empty());
        assert!(!dead.exists(), "the dead holder's file is deleted");
    }

    #[test]
    fn the_registry_lock_is_exclusive() {
        let scratch = Scratch::new("excl");
        let dir = &scratch.0;
        let reg = Registry::lock(dir).unwrap();
        let other = File::open(dir.join(REGISTRY_LOCK)).unwrap();
        assert!(
            !flock(&other, false).unwrap(),
            "held while the Registry lives"
        );
        drop(reg);
        assert!(flock(&other, false).unwrap(), "free once dropped");
    }
}

//! One agent per interface: an exclusive flock(2) on
//! `/run/<pin root name>/<key>/lock`, held for the agent's lifetime (the
//! kernel drops it when the process dies, however it dies), with the
//! holder's PID written in the file so that the refused can name it.
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub const LOCK_FILE: &str = "lock";

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "interface {interface}: another ballast-agent ({}) holds {path}; one agent per interface: stop it first",
        holder_text(.pid)
    )]
    Held {
        interface: String,
        pid: Option<u32>,
        path: PathBuf,
    },
    #[error("interface {interface}: lock file {path}: {source}")]
    Io {
        interface: String,
        path: PathBuf,
        source: std::io::Error,
    },
}

fn holder_text(pid: &Option<u32>) -> String {
    match pid {
        Some(p) => format!("PID {p}"),
        None => "PID not yet written".into(),
    }
}

/// The held lock; released when dropped (or when the process exits).
#[derive(Debug)]
pub struct AgentLock {
    _file: File,
    pub path: PathBuf,
}

impl AgentLock {
    /// Takes the lock of the interface whose run directory is `run_dir`, or
    /// fails at once (never waits) naming the holder.
    pub fn acquire(run_dir: &Path, interface: &str) -> Result<AgentLock, LockError> {
        let path = run_dir.join(LOCK_FILE);
        let io = |source| LockError::Io {
            interface: interface.into(),
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(run_dir).map_err(io)?;
        // `cleanup` unlinks the file while holding it: a lock taken on an
        // unlinked file protects nothing, so retry until the locked file is
        // the one at the path.
        loop {
            let mut file = File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(io)?;
            // SAFETY: flock(2) on a descriptor we own.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                let err = std::io::Error::last_os_error();
                if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                    return Err(LockError::Held {
                        interface: interface.into(),
                        pid: read_pid(&mut file),
                        path,
                    });
                }
                return Err(io(err));
            }
            let same = match std::fs::metadata(&path) {
                Ok(m) => m.ino() == file.metadata().map_err(io)?.ino(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
                Err(e) => return Err(io(e)),
            };
            if !same {
                continue;
            }
            file.set_len(0).map_err(io)?;
            file.rewind().map_err(io)?;
            writeln!(file, "{}", std::process::id()).map_err(io)?;
            return Ok(AgentLock { _file: file, path });
        }
    }
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut s = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut s).ok()?;
    parse_pid(&s)
}

fn parse_pid(s: &str) -> Option<u32> {
    s.trim().parse().ok().filter(|&p| p > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("ballast-lock-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        p
    }

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid() {
        let dir = scratch("second");
        let first = AgentLock::acquire(&dir, "eth0").unwrap();
        // flock locks belong to the open file description: a second open in
        // the same process conflicts as another process would.
        match AgentLock::acquire(&dir, "eth0") {
            Err(e @ LockError::Held { .. }) => {
                let LockError::Held { pid, .. } = &e else {
                    unreachable!()
                };
                assert_eq!(*pid, Some(std::process::id()));
                let msg = e.to_string();
                assert!(msg.contains("interface eth0"), "{msg}");
                assert!(
                    msg.contains(&format!("PID {}", std::process::id())),
                    "{msg}"
                );
            }
            other => panic!("second lock: {other:?}"),
        }
        drop(first);
        let again = AgentLock::acquire(&dir, "eth0").expect("free once dropped");
        drop(again);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_lock_file_unlinked_under_its_holder_is_not_trusted() {
        let dir = scratch("unlinked");
        let first = AgentLock::acquire(&dir, "eth0").unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        // The path is a new file now: taking it succeeds.
        let second = AgentLock::acquire(&dir, "eth0").unwrap();
        drop((first, second));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn pids_are_read_leniently() {
        assert_eq!(parse_pid("123\n"), Some(123));
        assert_eq!(parse_pid(""), None);
        assert_eq!(parse_pid("0"), None);
        assert_eq!(parse_pid("x"), None);
    }
}

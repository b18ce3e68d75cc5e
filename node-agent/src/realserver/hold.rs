//! `realserver --toa --hold`: the TOA reader as a DaemonSet pod runs it.
//! Installs, then stays: every `--recheck-seconds` it installs again if the
//! pins are gone (someone ran `--remove`; bpffs remounted). On SIGTERM or
//! SIGINT it leaves the holder registry ([`toa_reader::holders`]) and
//! removes the reader only when no other holder on the node is alive: a
//! rolling upgrade (the new pod already holds) keeps the hooks attached, the
//! DaemonSet's deletion (the last pod leaves) takes them away.
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use ipnet::Ipv4Net;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};

use crate::toa_reader::{self, ToaError, holders::Registry};

pub struct Hold<'a> {
    pub toa_dir: &'a Path,
    pub holders_dir: PathBuf,
    pub cgroup: Option<&'a Path>,
    pub trusted: &'a [Ipv4Net],
    pub recheck: Duration,
}

/// What the last holder does on its way out, and what the others do.
#[derive(Debug, PartialEq, Eq)]
pub enum OnStop {
    Remove,
    Keep { live_holders: Vec<PathBuf> },
}

pub fn on_stop(live_holders: Vec<PathBuf>) -> OnStop {
    if live_holders.is_empty() {
        OnStop::Remove
    } else {
        OnStop::Keep { live_holders }
    }
}

impl Hold<'_> {
    pub fn run(&self) -> anyhow::Result<()> {
        // Blocked before anything is loaded: a pending signal would make the
        // verifier give up (EAGAIN); sigtimedwait below collects them.
        let stop = stop_signals();
        pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&stop), None)
            .context("blocking SIGTERM and SIGINT")?;

        let registry = Registry::lock(&self.holders_dir)?;
        let holder = registry.join(&host_name())?;
        println!("{}", self.install_owned()?);
        println!(
            "holding the TOA reader (registered as {}); re-checked every {}s",
            holder.path.display(),
            self.recheck.as_secs()
        );
        drop(registry);

        let signal = loop {
            if let Some(sig) = wait_for(&stop, self.recheck).context("waiting for signals")? {
                break sig;
            }
            if toa_reader::read_status(self.toa_dir)?.is_none() {
                let _registry = Registry::lock(&self.holders_dir)?;
                let outcome = toa_reader::install(self.toa_dir, self.cgroup, self.trusted)
                    .context("realserver --toa --hold: reinstalling")?;
                println!("the reader's pins were gone: {outcome}");
            }
        };

        let registry = Registry::lock(&self.holders_dir)?;
        match on_stop(registry.leave(holder)?) {
            OnStop::Remove => {
                toa_reader::remove(self.toa_dir)?;
                println!(
                    "{}: last holder on this node: TOA reader removed",
                    signal.as_str()
                );
            }
            OnStop::Keep { live_holders } => println!(
                "{}: TOA reader kept for {} other holder(s): {}",
                signal.as_str(),
                live_holders.len(),
                live_holders
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
        Ok(())
    }

    /// Installs; a reader installed on another cgroup (an upgrade that
    /// changed `--cgroup`) is replaced, since the holders own the node's
    /// reader. Re-checks never do this: an older holder still running
    /// during a rolling upgrade must not move it back.
    fn install_owned(&self) -> anyhow::Result<String> {
        match toa_reader::install(self.toa_dir, self.cgroup, self.trusted) {
            Err(ToaError::InstalledElsewhere { installed, .. }) => {
                toa_reader::remove(self.toa_dir)?;
                let outcome = toa_reader::install(self.toa_dir, self.cgroup, self.trusted)
                    .context("realserver --toa --hold")?;
                Ok(format!("{outcome} (moved from the cgroup {installed})"))
            }
            other => Ok(other.context("realserver --toa --hold")?.to_string()),
        }
    }
}

fn stop_signals() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set
}

/// The next signal of `set` (blocked in this thread), or None after `timeout`.
fn wait_for(set: &SigSet, timeout: Duration) -> std::io::Result<Option<Signal>> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    loop {
        // SAFETY: a valid signal set and timespec; no siginfo asked for.
        let n = unsafe { libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), &ts) };
        if n >= 0 {
            return Ok(Signal::try_from(n).ok());
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EAGAIN) => return Ok(None),
            Some(libc::EINTR) => continue,
            _ => return Err(err),
        }
    }
}

/// The pod's name in a pod (its host name), for the holder file's name.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().replace('/', "_"))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "holder".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_last_holder_removes() {
        assert_eq!(on_stop(vec![]), OnStop::Remove);
        let other = PathBuf::from("/run/ballast/toa-holders/pod-new-1-2");
        assert_eq!(
            on_stop(vec![other.clone()]),
            OnStop::Keep {
                live_holders: vec![other]
            }
        );
    }
}

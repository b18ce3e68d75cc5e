//! Low-level network-namespace plumbing: running closures inside a named
//! netns, running commands, writing sysctls.

use std::ffi::OsStr;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::mpsc;
use std::thread::JoinHandle;

use anyhow::{Context, Result, anyhow, bail};
use nix::sched::{CloneFlags, setns};

/// Directory where iproute2 keeps the bind mounts of named namespaces.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// Path of a named namespace; a value containing `/` is taken as a path so
/// callers can also pass e.g. `/proc/<pid>/ns/net`.
pub fn netns_path(ns: &str) -> PathBuf {
    if ns.contains('/') {
        PathBuf::from(ns)
    } else {
        Path::new(NETNS_RUN_DIR).join(ns)
    }
}

/// A command that runs `program` inside network namespace `ns` and nothing
/// else: unlike `ip netns exec`, it keeps the host's /sys, hence the host's
/// bpffs, so pins an agent makes there outlive it.
pub fn command_in_netns(ns: &str, program: impl AsRef<OsStr>) -> Result<Command> {
    let path = netns_path(ns);
    let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let mut cmd = Command::new(program);
    // SAFETY: setns(2) is async-signal-safe; the closure owns the namespace
    // file, so its descriptor stays open until the command is dropped.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(move || setns(&file, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from));
    }
    Ok(cmd)
}

/// A thread that runs inside a network namespace. Returned by
/// [`spawn_in_netns`].
pub struct NetnsThread<T> {
    handle: JoinHandle<Option<T>>,
}

impl<T> NetnsThread<T> {
    /// Waits for the closure; a panic inside it becomes an error carrying
    /// the panic message.
    pub fn join(self) -> Result<T> {
        match self.handle.join() {
            Ok(Some(v)) => Ok(v),
            // spawn_in_netns only returns a handle after setns succeeded.
            Ok(None) => Err(anyhow!("netns thread exited before running its closure")),
            Err(panic) => Err(anyhow!("netns thread panicked: {}", panic_message(&*panic))),
        }
    }

    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}

pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_string()
    }
}

/// Spawns a fresh OS thread, moves it into network namespace `ns`
/// (`/run/netns/<ns>`) and runs `f` there. Returns once the thread is inside
/// the namespace, so a failed `setns` is reported here rather than at join.
///
/// A fresh thread is used because `setns` changes only the calling thread,
/// and a pooled/reused thread left in a foreign namespace would surprise
/// later users. Threads spawned from `f` inherit the namespace; sockets
/// created in `f` stay in the namespace wherever they are used afterwards.
pub fn spawn_in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<NetnsThread<T>> {
    let path = netns_path(ns);
    let file = File::open(&path).with_context(|| format!("opening netns {}", path.display()))?;
    let (tx, rx) = mpsc::sync_channel::<nix::Result<()>>(1);
    let thread_name: String = format!("netns-{ns}").chars().take(15).collect();
    let handle = std::thread::Builder::new()
        .name(thread_name)
        .spawn(move || {
            let entered = setns(&file, CloneFlags::CLONE_NEWNET);
            drop(file);
            let ok = entered.is_ok();
            let _ = tx.send(entered);
            if ok { Some(f()) } else { None }
        })
        .context("spawning netns thread")?;
    match rx.recv() {
        Ok(Ok(())) => Ok(NetnsThread { handle }),
        Ok(Err(e)) => {
            let _ = handle.join();
            Err(anyhow!("setns into {}: {e}", path.display()))
        }
        Err(_) => {
            let _ = handle.join();
            Err(anyhow!(
                "netns thread for {} died before setns",
                path.display()
            ))
        }
    }
}

/// Runs `f` on a fresh OS thread inside network namespace `ns` and waits for
/// it; `f` may borrow from the caller (a scoped thread). Sockets created by
/// `f` live in that namespace, and so do the commands it runs (the Lab
/// applies services there, so that the agent's `ip` calls for neighbours
/// see the director's routes).
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> Result<T> {
    let path = netns_path(ns);
    let file = File::open(&path).with_context(|| format!("opening netns {}", path.display()))?;
    std::thread::scope(|scope| {
        let thread = scope.spawn(move || -> Result<T> {
            setns(&file, CloneFlags::CLONE_NEWNET)
                .map_err(|e| anyhow!("setns into {}: {e}", path.display()))?;
            drop(file);
            Ok(f())
        });
        thread
            .join()
            .map_err(|panic| anyhow!("netns thread panicked: {}", panic_message(&*panic)))?
    })
}

/// Runs a command and fails (with its stderr) on a non-zero exit status.
pub fn run<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Result<Output> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            describe(program, args),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

fn describe<S: AsRef<OsStr>>(program: &str, args: &[S]) -> String {
    let mut s = program.to_string();
    for a in args {
        s.push(' ');
        s.push_str(&a.as_ref().to_string_lossy());
    }
    s
}

/// `ip -n <ns> <args...>`
pub fn ip_in(ns: &str, args: &[&str]) -> Result<Output> {
    let mut full = vec!["-n", ns];
    full.extend_from_slice(args);
    run("ip", &full)
}

/// `ip netns exec <ns> <args...>`
pub fn exec_in(ns: &str, args: &[&str]) -> Result<Output> {
    if args.is_empty() {
        bail!("exec in {ns}: empty command");
    }
    let mut full = vec!["netns", "exec", ns];
    full.extend_from_slice(args);
    run("ip", &full)
}

/// Writes sysctls (`net.ipv4.ip_forward` style keys) inside `ns`.
///
/// Done from a thread that has entered the namespace because /proc/sys/net
/// resolves against the caller's netns; this saves one `ip netns exec`
/// process (which also remounts /sys) per namespace.
pub fn sysctls_in(ns: &str, settings: &[(&str, &str)]) -> Result<()> {
    let settings: Vec<(String, String)> = settings
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let ns_owned = ns.to_string();
    in_netns(ns, move || -> Result<()> {
        for (key, value) in &settings {
            let path = sysctl_path(key);
            std::fs::write(&path, value).with_context(|| {
                format!("sysctl {key}={value} in {ns_owned} ({})", path.display())
            })?;
        }
        Ok(())
    })?
}

/// Reads one sysctl inside `ns`.
pub fn sysctl_get(ns: &str, key: &str) -> Result<String> {
    let path = sysctl_path(key);
    let ns_owned = ns.to_string();
    in_netns(ns, move || {
        std::fs::read_to_string(&path)
            .map(|s| s.trim().to_string())
            .with_context(|| format!("reading {} in {ns_owned}", path.display()))
    })?
}

fn sysctl_path(key: &str) -> PathBuf {
    // Interface names never contain '.', so mapping every '.' is safe.
    Path::new("/proc/sys").join(key.replace('.', "/"))
}

/// Names of all namespaces under /run/netns.
pub fn list_netns() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(NETNS_RUN_DIR) else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

pub fn netns_exists(ns: &str) -> bool {
    netns_path(ns).exists()
}

/// Deletes a named namespace. The kernel destroys it (and its veths) once
/// the last socket/thread referencing it is gone.
pub fn delete_netns(ns: &str) -> Result<()> {
    run("ip", &["netns", "delete", ns]).map(|_| ())
}

/// Adds a named namespace. Retried because concurrent first-time
/// `ip netns add` calls race on making /run/netns a shared mount.
pub fn add_netns(ns: &str) -> Result<()> {
    let mut last = None;
    for attempt in 0..3 {
        match run("ip", &["netns", "add", ns]) {
            Ok(_) => return Ok(()),
            Err(e) => {
                if netns_exists(ns) {
                    return Err(e);
                }
                last = Some(e);
                std::thread::sleep(std::time::Duration::from_millis(20 * (attempt + 1)));
            }
        }
    }
    Err(last.unwrap_or_else(|| anyhow!("ip netns add {ns} failed")))
}

//! The agent as a process, the way the integration tests run it: a
//! `ballast-agent` child in a network namespace with its stderr in a log
//! file, and the guards that remove what a test creates (pin root, scratch
//! directory, bare namespace) on drop, on failure too. The binary's path
//! comes from the test (`env!("CARGO_BIN_EXE_ballast-agent")`), which only
//! the agent's own tests know.
use std::ffi::OsStr;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use crate::netns;
use crate::topology::Testbed;
use crate::world::SNAT_ADDR;

/// How long an agent may take to log what a test waits for: a cold start
/// verifies the program (seconds), on a loaded two-core machine.
pub const AGENT_START: Duration = Duration::from_secs(30);

/// `<bin> --pin-root <pin_root>` that enters network namespace `ns` with
/// setns(2) only, as `nsenter --net` does: the host's /sys and bpffs stay
/// visible, so pins outlive the agent. No backtraces: only what a user sees.
pub fn command(bin: &str, ns: &str, pin_root: &Path) -> Command {
    let mut cmd = netns::command_in_netns(ns, bin).expect("opening the agent's namespace");
    cmd.env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .arg("--pin-root")
        .arg(pin_root);
    cmd
}

/// Runs `<bin> --pin-root R <args>` in `ns` to completion (`stats`,
/// `cleanup`, `realserver`): pins and the inventory are keyed by the
/// interface's namespace and ifindex, which the command resolves in its own.
pub fn output(bin: &str, ns: &str, pin_root: &Path, args: &[&str]) -> Output {
    command(bin, ns, pin_root)
        .args(args)
        .output()
        .expect("running the agent")
}

/// The stdout of a command that must have succeeded; fails with its stderr.
#[track_caller]
pub fn stdout_ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `standalone` on `interface` with the test world's SNAT address, polling
/// `config` every 200 ms, then `extra`.
pub fn standalone_args(interface: &str, config: &Path, extra: &[&str]) -> Vec<String> {
    let config = config.to_str().expect("UTF-8 config path");
    let snat = SNAT_ADDR.to_string();
    let base = [
        "standalone",
        "--interface",
        interface,
        "--snat-address",
        &snat,
        "--poll",
        "200ms",
        "--config",
        config,
    ];
    base.iter().chain(extra).map(|a| a.to_string()).collect()
}

/// A standalone agent on the testbed's director interface (see
/// [`standalone_args`]), its log appended to `log`: agents a test restarts
/// share one log, and the counts of a line in it are cumulative.
pub fn start_standalone(
    bin: &str,
    tb: &Testbed,
    pin_root: &Path,
    config: &Path,
    extra: &[&str],
    log: &Path,
) -> Agent {
    let mut cmd = command(bin, tb.director_ns(), pin_root);
    cmd.args(standalone_args(tb.director_if(), config, extra));
    Agent::spawn(cmd, log, Log::Append)
}

/// Whether a new agent's log starts empty or continues a log that other
/// agents of the test wrote (its counts of a line are then cumulative).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Log {
    Fresh,
    Append,
}

/// A running agent with its log; killed on drop.
pub struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    /// `<bin> --pin-root R <args>` in `ns` (see [`command`]).
    pub fn start<S: AsRef<OsStr>>(
        bin: &str,
        ns: &str,
        pin_root: &Path,
        args: &[S],
        log: &Path,
    ) -> Agent {
        let mut cmd = command(bin, ns, pin_root);
        cmd.args(args);
        Agent::spawn(cmd, log, Log::Fresh)
    }

    /// Spawns `cmd` (an agent command line) with stderr into `log`.
    pub fn spawn(mut cmd: Command, log: &Path, mode: Log) -> Agent {
        let out = match mode {
            Log::Fresh => File::create(log),
            Log::Append => File::options().create(true).append(true).open(log),
        }
        .unwrap_or_else(|e| panic!("agent log {}: {e}", log.display()));
        // The agent's own default level, unless the test asked for more.
        if !cmd.get_envs().any(|(k, _)| k == "RUST_LOG") {
            cmd.env("RUST_LOG", "info");
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("starting the agent");
        Agent {
            child,
            log: log.to_path_buf(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn running(&mut self) -> bool {
        self.child
            .try_wait()
            .expect("waiting for the agent")
            .is_none()
    }

    /// Waits for `needle` in the log; fails early if the agent exits
    /// without having logged it.
    #[track_caller]
    pub fn wait_log(&mut self, needle: &str) {
        self.wait_log_count(needle, 1);
    }

    /// Waits until the log holds `needle` `count` times.
    #[track_caller]
    pub fn wait_log_count(&mut self, needle: &str, count: usize) {
        let deadline = Instant::now() + AGENT_START;
        let logged = |a: &Agent| a.log().matches(needle).count() >= count;
        while !logged(self) {
            if !self.running() {
                // It may have logged the line on its way out.
                if logged(self) {
                    return;
                }
                panic!(
                    "agent exited ({}) before logging {needle:?} x{count}:\n{}",
                    self.child.wait().expect("reaping the agent"),
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "agent never logged {needle:?} x{count}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last log line containing `needle`.
    #[track_caller]
    pub fn line_with(&self, needle: &str) -> String {
        let log = self.log();
        log.lines()
            .rfind(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no log line with {needle:?}:\n{log}"))
            .to_string()
    }

    /// Waits for the agent to exit by itself within `timeout`.
    #[track_caller]
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().expect("waiting for the agent") {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "agent still running after {timeout:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[track_caller]
    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: signalling our own child, which has not been reaped.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
    }

    /// SIGTERM, as a service manager stops it; it must exit within `timeout`.
    #[track_caller]
    pub fn stop(&mut self, timeout: Duration) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_exit(timeout)
    }

    /// SIGKILL: the agent gets no chance to clean up.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL to the agent");
        self.child.wait().expect("reaping the agent");
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bpffs pin root `/sys/fs/bpf/<name>` and the agents' state under
/// `/run/<name>` (inventory, lock), removed at creation and on drop.
pub struct PinRoot(PathBuf);

impl PinRoot {
    pub fn new(name: &str) -> PinRoot {
        let p = PinRoot(Path::new("/sys/fs/bpf").join(name));
        p.remove();
        p
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn run_dir(&self) -> PathBuf {
        Path::new("/run").join(self.0.file_name().expect("has a name"))
    }
    fn remove(&self) {
        let _ = std::fs::remove_dir_all(&self.0);
        let _ = std::fs::remove_dir_all(self.run_dir());
    }
}

impl Drop for PinRoot {
    fn drop(&mut self) {
        self.remove();
    }
}

/// A scratch directory `<tmp>/ballast-<name>` with an empty `conf`
/// directory in it, removed at creation and on drop.
pub struct WorkDir(PathBuf);

impl WorkDir {
    pub fn new(name: &str) -> WorkDir {
        let p = std::env::temp_dir().join(format!("ballast-{name}"));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(p.join("conf")).expect("creating the work directory");
        WorkDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn conf(&self) -> PathBuf {
        self.0.join("conf")
    }
    /// A file in the directory, e.g. an agent's log.
    pub fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A bare named network namespace (a leftover of the same name is
/// replaced), deleted on drop.
pub struct Netns(pub String);

impl Netns {
    pub fn new(name: String) -> Netns {
        if netns::netns_exists(&name) {
            let _ = netns::delete_netns(&name);
        }
        netns::add_netns(&name).expect("adding a network namespace");
        Netns(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if netns::netns_exists(&self.0)
            && let Err(e) = netns::delete_netns(&self.0)
        {
            eprintln!("deleting netns {}: {e:#}", self.0);
        }
    }
}

/// Written under a hidden name and renamed, so that an agent polling the
/// directory never reads half a file (hidden files are not read).
pub fn write_config(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).expect("writing a config file");
    std::fs::rename(&tmp, dir.join(name)).expect("renaming a config file");
}

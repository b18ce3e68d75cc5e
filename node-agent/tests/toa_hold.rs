//! As root: `realserver --toa --hold`, the TOA reader's lifecycle as the
//! chart's DaemonSet runs it, with the real binary, real pins and real
//! cgroup attachments. A rolling upgrade (a new holder joins, the old one
//! gets SIGTERM) keeps the reader attached, even when the upgrade moves it
//! to another cgroup, and the old holder's re-checks never move it back; a
//! holder's pins removed by hand are reinstalled; a SIGKILLed holder is not
//! counted; the last holder's SIGTERM removes the reader (the uninstall).
//!
//! The reader is attached to cgroups of this test's own and pinned under a
//! pin root of its own (holders under /run/<that root's name>), so the host
//! and parallel tests are untouched.
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ballast_agent::toa_reader::{self, cgroup::cgroup2_root, holders::holders_dir};
use ballast_testbed::require_root;

const BIN: &str = env!("CARGO_BIN_EXE_ballast-agent");
const NEEDS_ROOT: &str = "cgroup BPF hooks and bpffs pins";
const T: Duration = Duration::from_secs(10);
const RECHECK: &str = "1";

/// The test's pin root, its run root and cgroups, removed on drop.
struct Scene {
    pin_root: PathBuf,
    cgroups: Vec<PathBuf>,
}

impl Scene {
    fn new() -> Scene {
        let id = std::process::id();
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let root = cgroup2_root(&info).expect("a cgroup2 mount for the reader's hooks");
        let cgroups: Vec<PathBuf> = ["a", "b"]
            .iter()
            .map(|t| root.join(format!("ballast-test-hold-{id}-{t}")))
            .collect();
        for cg in &cgroups {
            let _ = std::fs::remove_dir(cg);
            std::fs::create_dir(cg).unwrap_or_else(|e| panic!("mkdir {}: {e}", cg.display()));
        }
        Scene {
            pin_root: PathBuf::from(format!("/sys/fs/bpf/ballast-test-hold-{id}")),
            cgroups,
        }
    }

    fn toa_dir(&self) -> PathBuf {
        toa_reader::pin_dir(&self.pin_root)
    }

    fn installed_on(&self) -> Option<String> {
        toa_reader::read_status(&self.toa_dir())
            .unwrap()
            .map(|s| s.cgroup)
    }

    fn holder_files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(holders_dir(&self.pin_root))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// `realserver --toa --hold` on `cgroup`; returns once it holds.
    fn hold(&self, cgroup: &Path) -> Holder {
        let mut child = Command::new(BIN)
            .arg("--pin-root")
            .arg(&self.pin_root)
            .args(["realserver", "--toa", "--toa-from", "10.9.0.1", "--hold"])
            .args(["--recheck-seconds", RECHECK, "--cgroup"])
            .arg(cgroup)
            .env("RUST_BACKTRACE", "0")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = lines_of(child.stdout.take().unwrap());
        let mut h = Holder {
            child,
            lines,
            seen: Vec::new(),
        };
        h.expect("holding the TOA reader");
        h
    }

    fn remove_by_hand(&self) {
        let out = Command::new(BIN)
            .arg("--pin-root")
            .arg(&self.pin_root)
            .args(["realserver", "--toa", "--remove"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.pin_root);
        let _ = std::fs::remove_dir_all(holders_dir(&self.pin_root).parent().unwrap());
        for cg in &self.cgroups {
            let _ = std::fs::remove_dir(cg);
        }
    }
}

fn lines_of(out: ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

struct Holder {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Holder {
    /// Waits for a line containing `what`; returns it.
    fn expect(&mut self, what: &str) -> String {
        let deadline = Instant::now() + T;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(what) => return line,
                Ok(line) => self.seen.push(line),
                Err(e) => panic!("no line with {what:?} ({e}); saw {:?}", self.seen),
            }
        }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }

    /// SIGTERM; returns the line it said on its way out.
    fn terminate(mut self, what: &str) -> String {
        self.signal("-TERM");
        let line = self.expect(what);
        let status = self.child.wait().unwrap();
        assert!(status.success(), "exit {status}");
        line
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + T;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn holders_keep_the_reader_through_upgrades_and_the_last_one_removes_it() {
    require_root(NEEDS_ROOT);
    let scene = Scene::new();
    let (cg_a, cg_b) = (&scene.cgroups[0], &scene.cgroups[1]);
    let a = cg_a.to_string_lossy().into_owned();
    let b = cg_b.to_string_lossy().into_owned();

    let old = scene.hold(cg_a);
    assert_eq!(scene.installed_on(), Some(a.clone()));

    // The rolling upgrade, moving the reader to another cgroup: the new
    // pod joins and takes the reader over.
    let mut new = scene.hold(cg_b);
    assert!(
        new.seen
            .iter()
            .any(|l| l.contains(&format!("moved from the cgroup {a}"))),
        "{:?}",
        new.seen
    );
    assert_eq!(scene.installed_on(), Some(b.clone()));
    // The old pod's re-checks (every second) leave it where it is.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(scene.installed_on(), Some(b.clone()));
    assert_eq!(scene.holder_files().len(), 3, "two holders and .registry");

    // The old pod's SIGTERM keeps the reader for the new one.
    let said = old.terminate("SIGTERM");
    assert!(said.contains("kept for 1 other holder"), "{said}");
    assert_eq!(scene.installed_on(), Some(b.clone()));

    // A holder that dies without leaving is not counted.
    let crashed = scene.hold(cg_b);
    crashed.signal("-KILL");
    drop(crashed);

    // Pins removed by hand come back at the next re-check.
    scene.remove_by_hand();
    new.expect("the reader's pins were gone");
    until("reinstalled", || scene.installed_on() == Some(b.clone()));

    // The uninstall: the last live holder removes the reader and the dead
    // holder's file.
    let said = new.terminate("SIGTERM");
    assert!(said.contains("last holder on this node"), "{said}");
    assert_eq!(scene.installed_on(), None);
    assert_eq!(scene.holder_files(), [".registry"]);
}

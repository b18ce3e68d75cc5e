//! A cgroup (v2) of a test's own, for cgroup BPF hooks such as the TOA
//! reader's. Hooks work per cgroup, not per network namespace: tests attach
//! them to a child of the cgroup2 root that only their own processes join,
//! never to the root, so parallel tests and the host are untouched. A
//! socket belongs to the cgroup of the process that created it (accepted
//! sockets to their listener's), so a process joins before it opens any.
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use ballast_agent::toa_reader::cgroup::cgroup2_root;

use crate::netns::command_in_netns;

/// `enum bpf_attach_type` values the TOA reader attaches with.
pub const ATTACH_SOCK_OPS: u32 = 3;
pub const ATTACH_GETPEERNAME4: u32 = 29;
pub const ATTACH_GETPEERNAME6: u32 = 30;
const BPF_PROG_QUERY: libc::c_long = 16;

/// Removed on drop, after its processes have left.
pub struct TestCgroup(PathBuf);

impl TestCgroup {
    /// `ballast-test-<pid>-<tag>` under the cgroup2 mount.
    pub fn create(tag: &str) -> Result<TestCgroup> {
        let info = std::fs::read_to_string("/proc/self/mountinfo")?;
        let root = cgroup2_root(&info).context("no cgroup2 mount for cgroup BPF hooks")?;
        let path = root.join(format!("ballast-test-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir(&path);
        std::fs::create_dir(&path).with_context(|| format!("mkdir {}", path.display()))?;
        Ok(TestCgroup(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// An open handle, for attaching programs.
    pub fn open(&self) -> Result<File> {
        File::open(&self.0).with_context(|| format!("opening {}", self.0.display()))
    }

    /// How many programs of `attach_type` (one of the `ATTACH_*` below)
    /// are attached to this cgroup itself, links included.
    pub fn attached(&self, attach_type: u32) -> Result<u32> {
        let cg = self.open()?;
        // union bpf_attr, BPF_PROG_QUERY's part: target_fd, attach_type,
        // query_flags, attach_flags, prog_ids (u64), prog_cnt. No id buffer:
        // the kernel only counts.
        let mut attr = [0u32; 32];
        attr[0] = cg.as_raw_fd() as u32;
        attr[1] = attach_type;
        // SAFETY: bpf(2) reads and writes within `attr`, whose size it is told.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_QUERY,
                attr.as_mut_ptr(),
                std::mem::size_of_val(&attr),
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("BPF_PROG_QUERY on {}", self.0.display()));
        }
        Ok(attr[6])
    }

    /// A command that runs `program` (arguments added by the caller) in
    /// network namespace `ns` and in this cgroup from its first instruction:
    /// `sh` moves itself in, then execs the program.
    pub fn command_in_netns(&self, ns: &str, program: &str) -> Result<Command> {
        let mut cmd = command_in_netns(ns, "sh")?;
        cmd.arg("-c")
            .arg(format!(
                "echo $$ > {}/cgroup.procs && exec \"$@\"",
                self.0.display()
            ))
            .arg("sh")
            .arg(program);
        Ok(cmd)
    }

    /// Moves this whole process (every thread) into the cgroup until the
    /// guard drops, which moves it back where it was. For in-process
    /// servers and clients; sockets opened before keep their cgroup.
    pub fn enter(&self) -> Result<Entered<'_>> {
        let back = own_cgroup_dir(&self.0)?;
        write_procs(&self.0)?;
        Ok(Entered { _cg: self, back })
    }
}

/// The caller's cgroup2 directory, a sibling path of `under`'s root.
fn own_cgroup_dir(under: &Path) -> Result<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/cgroup")?;
    // The unified hierarchy's line is "0::<path>".
    let rel = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .context("no cgroup2 line in /proc/self/cgroup")?;
    let root = under.parent().context("a test cgroup has a parent")?;
    Ok(root.join(rel.trim_start_matches('/')))
}

fn write_procs(dir: &Path) -> Result<()> {
    let procs = dir.join("cgroup.procs");
    std::fs::write(&procs, std::process::id().to_string())
        .with_context(|| format!("joining {}", procs.display()))
}

/// Back in the cgroup it came from when dropped.
pub struct Entered<'a> {
    _cg: &'a TestCgroup,
    back: PathBuf,
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        if let Err(e) = write_procs(&self.back) {
            eprintln!("leaving the test cgroup: {e:#}");
        }
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // Processes killed just before may take a moment to leave it.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.0).is_ok() || !self.0.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

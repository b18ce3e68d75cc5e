//! Whether the bpffs the agent pins to outlives the agent. Pins keep the
//! data plane forwarding after the agent stops only if they live in a bpffs
//! mounted in a mount namespace that outlives the process: the host's (PID
//! 1's). Under `ip netns exec` (a private mount namespace with /sys
//! remounted) the agent finds no bpffs at /sys/fs/bpf, mounts one that only
//! it sees, and its pins, hence its XDP link, die with it.
//!
//! The reference is PID 1 (the host's init, or a container's); when its
//! /proc entries are not readable (a sandbox may hide them), the parent
//! process, which started the agent and so shows whether the agent was given
//! a mount namespace of its own (`ip netns exec` execs the agent in one;
//! `nsenter --net` does not). The facts are gathered by
//! [`BpffsFacts::gather`]; [`assess`] decides from them alone, so every case
//! is tested without mounts.
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// What the reference process sees at the path of our bpffs (through
/// /proc/<pid>/root).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefView {
    /// /proc/<pid>/root is not readable (no CAP_SYS_PTRACE, or hidden).
    Unreadable,
    /// The reference has no bpffs there.
    NotBpffs,
    /// A bpffs with this device number (one per superblock, so per mount
    /// of bpffs; a bind mount of the host's keeps the host's).
    Bpffs { dev: u64 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BpffsFacts {
    /// The directory checked: the pin root or its nearest existing parent.
    pub dir: PathBuf,
    /// This process mounted the bpffs (none was there).
    pub mounted_here: bool,
    /// This process is PID 1 of its PID namespace (a container's init).
    pub is_pid1: bool,
    /// The process compared with: `PID 1` or `the parent process (PID n)`.
    pub reference: String,
    /// Inode of our mount namespace and of the reference's (None: unreadable).
    pub own_mnt_ns: Option<u64>,
    pub ref_mnt_ns: Option<u64>,
    /// Device number of the bpffs at `dir` as we see it.
    pub own_dev: u64,
    pub ref_view: RefView,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PinPersistence {
    /// The pins are in the host's bpffs: forwarding outlives the agent.
    Shared,
    /// The pins die with this process; the reason says how we know.
    Private { reason: String },
    /// Nothing tells either way (no access to PID 1's view): assumed
    /// shared, as with a container's own init.
    Undetermined,
}

/// Decides from the facts alone.
pub fn assess(f: &BpffsFacts) -> PinPersistence {
    let dir = f.dir.display();
    let same_ns = matches!((f.own_mnt_ns, f.ref_mnt_ns), (Some(a), Some(b)) if a == b);
    if same_ns {
        if f.is_pid1 && f.mounted_here {
            // PID 1 of its own PID namespace looks at itself: the mount is
            // in a container's namespace, gone with the container.
            return PinPersistence::Private {
                reason: format!(
                    "this process mounted the bpffs at {dir} and is PID 1 of its own PID namespace (a container without the host's /sys/fs/bpf)"
                ),
            };
        }
        return PinPersistence::Shared;
    }
    match &f.ref_view {
        RefView::Bpffs { dev } if *dev == f.own_dev => PinPersistence::Shared,
        RefView::Bpffs { .. } => PinPersistence::Private {
            reason: format!(
                "the bpffs at {dir} is not the one {} sees: it was mounted {} in a private mount namespace",
                f.reference,
                if f.mounted_here {
                    "by this process"
                } else {
                    "anew"
                }
            ),
        },
        RefView::NotBpffs => PinPersistence::Private {
            reason: format!(
                "{} has no bpffs at {dir}; this one {} exists only in a private mount namespace",
                f.reference,
                if f.mounted_here {
                    "was mounted by this process and"
                } else {
                    ""
                }
            )
            .replace("  ", " "),
        },
        RefView::Unreadable if f.mounted_here => PinPersistence::Private {
            reason: format!(
                "this process mounted the bpffs at {dir} in a mount namespace that is not {}'s",
                f.reference
            ),
        },
        RefView::Unreadable => PinPersistence::Undetermined,
    }
}

impl PinPersistence {
    /// The loud warning at start, or None when there is nothing to say.
    pub fn start_warning(&self, interface: &str, pin_dir: &Path) -> Option<String> {
        let PinPersistence::Private { reason } = self else {
            return None;
        };
        Some(format!(
            "interface {interface}: the data plane is pinned at {} in a bpffs private to this process ({reason}): \
             forwarding on {interface} STOPS when this agent exits, and a restarted agent starts with empty tables. \
             Start the agent with `nsenter --net=/run/netns/NAME ballast-agent ...` rather than `ip netns exec` \
             (which remounts /sys), or mount the host's /sys/fs/bpf into its container",
            pin_dir.display()
        ))
    }

    /// What the agent says when it stops.
    pub fn stop_note(&self) -> &'static str {
        match self {
            PinPersistence::Shared => {
                "stopping; the pinned data plane keeps forwarding (ballast-agent cleanup removes it)"
            }
            PinPersistence::Private { .. } => {
                "stopping; forwarding stops with this process: its data plane was pinned in a bpffs private to its mount namespace"
            }
            PinPersistence::Undetermined => {
                "stopping; the pinned data plane keeps forwarding if its bpffs is the host's (ballast-agent cleanup removes it)"
            }
        }
    }
}

impl BpffsFacts {
    /// Looks at the bpffs holding `pin_root` (which may not exist yet).
    pub fn gather(pin_root: &Path, mounted_here: bool) -> std::io::Result<BpffsFacts> {
        let dir = nearest_existing(pin_root)?;
        let ns_inode = |p: &Path| std::fs::metadata(p).ok().map(|m| m.ino());
        // PID 1 when readable, else the parent.
        let (reference, proc_dir) = match ns_inode(Path::new("/proc/1/ns/mnt")) {
            Some(_) => ("PID 1".to_string(), PathBuf::from("/proc/1")),
            None => {
                let ppid = std::os::unix::process::parent_id();
                (
                    format!("the parent process (PID {ppid})"),
                    PathBuf::from(format!("/proc/{ppid}")),
                )
            }
        };
        let in_ref = proc_dir
            .join("root")
            .join(dir.strip_prefix("/").unwrap_or(&dir));
        let ref_view = match std::fs::metadata(&in_ref) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => RefView::NotBpffs,
            Err(_) => RefView::Unreadable,
            Ok(m) => match is_bpffs(&in_ref) {
                Ok(true) => RefView::Bpffs { dev: m.dev() },
                Ok(false) => RefView::NotBpffs,
                Err(_) => RefView::Unreadable,
            },
        };
        Ok(BpffsFacts {
            own_dev: std::fs::metadata(&dir)?.dev(),
            dir,
            mounted_here,
            is_pid1: std::process::id() == 1,
            own_mnt_ns: ns_inode(Path::new("/proc/self/ns/mnt")),
            ref_mnt_ns: ns_inode(&proc_dir.join("ns/mnt")),
            reference,
            ref_view,
        })
    }
}

fn nearest_existing(p: &Path) -> std::io::Result<PathBuf> {
    let abs = std::path::absolute(p)?;
    let mut cur = abs.as_path();
    loop {
        if cur.exists() {
            return Ok(cur.to_path_buf());
        }
        cur = cur.parent().unwrap_or(Path::new("/"));
    }
}

fn is_bpffs(p: &Path) -> std::io::Result<bool> {
    Ok(fs_type(p)? == BPF_FS_MAGIC)
}

/// statfs(2)'s file-system type (magic number) of the file system at `p`.
pub fn fs_type(p: &Path) -> std::io::Result<i64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out-pointer.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st.f_type as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> BpffsFacts {
        BpffsFacts {
            dir: "/sys/fs/bpf/ballast".into(),
            mounted_here: false,
            is_pid1: false,
            reference: "PID 1".into(),
            own_mnt_ns: Some(10),
            ref_mnt_ns: Some(10),
            own_dev: 42,
            ref_view: RefView::Bpffs { dev: 42 },
        }
    }

    fn private(f: &BpffsFacts) -> String {
        match assess(f) {
            PinPersistence::Private { reason } => reason,
            other => panic!("{f:?}: {other:?}"),
        }
    }

    #[test]
    fn in_the_host_mount_namespace_pins_are_shared_even_when_we_mounted_bpffs() {
        assert_eq!(assess(&facts()), PinPersistence::Shared);
        let f = BpffsFacts {
            mounted_here: true,
            ref_view: RefView::NotBpffs, // seen before our mount propagated: irrelevant
            ..facts()
        };
        assert_eq!(assess(&f), PinPersistence::Shared);
    }

    #[test]
    fn a_container_with_the_hosts_bpffs_mounted_in_is_shared() {
        let f = BpffsFacts {
            own_mnt_ns: Some(11),
            ..facts()
        };
        assert_eq!(assess(&f), PinPersistence::Shared);
    }

    #[test]
    fn ip_netns_exec_with_no_host_bpffs_is_private() {
        // `ip netns exec`: own mount namespace, /sys remounted, we mounted
        // bpffs; the host has none at /sys/fs/bpf.
        let f = BpffsFacts {
            own_mnt_ns: Some(11),
            mounted_here: true,
            ref_view: RefView::NotBpffs,
            ..facts()
        };
        let r = private(&f);
        assert!(r.contains("PID 1 has no bpffs"), "{r}");
        assert!(r.contains("mounted by this process"), "{r}");
    }

    #[test]
    fn ip_netns_exec_beside_a_host_bpffs_is_private() {
        let f = BpffsFacts {
            own_mnt_ns: Some(11),
            mounted_here: true,
            own_dev: 43,
            ..facts()
        };
        assert!(private(&f).contains("not the one PID 1 sees"));
    }

    #[test]
    fn the_parent_stands_in_for_an_unreadable_pid1() {
        // A sandbox hides PID 1: `ip netns exec` run by a shell in the host's
        // mount namespace is seen against that shell.
        let parent = BpffsFacts {
            reference: "the parent process (PID 7)".into(),
            own_mnt_ns: Some(11),
            mounted_here: true,
            ref_view: RefView::NotBpffs,
            ..facts()
        };
        let r = private(&parent);
        assert!(r.contains("the parent process (PID 7) has no bpffs"), "{r}");
        // nsenter --net: the parent's mount namespace is ours.
        let same = BpffsFacts {
            own_mnt_ns: Some(10),
            ..parent
        };
        assert_eq!(assess(&same), PinPersistence::Shared);
    }

    #[test]
    fn without_pid1s_view_only_our_own_mount_is_known_private() {
        let base = BpffsFacts {
            own_mnt_ns: Some(11),
            ref_mnt_ns: None,
            ref_view: RefView::Unreadable,
            ..facts()
        };
        assert_eq!(assess(&base), PinPersistence::Undetermined);
        let f = BpffsFacts {
            mounted_here: true,
            ..base
        };
        private(&f);
    }

    #[test]
    fn a_containers_init_that_mounted_bpffs_itself_is_private() {
        let f = BpffsFacts {
            is_pid1: true,
            mounted_here: true,
            ..facts()
        };
        assert!(private(&f).contains("PID 1"));
        let f = BpffsFacts {
            is_pid1: true,
            ..facts()
        };
        assert_eq!(assess(&f), PinPersistence::Shared);
    }

    #[test]
    fn messages_say_whether_forwarding_survives() {
        let p = PinPersistence::Private { reason: "r".into() };
        let w = p
            .start_warning("eth0", Path::new("/sys/fs/bpf/ballast/net1-if2"))
            .unwrap();
        assert!(
            w.contains("STOPS when this agent exits") && w.contains("nsenter --net="),
            "{w}"
        );
        assert!(!p.stop_note().contains("keeps forwarding"));
        assert!(
            PinPersistence::Shared
                .start_warning("eth0", Path::new("/x"))
                .is_none()
        );
        assert!(
            PinPersistence::Shared
                .stop_note()
                .contains("keeps forwarding")
        );
    }
}

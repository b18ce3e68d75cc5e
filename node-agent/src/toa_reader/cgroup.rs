//! Which cgroup the reader attaches to. cgroup BPF hooks live in the
//! unified (v2) hierarchy; on a hybrid host /sys/fs/cgroup is a tmpfs of v1
//! controllers and v2 is mounted elsewhere (often /sys/fs/cgroup/unified),
//! so the default is found in the mount table rather than assumed.
use std::path::{Path, PathBuf};

use super::error::ToaError;

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// The cgroup2 mount point from /proc/self/mountinfo text: /sys/fs/cgroup
/// when it is one, else the first listed.
pub fn cgroup2_root(mountinfo: &str) -> Option<PathBuf> {
    let mounts: Vec<&str> = mountinfo
        .lines()
        .filter_map(|line| {
            // "<id> <parent> <maj:min> <root> <mount point> <opts> ... - <fstype> <source> <opts>"
            let (pre, post) = line.split_once(" - ")?;
            let fstype = post.split_whitespace().next()?;
            (fstype == "cgroup2").then(|| pre.split_whitespace().nth(4))?
        })
        .collect();
    mounts
        .iter()
        .find(|m| **m == "/sys/fs/cgroup")
        .or_else(|| mounts.first())
        .map(PathBuf::from)
}

/// The cgroup to attach to: `asked`, or the cgroup2 root. Refused unless it
/// is a directory of a cgroup2 file system.
pub fn resolve(asked: Option<&Path>) -> Result<PathBuf, ToaError> {
    let path = match asked {
        Some(p) => p.to_path_buf(),
        None => {
            let info = std::fs::read_to_string("/proc/self/mountinfo").map_err(|source| {
                ToaError::Cgroup {
                    path: "/proc/self/mountinfo".into(),
                    source,
                }
            })?;
            cgroup2_root(&info).ok_or(ToaError::NoCgroup2Mount)?
        }
    };
    if !is_cgroup2(&path).map_err(|source| ToaError::Cgroup {
        path: path.clone(),
        source,
    })? {
        return Err(ToaError::NotCgroup2 { path });
    }
    Ok(path)
}

fn is_cgroup2(p: &Path) -> std::io::Result<bool> {
    Ok(crate::lifecycle::bpffs::fs_type(p)? == CGROUP2_SUPER_MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
25 30 0:22 / /sys rw,nosuid shared:7 - sysfs sysfs rw
31 25 0:26 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755
32 31 0:27 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw
33 31 0:28 / /sys/fs/cgroup/systemd rw,nosuid shared:11 - cgroup cgroup rw,name=systemd
";

    #[test]
    fn the_unified_mount_of_a_hybrid_host_is_found() {
        assert_eq!(
            cgroup2_root(HYBRID),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
    }

    #[test]
    fn sys_fs_cgroup_is_preferred_when_it_is_cgroup2() {
        let unified = "\
40 30 0:50 / /run/other rw - cgroup2 cgroup2 rw
41 30 0:51 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate
";
        assert_eq!(cgroup2_root(unified), Some(PathBuf::from("/sys/fs/cgroup")));
        assert_eq!(
            cgroup2_root("25 30 0:22 / /sys rw - sysfs sysfs rw\n"),
            None
        );
    }
}

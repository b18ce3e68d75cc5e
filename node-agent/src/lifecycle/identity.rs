//! An interface's identity: its network namespace (by netns cookie, a
//! 64-bit number the kernel never reuses, unlike the nsfs inode) and its
//! ifindex. Pins and the /run state of an agent are keyed by it, so an agent
//! in another namespace whose interface has the same name never adopts
//! another's data plane, and a renamed interface keeps its own.
use std::path::{Path, PathBuf};

/// `SO_NETNS_COOKIE` (asm-generic; Linux 5.14+).
const SO_NETNS_COOKIE: libc::c_int = 71;

/// Where the agent keeps plain files (bpffs holds none): /run/<pin root name>.
const RUN_ROOT: &str = "/run";

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "interface {interface}: no such interface in this network namespace (run the command in the agent's namespace, e.g. `nsenter --net=/run/netns/NAME ballast-agent ...`)"
    )]
    NoInterface { interface: String },
    #[error("interface {interface}: the name is longer than 15 characters")]
    NameTooLong { interface: String },
    #[error("cannot read the network namespace cookie (SO_NETNS_COOKIE, Linux 5.14+): {0}")]
    Cookie(std::io::Error),
}

/// What keys an interface's pinned data plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InterfaceKey {
    pub netns_cookie: u64,
    pub ifindex: u32,
}

impl InterfaceKey {
    /// `net<cookie>-if<ifindex>`: the name of the interface's pin directory
    /// and of its /run directory.
    pub fn dir_name(&self) -> String {
        format!("net{}-if{}", self.netns_cookie, self.ifindex)
    }

    /// The inverse of [`Self::dir_name`] (None for anything else, such as a
    /// legacy `<pin root>/<interface>` directory).
    pub fn parse(name: &str) -> Option<InterfaceKey> {
        let (net, ifindex) = name.strip_prefix("net")?.split_once("-if")?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(net) || !digits(ifindex) {
            return None;
        }
        Some(InterfaceKey {
            netns_cookie: net.parse().ok()?,
            ifindex: ifindex.parse().ok()?,
        })
    }
}

/// An interface by name, with its identity in the calling thread's network
/// namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub key: InterfaceKey,
}

impl Interface {
    /// Resolves `name` in the calling thread's network namespace.
    pub fn resolve(name: &str) -> Result<Interface, IdentityError> {
        if name.len() >= libc::IFNAMSIZ {
            return Err(IdentityError::NameTooLong {
                interface: name.into(),
            });
        }
        let cname = std::ffi::CString::new(name).map_err(|_| IdentityError::NoInterface {
            interface: name.into(),
        })?;
        // SAFETY: a valid NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if ifindex == 0 {
            return Err(IdentityError::NoInterface {
                interface: name.into(),
            });
        }
        Ok(Interface {
            name: name.into(),
            key: InterfaceKey {
                netns_cookie: current_netns_cookie().map_err(IdentityError::Cookie)?,
                ifindex,
            },
        })
    }

    pub fn pin_dir(&self, pin_root: &Path) -> PathBuf {
        pin_dir(pin_root, &self.key)
    }

    pub fn run_dir(&self, pin_root: &Path) -> PathBuf {
        run_dir(pin_root, &self.key)
    }
}

/// The cookie of the calling thread's network namespace, asked of a socket
/// made in it.
pub fn current_netns_cookie() -> std::io::Result<u64> {
    // SAFETY: socket(2) and getsockopt(2) with a correctly sized out-value;
    // the descriptor is owned (and closed) by OwnedFd.
    unsafe {
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let fd = <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd);
        let mut cookie: u64 = 0;
        let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
        let rc = libc::getsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        );
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(cookie)
    }
}

/// `<pin root>/net<cookie>-if<ifindex>`: the interface's maps, programs and link.
pub fn pin_dir(pin_root: &Path, key: &InterfaceKey) -> PathBuf {
    pin_root.join(key.dir_name())
}

/// `<pin root>/<interface>`: where agents before the identity key pinned.
pub fn legacy_pin_dir(pin_root: &Path, interface: &str) -> PathBuf {
    pin_root.join(interface)
}

/// `/run/<pin root name>`: plain files of every agent under this pin root.
pub fn run_root(pin_root: &Path) -> PathBuf {
    let name = pin_root
        .file_name()
        .map_or_else(|| "ballast".into(), |n| n.to_string_lossy().into_owned());
    Path::new(RUN_ROOT).join(name)
}

/// `/run/<pin root name>/net<cookie>-if<ifindex>`: the interface's inventory,
/// lock file and name.
pub fn run_dir(pin_root: &Path, key: &InterfaceKey) -> PathBuf {
    run_root(pin_root).join(key.dir_name())
}

/// `/run/<pin root name>/<interface>`: where older agents kept the inventory.
pub fn legacy_run_dir(pin_root: &Path, interface: &str) -> PathBuf {
    run_root(pin_root).join(interface)
}

/// The file in the run directory naming the interface, for humans reading
/// `ls /sys/fs/bpf/ballast` (the key says nothing of the name).
pub const NAME_FILE: &str = "interface";

/// Records the interface's name (and key) beside its inventory.
pub fn write_name_file(pin_root: &Path, iface: &Interface) -> std::io::Result<()> {
    let dir = iface.run_dir(pin_root);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join(NAME_FILE),
        format!(
            "{}\npins: {}\n",
            iface.name,
            iface.pin_dir(pin_root).display()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_names_the_namespace_and_the_ifindex() {
        let k = InterfaceKey {
            netns_cookie: 4097,
            ifindex: 2,
        };
        assert_eq!(k.dir_name(), "net4097-if2");
        assert_eq!(InterfaceKey::parse("net4097-if2"), Some(k));
        assert_eq!(
            pin_dir(Path::new("/sys/fs/bpf/ballast"), &k),
            Path::new("/sys/fs/bpf/ballast/net4097-if2")
        );
        assert_eq!(
            run_dir(Path::new("/sys/fs/bpf/ballast"), &k),
            Path::new("/run/ballast/net4097-if2")
        );
    }

    #[test]
    fn interface_names_are_not_keys() {
        for name in [
            "eth0",
            "net0",
            "net1-if",
            "net-if2",
            "netx-if2",
            "net1-if2x",
            "net1-if-2",
        ] {
            assert_eq!(InterfaceKey::parse(name), None, "{name}");
        }
    }

    #[test]
    fn same_name_in_two_namespaces_gives_two_directories() {
        let a = InterfaceKey {
            netns_cookie: 1,
            ifindex: 2,
        };
        let b = InterfaceKey {
            netns_cookie: 7,
            ifindex: 2,
        };
        let root = Path::new("/sys/fs/bpf/ballast");
        assert_ne!(pin_dir(root, &a), pin_dir(root, &b));
        assert_ne!(run_dir(root, &a), run_dir(root, &b));
    }

    #[test]
    fn the_loopback_of_this_namespace_resolves() {
        let lo = Interface::resolve("lo").expect("lo exists");
        assert_eq!(lo.key.ifindex, 1);
        assert!(lo.key.netns_cookie > 0);
        assert!(matches!(
            Interface::resolve("no-such-if0"),
            Err(IdentityError::NoInterface { .. })
        ));
    }
}

//! Installing, removing and reading the pinned TOA reader. Installed means
//! both link pins exist: maps are pinned and filled first, links last, so a
//! failed install leaves no attached program, and the leftovers are cleared
//! by the next install or `--remove`.
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, Map, MapData, PerCpuArray};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::{CgroupAttachMode, CgroupSockAddr, SockOps};
use aya::{Ebpf, EbpfLoader};
use ipnet::Ipv4Net;

use super::abi::{self, CGROUP_PATH_MAX};
use super::error::ToaError;
use super::status::ToaStatus;
use super::{cgroup, trusted};

#[derive(Debug, PartialEq, Eq)]
pub enum InstallOutcome {
    Installed {
        cgroup: PathBuf,
    },
    /// Already installed on that cgroup: only the trusted set was edited.
    AlreadyInstalled {
        cgroup: PathBuf,
        edit: trusted::TrustEdit,
    },
}

impl std::fmt::Display for InstallOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InstallOutcome::Installed { cgroup } => {
                write!(f, "TOA reader installed on the cgroup {}", cgroup.display())
            }
            InstallOutcome::AlreadyInstalled { cgroup, edit } => {
                let list = |v: &[Ipv4Net]| {
                    v.iter()
                        .map(|n| n.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                write!(
                    f,
                    "TOA reader already installed on the cgroup {}",
                    cgroup.display()
                )?;
                match (edit.add.is_empty(), edit.remove.is_empty()) {
                    (true, true) => write!(f, "; trusted directors unchanged"),
                    _ => write!(
                        f,
                        "; trusted directors: added [{}], removed [{}]",
                        list(&edit.add),
                        list(&edit.remove)
                    ),
                }
            }
        }
    }
}

/// Every link pinned. A reader of an older install (fewer links) is not
/// installed by this rule: the next install replaces it whole.
fn installed(pin_dir: &Path) -> bool {
    abi::LINKS.iter().all(|l| pin_dir.join(l).exists())
}

fn map_err(name: &'static str) -> impl Fn(aya::maps::MapError) -> ToaError {
    move |e| ToaError::Map {
        name,
        reason: e.to_string(),
    }
}

fn prog_err(name: &'static str) -> impl Fn(aya::programs::ProgramError) -> ToaError {
    move |e| ToaError::Program {
        name,
        reason: with_sources(&e),
    }
}

/// The error and its causes (aya's syscall errors keep the errno there).
fn with_sources(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn open_pinned(pin_dir: &Path, name: &'static str) -> Result<Map, ToaError> {
    let data = MapData::from_pin(pin_dir.join(name)).map_err(map_err(name))?;
    Map::from_map_data(data).map_err(map_err(name))
}

fn lpm_key(net: &Ipv4Net) -> Key<u32> {
    // The key's address bytes are in network order.
    Key::new(
        net.prefix_len().into(),
        u32::from_ne_bytes(net.addr().octets()),
    )
}

/// Writes `edit` into the trusted trie: additions first.
fn write_trusted<T: std::borrow::BorrowMut<MapData>>(
    trie: &mut LpmTrie<T, u32, u8>,
    edit: &trusted::TrustEdit,
) -> Result<(), ToaError> {
    for n in &edit.add {
        trie.insert(&lpm_key(n), 1, 0)
            .map_err(map_err(abi::TRUSTED_MAP))?;
    }
    for n in &edit.remove {
        trie.remove(&lpm_key(n))
            .map_err(map_err(abi::TRUSTED_MAP))?;
    }
    Ok(())
}

fn read_trusted<T: std::borrow::Borrow<MapData>>(
    trie: &LpmTrie<T, u32, u8>,
) -> Result<BTreeSet<Ipv4Net>, ToaError> {
    let mut set = BTreeSet::new();
    for k in trie.keys() {
        let k = k.map_err(map_err(abi::TRUSTED_MAP))?;
        let addr = Ipv4Addr::from(k.data().to_ne_bytes());
        let net = Ipv4Net::new(addr, k.prefix_len() as u8).map_err(|e| ToaError::Map {
            name: abi::TRUSTED_MAP,
            reason: format!("bad prefix in the trie: {e}"),
        })?;
        set.insert(net);
    }
    Ok(set)
}

fn read_cgroup(pin_dir: &Path) -> Result<String, ToaError> {
    let map = open_pinned(pin_dir, abi::INSTALL_MAP)?;
    let arr: Array<_, [u8; CGROUP_PATH_MAX]> =
        Array::try_from(map).map_err(map_err(abi::INSTALL_MAP))?;
    let bytes = arr.get(&0, 0).map_err(map_err(abi::INSTALL_MAP))?;
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    Ok(String::from_utf8_lossy(&bytes[..end]).into_owned())
}

fn prepare_pin_dir(pin_dir: &Path) -> Result<(), ToaError> {
    crate::dataplane::loader::ensure_bpffs().map_err(ToaError::Bpffs)?;
    // Leftovers of a failed install (maps without links) go first.
    let _ = std::fs::remove_dir_all(pin_dir);
    std::fs::create_dir_all(pin_dir).map_err(|source| ToaError::PinDir {
        path: pin_dir.to_path_buf(),
        source,
    })
}

/// Installs the reader on `asked_cgroup` (default: the cgroup2 root)
/// trusting `asked_trust`; when already installed on the same cgroup, only
/// brings the trusted set to `asked_trust`.
pub fn install(
    pin_dir: &Path,
    asked_cgroup: Option<&Path>,
    asked_trust: &[Ipv4Net],
) -> Result<InstallOutcome, ToaError> {
    let wanted = trusted::validate(asked_trust)?;
    let cgroup = cgroup::resolve(asked_cgroup)?;
    let cgroup_str = cgroup.to_string_lossy().into_owned();
    if cgroup_str.len() >= CGROUP_PATH_MAX {
        return Err(ToaError::CgroupPathTooLong {
            path: cgroup,
            max: CGROUP_PATH_MAX - 1,
        });
    }
    if installed(pin_dir) {
        let current = read_cgroup(pin_dir)?;
        if Path::new(&current) != cgroup {
            return Err(ToaError::InstalledElsewhere {
                installed: current,
                asked: cgroup,
            });
        }
        let map = open_pinned(pin_dir, abi::TRUSTED_MAP)?;
        let mut trie: LpmTrie<_, u32, u8> =
            LpmTrie::try_from(map).map_err(map_err(abi::TRUSTED_MAP))?;
        let edit = trusted::edit(&read_trusted(&trie)?, &wanted);
        write_trusted(&mut trie, &edit)?;
        return Ok(InstallOutcome::AlreadyInstalled { cgroup, edit });
    }
    prepare_pin_dir(pin_dir)?;
    let result = load_and_attach(pin_dir, &cgroup, &cgroup_str, &wanted);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(pin_dir);
    }
    result.map(|()| InstallOutcome::Installed { cgroup })
}

/// Loads program `$name` of type `$ty` and attaches it to the cgroup
/// `$cg`; evaluates to its link, detached again when dropped unpinned. A
/// macro: aya's program types share these methods but no trait for them.
macro_rules! attach {
    ($ebpf:expr, $ty:ty, $name:expr, $cg:expr, $mode:expr) => {{
        let name = $name;
        let prog: &mut $ty = program(&mut $ebpf, name)?;
        prog.load().map_err(prog_err(name))?;
        let id = prog.attach($cg, $mode).map_err(prog_err(name))?;
        let link = prog.take_link(id).map_err(prog_err(name))?;
        FdLink::try_from(link).map_err(|e| ToaError::Program {
            name,
            reason: e.to_string(),
        })?
    }};
}

fn load_and_attach(
    pin_dir: &Path,
    cgroup: &Path,
    cgroup_str: &str,
    wanted: &BTreeSet<Ipv4Net>,
) -> Result<(), ToaError> {
    let mut ebpf: Ebpf = EbpfLoader::new()
        .load(abi::TOA_OBJECT)
        .map_err(|e| ToaError::Load(Box::new(e)))?;
    for name in abi::MAPS {
        let path = pin_dir.join(name);
        let map = ebpf.map(name).ok_or(ToaError::Map {
            name,
            reason: "not in the object".into(),
        })?;
        map.pin(&path).map_err(|e| ToaError::Pin {
            path,
            reason: e.to_string(),
        })?;
    }
    {
        let map = ebpf.map_mut(abi::TRUSTED_MAP).expect("pinned above");
        let mut trie: LpmTrie<_, u32, u8> =
            LpmTrie::try_from(map).map_err(map_err(abi::TRUSTED_MAP))?;
        let all = trusted::edit(&BTreeSet::new(), wanted);
        write_trusted(&mut trie, &all)?;
    }
    {
        let map = ebpf.map_mut(abi::INSTALL_MAP).expect("pinned above");
        let mut arr: Array<_, [u8; CGROUP_PATH_MAX]> =
            Array::try_from(map).map_err(map_err(abi::INSTALL_MAP))?;
        let mut record = [0u8; CGROUP_PATH_MAX];
        record[..cgroup_str.len()].copy_from_slice(cgroup_str.as_bytes());
        arr.set(0, record, 0).map_err(map_err(abi::INSTALL_MAP))?;
    }
    let cg = std::fs::File::open(cgroup).map_err(|source| ToaError::Cgroup {
        path: cgroup.to_path_buf(),
        source,
    })?;
    // Attached through bpf_link (kernel >= 5.7), which is always "multi":
    // other sockops or getpeername programs on the cgroup (a CNI's) keep
    // running beside the reader. The kernel refuses link flags, so the
    // mode is Single (no flags), not AllowMultiple.
    let mode = CgroupAttachMode::Single;
    let sockops_link = attach!(ebpf, SockOps, abi::SOCKOPS_PROGRAM, &cg, mode);
    let peername4_link = attach!(ebpf, CgroupSockAddr, abi::GETPEERNAME4_PROGRAM, &cg, mode);
    let peername6_link = attach!(ebpf, CgroupSockAddr, abi::GETPEERNAME6_PROGRAM, &cg, mode);
    for (link, pin) in [
        (sockops_link, abi::SOCKOPS_LINK),
        (peername4_link, abi::GETPEERNAME4_LINK),
        (peername6_link, abi::GETPEERNAME6_LINK),
    ] {
        let path = pin_dir.join(pin);
        link.pin(&path).map_err(|e| ToaError::Pin {
            path,
            reason: e.to_string(),
        })?;
    }
    Ok(())
}

fn program<'a, P>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut P, ToaError>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or(ToaError::Program {
            name,
            reason: "not in the object".into(),
        })?
        .try_into()
        .map_err(prog_err(name))
}

/// Detaches and unpins the reader (removing the link pins detaches the
/// programs; removing the map pins frees the maps). Returns whether
/// anything was there. The links are detached before this returns:
/// unlinking a link's pin leaves its release to deferred kernel work, so
/// a connection made just after `--remove` could still be translated;
/// closing a link's last descriptor releases it before close() returns, so
/// each link is opened, unpinned, then closed here.
pub fn remove(pin_dir: &Path) -> Result<bool, ToaError> {
    for name in abi::LINKS {
        let path = pin_dir.join(name);
        if !path.exists() {
            continue;
        }
        let pin_err = |reason: String| ToaError::Pin {
            path: path.clone(),
            reason,
        };
        let link = PinnedLink::from_pin(&path).map_err(|e| pin_err(with_sources(&e)))?;
        let last = link.unpin().map_err(|e| pin_err(e.to_string()))?;
        drop(last);
    }
    match std::fs::remove_dir_all(pin_dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(ToaError::PinDir {
            path: pin_dir.to_path_buf(),
            source,
        }),
    }
}

/// What is installed, or None.
pub fn read_status(pin_dir: &Path) -> Result<Option<ToaStatus>, ToaError> {
    if !installed(pin_dir) {
        return Ok(None);
    }
    let cgroup = read_cgroup(pin_dir)?;
    let trie: LpmTrie<_, u32, u8> = LpmTrie::try_from(open_pinned(pin_dir, abi::TRUSTED_MAP)?)
        .map_err(map_err(abi::TRUSTED_MAP))?;
    let trusted = read_trusted(&trie)?.into_iter().collect();
    let counters: PerCpuArray<_, u64> =
        PerCpuArray::try_from(open_pinned(pin_dir, abi::COUNTERS_MAP)?)
            .map_err(map_err(abi::COUNTERS_MAP))?;
    let sum = |i: u32| -> Result<u64, ToaError> {
        let v = counters.get(&i, 0).map_err(map_err(abi::COUNTERS_MAP))?;
        Ok(v.iter().sum())
    };
    let hooks = abi::LINKS
        .iter()
        .map(|l| l.strip_prefix("link_").unwrap_or(l).to_string())
        .collect();
    Ok(Some(ToaStatus {
        pin_dir: pin_dir.to_path_buf(),
        cgroup,
        hooks,
        trusted,
        translated: sum(abi::TRANSLATED)?,
        untrusted: sum(abi::UNTRUSTED)?,
        no_saved_syn: sum(abi::NO_SAVED_SYN)?,
    }))
}

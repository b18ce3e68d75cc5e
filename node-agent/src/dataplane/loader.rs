//! Loading the XDP object with its maps pinned, and attaching it to an
//! interface through a pinned bpf_link, so that the agent can stop, crash or
//! be upgraded while forwarding and conntrack go on. A new agent adopts the
//! pinned maps by name and swaps its program into the pinned link atomically.
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::{Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};
use tracing::{info, warn};

use crate::abi;
use crate::dataplane::clock::{CLOCK_PIN, CLOCK_PROGRAM, DataplaneClock};
use crate::dataplane::error::DataplaneError;
use crate::dataplane::maps::Maps;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum XdpAttachMode {
    /// Native (driver) mode, generic as a fallback with a warning.
    #[default]
    Auto,
    Native,
    Generic,
}

#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// None: load and pin but do not attach (packet tests, benchmarks).
    pub interface: Option<String>,
    pub pin_dir: PathBuf,
    pub ring_slots: u32,
    /// Backend slots (`--backend-slots`): entries of the per-backend
    /// arrays (`backends`, `backend_nexthops`, `backend_stats`); None: the
    /// object's `BALLAST_MAX_BACKENDS`.
    pub backend_slots: Option<u32>,
    pub conntrack_entries: Option<u32>,
    pub mode: XdpAttachMode,
}

pub struct Dataplane {
    ebpf: Ebpf,
    pub maps: Maps,
    pub pin_dir: PathBuf,
    /// The mode the program ended up attached in, if attached.
    pub attached_mode: Option<&'static str>,
}

const PROGRAM: &str = "ballast_xdp";
/// The arrays indexed by backend id, sized together by `backend_slots`.
const BACKEND_ARRAYS: [&str; 3] = ["backends", "backend_nexthops", "backend_stats"];
const LINK_PIN: &str = "link";
const LOAD_RETRIES: u32 = 5;

/// Mounts bpffs on /sys/fs/bpf unless one is there already. Returns whether
/// it mounted it (in the caller's mount namespace: under `ip netns exec`, a
/// private one; see `lifecycle::bpffs`).
pub fn ensure_bpffs() -> Result<bool, DataplaneError> {
    const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
    let root = super::BPFFS_ROOT;
    let path = std::ffi::CString::new(root).expect("no NUL");
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out-pointer.
    if unsafe { libc::statfs(path.as_ptr(), &mut st) } == 0 && st.f_type as i64 == BPF_FS_MAGIC {
        return Ok(false);
    }
    let fstype = std::ffi::CString::new("bpf").expect("no NUL");
    // SAFETY: valid C strings; no data argument.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            path.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(DataplaneError::MountBpffs {
            path: root.into(),
            source: std::io::Error::last_os_error(),
        });
    }
    info!(path = root, "mounted bpffs");
    Ok(true)
}

impl Dataplane {
    pub fn open(opts: &LoadOptions) -> Result<Self, DataplaneError> {
        ensure_bpffs()?;
        std::fs::create_dir_all(&opts.pin_dir).map_err(|source| DataplaneError::PinDir {
            path: opts.pin_dir.clone(),
            source,
        })?;
        let mut loader = EbpfLoader::new();
        loader
            .default_map_pin_directory(&opts.pin_dir)
            .map_max_entries("ring", opts.ring_slots);
        if let Some(ct) = opts.conntrack_entries {
            loader.map_max_entries("conntrack", ct);
        }
        if let Some(n) = opts.backend_slots {
            for map in BACKEND_ARRAYS {
                loader.map_max_entries(map, n);
            }
        }
        let mut ebpf = loader
            .load(abi::BPF_OBJECT)
            .map_err(|e| DataplaneError::Load {
                pin_dir: opts.pin_dir.clone(),
                source: Box::new(e),
            })?;
        let maps = Maps::take(&mut ebpf)?;
        let mut dp = Dataplane {
            ebpf,
            maps,
            pin_dir: opts.pin_dir.clone(),
            attached_mode: None,
        };
        dp.load_program(PROGRAM)?;
        dp.pin_clock()?;
        if let Some(ifname) = &opts.interface {
            dp.attach(ifname, opts.mode)?;
        }
        Ok(dp)
    }

    fn load_program(&mut self, name: &'static str) -> Result<&mut Xdp, DataplaneError> {
        let prog: &mut Xdp = self
            .ebpf
            .program_mut(name)
            .ok_or(DataplaneError::NoProgram(name))?
            .try_into()
            .map_err(|e| DataplaneError::Program {
                name,
                source: Box::new(e),
            })?;
        if prog.fd().is_err() {
            // The verifier gives up with EAGAIN when a signal arrives while it
            // works (seconds for this program): SIGHUP to the agent, SIGCHLD
            // from a child. Retry a few times, as libbpf does.
            let mut attempts = 0;
            loop {
                match prog.load() {
                    Ok(()) => break,
                    Err(aya::programs::ProgramError::LoadError { io_error, .. })
                        if io_error.raw_os_error() == Some(libc::EAGAIN)
                            && attempts < LOAD_RETRIES =>
                    {
                        attempts += 1;
                    }
                    Err(e) => {
                        return Err(DataplaneError::Program {
                            name,
                            source: Box::new(e),
                        });
                    }
                }
            }
        }
        Ok(prog)
    }

    /// Pins this object's clock program (clock.rs) in place of whatever
    /// an earlier agent pinned.
    fn pin_clock(&mut self) -> Result<(), DataplaneError> {
        let path = self.pin_dir.join(CLOCK_PIN);
        let prog = self.load_program(CLOCK_PROGRAM)?;
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(DataplaneError::Clock(format!(
                    "cannot replace {}: {e}",
                    path.display()
                )));
            }
        }
        prog.pin(&path)
            .map_err(|e| DataplaneError::Clock(format!("cannot pin {}: {e}", path.display())))
    }

    /// The data plane's clock (the pinned `ballast_clock` program).
    pub fn clock(&self) -> Result<DataplaneClock, DataplaneError> {
        DataplaneClock::open_pinned(&self.pin_dir)
    }

    /// The loaded director program (tests run packets through it).
    pub fn program(&mut self) -> Result<&mut Xdp, DataplaneError> {
        self.load_program(PROGRAM)
    }

    fn attach(&mut self, ifname: &str, mode: XdpAttachMode) -> Result<(), DataplaneError> {
        let link_path = self.pin_dir.join(LINK_PIN);
        let mut replaced = None;
        if link_path.exists() {
            let pinned = PinnedLink::from_pin(&link_path).map_err(|e| DataplaneError::Link {
                path: link_path.clone(),
                reason: e.to_string(),
            })?;
            let running = attached_mode(ifname);
            if mode_conflicts(mode, running) {
                // Asked for another mode than the pinned link runs in: attach
                // anew first (native and generic programs coexist), then
                // drop the old link, so the interface is never unserved.
                info!(
                    interface = ifname,
                    pinned = running.unwrap_or("unknown"),
                    "pinned XDP link runs in another mode than requested; re-attaching"
                );
                replaced = Some(pinned);
            } else {
                // Adopt: swap our program into the pinned link; the link (and
                // so the attachment) never goes away.
                let prog = self.load_program(PROGRAM)?;
                let xdp_link = aya::programs::xdp::XdpLink::try_from(FdLink::from(pinned))
                    .map_err(|e| DataplaneError::Link {
                        path: link_path.clone(),
                        reason: e.to_string(),
                    })?;
                prog.attach_to_link(xdp_link)
                    .map_err(|e| DataplaneError::Link {
                        path: link_path.clone(),
                        reason: e.to_string(),
                    })?;
                info!(interface = ifname, link = %link_path.display(), "adopted pinned XDP link, program replaced atomically");
                self.attached_mode = Some("adopted");
                return Ok(());
            }
        }
        // Nothing of ours is pinned, yet something drives the interface:
        // attaching would fail with a bare EEXIST, so say whose it may be.
        if replaced.is_none()
            && let Some(other) = attached_xdp(ifname).filter(|a| !a.program_ids.is_empty())
        {
            return Err(DataplaneError::Occupied {
                interface: ifname.into(),
                program_ids: other.program_ids,
            });
        }
        let prog = self.load_program(PROGRAM)?;
        let attempts: &[(XdpMode, &'static str)] = match mode {
            XdpAttachMode::Auto => &[(XdpMode::Driver, "native"), (XdpMode::Skb, "generic")],
            XdpAttachMode::Native => &[(XdpMode::Driver, "native")],
            XdpAttachMode::Generic => &[(XdpMode::Skb, "generic")],
        };
        let mut last_err = None;
        for (i, (m, name)) in attempts.iter().enumerate() {
            match prog.attach(ifname, *m) {
                Ok(id) => {
                    if i > 0 {
                        warn!(
                            interface = ifname,
                            "native XDP unavailable, attached in generic (skb) mode: expect much lower performance"
                        );
                    }
                    let link = prog.take_link(id).map_err(|e| DataplaneError::Program {
                        name: PROGRAM,
                        source: Box::new(e),
                    })?;
                    let fd_link = FdLink::try_from(link).map_err(|e| DataplaneError::Link {
                        path: link_path.clone(),
                        reason: format!("attachment is not a bpf_link, cannot pin it: {e}"),
                    })?;
                    if let Some(old) = replaced.take() {
                        // Unpinned and closed: the old attachment goes away.
                        old.unpin().map_err(|e| DataplaneError::Link {
                            path: link_path.clone(),
                            reason: format!("cannot unpin the replaced link: {e}"),
                        })?;
                    }
                    fd_link.pin(&link_path).map_err(|e| DataplaneError::Link {
                        path: link_path.clone(),
                        reason: e.to_string(),
                    })?;
                    info!(
                        interface = ifname,
                        mode = name,
                        "attached XDP program, link pinned"
                    );
                    self.attached_mode = Some(name);
                    return Ok(());
                }
                Err(e) => last_err = Some((name, e)),
            }
        }
        let (name, e) = last_err.expect("at least one attempt");
        Err(DataplaneError::Attach {
            interface: ifname.into(),
            mode: name,
            source: Box::new(e),
        })
    }
}

/// Whether a pinned attachment running in `running` mode fails `requested`.
/// Auto takes whatever runs; an unknown mode is adopted rather than risked.
fn mode_conflicts(requested: XdpAttachMode, running: Option<&str>) -> bool {
    matches!(
        (requested, running),
        (XdpAttachMode::Native, Some("generic")) | (XdpAttachMode::Generic, Some("native"))
    )
}

/// The XDP programs attached to an interface, as `ip -d -j link` shows them.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct AttachedXdp {
    /// IFLA_XDP_ATTACHED modes: 1 driver, 2 generic (skb), 3 offload.
    pub modes: Vec<u64>,
    pub program_ids: Vec<u32>,
}

/// `ip -d -j link show dev <ifname>` in the calling thread's namespace, as
/// JSON bytes (None when `ip` fails): the XDP attachment and the veth peer
/// are read from it, facts netlink gives only in pieces.
pub(crate) fn ip_link_details(ifname: &str) -> Option<Vec<u8>> {
    let out = std::process::Command::new("ip")
        .args(["-d", "-j", "link", "show", "dev", ifname])
        .output()
        .ok()?;
    out.status.success().then_some(out.stdout)
}

/// What `ip` says is attached to `ifname` (None: nothing, or `ip` could not
/// tell).
pub(crate) fn attached_xdp(ifname: &str) -> Option<AttachedXdp> {
    parse_attached_xdp(&serde_json::from_slice(&ip_link_details(ifname)?).ok()?)
}

fn parse_attached_xdp(links: &serde_json::Value) -> Option<AttachedXdp> {
    let xdp = &links.get(0)?["xdp"];
    // IFLA_XDP_ATTACHED: 1 driver, 2 generic (skb), 3 offload, 4 several
    // (then each is listed under `attached`).
    let entries: Vec<&serde_json::Value> = match xdp["mode"].as_u64()? {
        4 => xdp["attached"].as_array()?.iter().collect(),
        _ => vec![xdp],
    };
    Some(AttachedXdp {
        modes: entries.iter().filter_map(|a| a["mode"].as_u64()).collect(),
        program_ids: entries
            .iter()
            .filter_map(|a| a["prog"]["id"].as_u64())
            .map(|id| id as u32)
            .collect(),
    })
}

/// The mode of the XDP program attached to `ifname` (the bpf_link's own info
/// does not say). With several (a replacement in progress), the driver one
/// counts.
fn attached_mode(ifname: &str) -> Option<&'static str> {
    let modes = attached_xdp(ifname)?.modes;
    if modes.contains(&1) {
        Some("native")
    } else if modes.contains(&2) {
        Some("generic")
    } else {
        None
    }
}

/// Removes the pinned link (detaching the program) and every pinned map.
pub fn cleanup(pin_dir: &Path) -> std::io::Result<bool> {
    if !pin_dir.exists() {
        return Ok(false);
    }
    std::fs::remove_dir_all(pin_dir)?;
    Ok(true)
}

/// File descriptor helper for callers that need the raw map (mmap).
pub fn fd_of(map: &aya::maps::Map) -> Option<std::os::fd::BorrowedFd<'_>> {
    match map {
        aya::maps::Map::Array(d) => Some(d.fd().as_fd()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_explicit_other_mode_replaces_a_pinned_attachment() {
        use XdpAttachMode::*;
        assert!(mode_conflicts(Native, Some("generic")));
        assert!(mode_conflicts(Generic, Some("native")));
        for (requested, running) in [
            (Auto, Some("generic")),
            (Auto, Some("native")),
            (Native, Some("native")),
            (Generic, Some("generic")),
            (Native, None),
        ] {
            assert!(
                !mode_conflicts(requested, running),
                "{requested:?} {running:?}"
            );
        }
    }
}

//! The TOA reader for FullNAT backends (`ballast-agent realserver --toa`):
//! an eBPF program set (dataplane-ebpf/src/toa_reader.c) attached to a
//! cgroup that makes `accept()` and `getpeername()` of unmodified
//! applications return the client's address and port from the SYN's TOA
//! option, as LVS's toa.ko does, believed only from trusted directors.
//! Programs' links and maps are pinned under `<pin root>/toa/`, so the
//! reader outlives the command that installed it.
//!
//! Pure parts (the trusted set, the cgroup2 mount, the status text) are
//! separate from the loading and pinning in [`pins`].

pub mod abi;
pub mod cgroup;
pub mod error;
pub mod holders;
pub mod pins;
pub mod status;
pub mod trusted;

pub use error::ToaError;
pub use pins::{InstallOutcome, install, read_status, remove};
pub use status::ToaStatus;

/// The reader's pin directory under the agent's pin root.
pub fn pin_dir(pin_root: &std::path::Path) -> std::path::PathBuf {
    pin_root.join("toa")
}

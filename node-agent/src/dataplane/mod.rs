//! The XDP data plane seen from user space: loading and attaching the
//! program with its maps pinned (`loader`), planning map writes (`plan`,
//! pure) and applying them (`maps`), reading the data plane's clock
//! (`clock`), sweeping expired flows (`sweeper`), and the maps' kernel
//! memory (`map_memory`); `error` is what these can fail with.
pub mod batch;
pub mod carrier;
pub mod clock;
pub mod director;
pub mod error;
pub mod loader;
pub mod map_memory;
pub mod maps;
pub mod neighbours;
pub mod plan;
pub mod ring_alloc;
pub mod sweeper;

pub use director::{ApplyCost, Director, DirectorError, NodeSettings};
pub use error::DataplaneError;
pub use loader::{Dataplane, LoadOptions, XdpAttachMode};
pub use plan::{DesiredBackend, DesiredByKey, DesiredService, PlanError, Programmed};

/// Where an interface's maps and link are pinned, under a pin root
/// (`DEFAULT_PIN_ROOT` unless several agents share a machine, as in tests):
/// keyed by the interface's identity (network namespace and ifindex), not
/// its name; see `lifecycle::identity`.
pub fn pin_dir_for(
    pin_root: &std::path::Path,
    key: &crate::lifecycle::identity::InterfaceKey,
) -> std::path::PathBuf {
    crate::lifecycle::identity::pin_dir(pin_root, key)
}

pub const DEFAULT_PIN_ROOT: &str = "/sys/fs/bpf/ballast";

pub const BPFFS_ROOT: &str = "/sys/fs/bpf";

//! What can go wrong between the agent and its data plane: mounting bpffs,
//! loading, pinning and attaching the program, reading and writing its maps
//! and clock. One type for the loader, the maps and the clock, in a module of
//! its own so that none of them imports another for its error.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("cannot mount bpffs on {path}: {source}")]
    MountBpffs {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot create pin directory {path}: {source}")]
    PinDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot load the XDP object (pinned maps in {pin_dir} may come from an incompatible version: run `ballast-agent cleanup --interface IF`): {source}"
    )]
    Load {
        pin_dir: PathBuf,
        source: Box<aya::EbpfError>,
    },
    #[error("the XDP object has no program {0}")]
    NoProgram(&'static str),
    #[error("XDP program {name}: {source}")]
    Program {
        name: &'static str,
        source: Box<aya::programs::ProgramError>,
    },
    #[error("interface {interface}: cannot attach XDP in {mode} mode: {source}")]
    Attach {
        interface: String,
        mode: &'static str,
        source: Box<aya::programs::ProgramError>,
    },
    #[error(
        "interface {interface} already runs an XDP program this agent did not pin (id {program_ids:?}): \
         an older ballast-agent's pins (`ballast-agent cleanup --interface {interface}` removes them) \
         or another tool's (`ip link set dev {interface} xdp off` detaches it)"
    )]
    Occupied {
        interface: String,
        program_ids: Vec<u32>,
    },
    #[error("pinned link {path}: {reason}")]
    Link { path: PathBuf, reason: String },
    #[error("map {map}: {reason}")]
    Map { map: &'static str, reason: String },
    #[error("data-plane clock: {0}")]
    Clock(String),
}

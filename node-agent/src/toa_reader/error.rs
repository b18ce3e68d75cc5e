//! What can go wrong installing, removing or reading the TOA reader.
use std::path::PathBuf;

use ipnet::Ipv4Net;

#[derive(Debug, thiserror::Error)]
pub enum ToaError {
    #[error(
        "realserver --toa: no director is trusted yet: name the directors' SNAT addresses with --toa-from CIDR,... \
         (the option is believed only from them, so that a client can't claim another address by sending it itself)"
    )]
    NoTrustedDirectors,
    #[error(
        "realserver --toa-from {0}: trusts every source, so any client could claim any address; name the directors' SNAT addresses"
    )]
    TrustsEveryone(Ipv4Net),
    #[error("realserver --toa-from: {count} CIDRs, the reader holds at most {max}")]
    TooManyTrusted { count: usize, max: usize },
    #[error(
        "realserver --cgroup {path}: not a cgroup2 directory (cgroup BPF hooks need the unified hierarchy)"
    )]
    NotCgroup2 { path: PathBuf },
    #[error(
        "realserver --toa: no cgroup2 file system is mounted; mount one or name a cgroup with --cgroup"
    )]
    NoCgroup2Mount,
    #[error("realserver --toa: cannot open the cgroup {path}: {source}")]
    Cgroup {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "realserver --toa: the reader is already installed on the cgroup {installed}, not {asked}; \
         remove it first (realserver --toa --remove)"
    )]
    InstalledElsewhere { installed: String, asked: PathBuf },
    #[error("realserver --cgroup {path}: the path is longer than {max} bytes")]
    CgroupPathTooLong { path: PathBuf, max: usize },
    #[error("TOA reader: {0}")]
    Bpffs(#[source] crate::dataplane::DataplaneError),
    #[error("TOA reader: cannot use the pin directory {path}: {source}")]
    PinDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("TOA reader: loading the object: {0}")]
    Load(#[source] Box<aya::EbpfError>),
    #[error("TOA reader: program {name}: {reason}")]
    Program { name: &'static str, reason: String },
    #[error("TOA reader: map {name}: {reason}")]
    Map { name: &'static str, reason: String },
    #[error("TOA reader: pin {path}: {reason}")]
    Pin { path: PathBuf, reason: String },
    #[error("TOA reader: holder registry {path}: {source}")]
    Holders {
        path: PathBuf,
        source: std::io::Error,
    },
}

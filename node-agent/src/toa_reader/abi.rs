//! The contract with dataplane-ebpf/src/toa_reader.c and
//! include/toa_reader_maps.h: the object, its program and map names, the
//! counters and value layouts. The end-to-end test (tests/toa_reader.rs)
//! loads the object and reads every map through these.

/// The compiled TOA reader, built by build.rs.
pub static TOA_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/toa_reader.bpf.o"));

pub const SOCKOPS_PROGRAM: &str = "toa_sockops";
pub const GETPEERNAME4_PROGRAM: &str = "toa_getpeername4";
/// Dual-stack servers: v4-mapped peers of AF_INET6 sockets.
pub const GETPEERNAME6_PROGRAM: &str = "toa_getpeername6";

pub const TRUSTED_MAP: &str = "toa_trusted";
pub const PEERS_MAP: &str = "toa_peers";
pub const COUNTERS_MAP: &str = "toa_counters";
pub const INSTALL_MAP: &str = "toa_install";
/// Every map, all pinned.
pub const MAPS: [&str; 4] = [TRUSTED_MAP, PEERS_MAP, COUNTERS_MAP, INSTALL_MAP];

/// Link pins: while they exist the programs stay attached.
pub const SOCKOPS_LINK: &str = "link_sockops";
pub const GETPEERNAME4_LINK: &str = "link_getpeername4";
pub const GETPEERNAME6_LINK: &str = "link_getpeername6";
/// Every link pin: installed means all of them exist.
pub const LINKS: [&str; 3] = [SOCKOPS_LINK, GETPEERNAME4_LINK, GETPEERNAME6_LINK];

/// `TOA_MAX_TRUSTED`: entries of the trusted-director trie.
pub const MAX_TRUSTED: usize = 256;
/// `TOA_CGROUP_PATH_MAX`: bytes of the install record's cgroup path.
pub const CGROUP_PATH_MAX: usize = 256;

/// Counter indexes (`TOA_TRANSLATED`, ...).
pub const TRANSLATED: u32 = 0;
pub const UNTRUSTED: u32 = 1;
pub const NO_SAVED_SYN: u32 = 2;

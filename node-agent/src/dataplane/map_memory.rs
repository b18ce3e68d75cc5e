//! The kernel's own accounting of the data plane's map memory: the
//! `memlock:` line of each map descriptor's /proc/self/fdinfo entry (what
//! the kernel charges the map; no bpftool needed). The scale benchmark
//! reports it apart from the agent's RSS.
use std::os::fd::{AsFd, AsRawFd};

use aya::maps::{Map, MapData};

use crate::dataplane::error::DataplaneError;
use crate::dataplane::maps::Maps;

/// One map's kernel memory, in bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapMemory {
    pub map: &'static str,
    pub bytes: u64,
}

/// The `memlock:` figure of an fdinfo text (None: not a BPF map's).
pub fn parse_memlock(fdinfo: &str) -> Option<u64> {
    fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("memlock:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The map data of the kinds the data plane uses.
fn data(map: &Map) -> Option<&MapData> {
    match map {
        Map::Array(d)
        | Map::HashMap(d)
        | Map::LruHashMap(d)
        | Map::LpmTrie(d)
        | Map::PerCpuArray(d)
        | Map::PerCpuHashMap(d) => Some(d),
        _ => None,
    }
}

/// Every map's kernel memory, as the kernel accounts it.
pub fn read(maps: &Maps) -> Result<Vec<MapMemory>, DataplaneError> {
    maps.all()
        .map(|(name, map)| {
            let err = |reason: String| DataplaneError::Map { map: name, reason };
            let d = data(map).ok_or_else(|| err("unexpected map kind".into()))?;
            let fd = d.fd().as_fd().as_raw_fd();
            let path = format!("/proc/self/fdinfo/{fd}");
            let text = std::fs::read_to_string(&path).map_err(|e| err(format!("{path}: {e}")))?;
            let bytes = parse_memlock(&text).ok_or_else(|| err(format!("{path}: no memlock")))?;
            Ok(MapMemory { map: name, bytes })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memlock_is_read_from_a_map_fdinfo() {
        let fdinfo = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t2071\nmap_type:\t2\n\
                      key_size:\t4\nvalue_size:\t8\nmax_entries:\t4194368\nmap_flags:\t0x400\n\
                      map_extra:\t0x0\nmemlock:\t33558528\nmap_id:\t41\nfrozen:\t0\n";
        assert_eq!(parse_memlock(fdinfo), Some(33_558_528));
        assert_eq!(parse_memlock("pos:\t0\nflags:\t02\n"), None);
    }
}

//! Deleting an expired entry only if the data plane has not touched it
//! since the sweep read it.
use aya::Pod;
use aya::maps::{HashMap, MapData, MapError};

/// Deletes `key` if it still holds `seen`. Ok(false): changed or gone.
///
/// The bpf syscalls have no compare-and-delete, so a window remains between
/// the re-read and the delete (a few microseconds): a packet of the flow in
/// that window refreshes (or, the entry being expired, re-creates) the entry
/// and the delete then removes the fresh one. The flow's next packet
/// re-creates it: same backend when the Maglev choice is unchanged (every TCP
/// packet may create a flow, forward.h), though a FullNAT flow may get another
/// SNAT port if its reply entry survived. That needs a packet on a flow idle
/// for longer than its timeout within those microseconds.
pub(super) fn delete_if_unchanged<K: Pod, V: Pod + PartialEq>(
    map: &mut HashMap<&mut MapData, K, V>,
    key: &K,
    seen: &V,
) -> Result<bool, MapError> {
    match map.get(key, 0) {
        Ok(v) if v == *seen => {}
        Ok(_) | Err(MapError::KeyNotFound) => return Ok(false),
        Err(e) => return Err(e),
    }
    match map.remove(key) {
        Ok(()) => Ok(true),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

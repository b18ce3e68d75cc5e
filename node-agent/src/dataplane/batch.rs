//! Walking a hash map in chunks with `BPF_MAP_LOOKUP_BATCH` (aya 0.14 has no
//! wrapper for it). One syscall copies a few thousand entries, where
//! `get_next_key` + `lookup` costs two per entry; and the cursor is a bucket
//! index, so deleting entries behind it (the sweeper does) or entries
//! vanishing under it (LRU eviction, the data plane) never restarts the walk,
//! which a `get_next_key` cursor does when its key disappears.
//!
//! The walk is not a snapshot: entries added or removed in buckets already
//! passed are missed until the next walk; each bucket is read under its lock,
//! so an entry is never seen half-written.
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use aya::Pod;

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// The `batch` member of `union bpf_attr` (linux/bpf.h).
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// How often a chunk is retried when a bucket lock is contended (the kernel
/// answers EBUSY/EDEADLK/ETIMEDOUT rather than spin in some contexts).
const BUSY_RETRIES: u32 = 100;

/// A walk over a (non-per-CPU) hash or LRU hash map whose key and value
/// types have exactly the map's key and value sizes (aya's typed views check
/// this when they are built; `Maps` builds one before walking).
pub struct BatchReader<K: Pod, V: Pod> {
    /// A duplicate of the map's descriptor, so that the map itself stays
    /// free for lookups and deletes during the walk.
    fd: OwnedFd,
    /// Bucket to start the next chunk from (None: the beginning).
    cursor: Option<u32>,
    done: bool,
    keys: Vec<K>,
    values: Vec<V>,
    len: usize,
    _kv: PhantomData<(K, V)>,
}

impl<K: Pod + Default, V: Pod + Default> BatchReader<K, V> {
    /// `chunk`: entries per syscall (grown if one bucket holds more).
    pub fn new(fd: BorrowedFd<'_>, chunk: usize) -> std::io::Result<Self> {
        let chunk = chunk.max(1);
        Ok(Self {
            fd: fd.try_clone_to_owned()?,
            cursor: None,
            done: false,
            keys: vec![K::default(); chunk],
            values: vec![V::default(); chunk],
            len: 0,
            _kv: PhantomData,
        })
    }

    /// The next chunk of entries, or None at the end of the map.
    pub fn next_chunk(&mut self) -> std::io::Result<Option<(&[K], &[V])>> {
        let mut busy = 0;
        loop {
            if self.done {
                return Ok(None);
            }
            let in_batch = self.cursor.unwrap_or(0);
            let mut out_batch: u32 = 0;
            let mut attr = BatchAttr {
                in_batch: if self.cursor.is_some() {
                    &in_batch as *const u32 as u64
                } else {
                    0
                },
                out_batch: &mut out_batch as *mut u32 as u64,
                keys: self.keys.as_mut_ptr() as u64,
                values: self.values.as_mut_ptr() as u64,
                count: self.keys.len() as u32,
                map_fd: self.fd.as_raw_fd() as u32,
                ..Default::default()
            };
            // SAFETY: the kernel writes at most `count` keys and values into
            // buffers that hold `count` of each (K and V have the map's key
            // and value sizes), 4 bytes of bucket index into `out_batch`, and
            // the number of entries copied into `attr.count`.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_bpf,
                    BPF_MAP_LOOKUP_BATCH,
                    &mut attr as *mut BatchAttr,
                    std::mem::size_of::<BatchAttr>() as u32,
                )
            };
            let err = (rc < 0).then(std::io::Error::last_os_error);
            match err.as_ref().and_then(|e| e.raw_os_error()) {
                None => {}
                // The end: this last chunk may still hold entries.
                Some(libc::ENOENT) => self.done = true,
                // One bucket holds more entries than the buffer.
                Some(libc::ENOSPC) if attr.count == 0 => {
                    let n = self.keys.len() * 2;
                    self.keys.resize(n, K::default());
                    self.values.resize(n, V::default());
                    continue;
                }
                Some(
                    libc::EBUSY | libc::EDEADLK | libc::ETIMEDOUT | libc::EINTR | libc::EAGAIN,
                ) if busy < BUSY_RETRIES => {
                    busy += 1;
                    std::thread::yield_now();
                    continue;
                }
                Some(_) => return Err(err.expect("set")),
            }
            self.cursor = Some(out_batch);
            self.len = (attr.count as usize).min(self.keys.len());
            if self.len == 0 && self.done {
                return Ok(None);
            }
            return Ok(Some((&self.keys[..self.len], &self.values[..self.len])));
        }
    }
}

/// Counts a hash map's entries with batch reads.
pub fn count<K: Pod + Default, V: Pod + Default>(
    fd: BorrowedFd<'_>,
    chunk: usize,
) -> std::io::Result<u64> {
    let mut r = BatchReader::<K, V>::new(fd, chunk)?;
    let mut n = 0u64;
    while let Some((keys, _)) = r.next_chunk()? {
        n += keys.len() as u64;
    }
    Ok(n)
}

//! Allocator for regions of the shared Maglev `ring` array, one per service,
//! of the service's table size (from 2 to `maglev::MAX_TABLE_SIZE` slots).
//! A service's table moves to a fresh region on every change, so the old
//! one keeps serving until the service entry flips to the new one.
//!
//! Best fit (the smallest free region that holds the table, lowest offset
//! among equals), found through an index by length: small tables fill
//! small holes and leave large regions whole for large tables, and an
//! allocation costs O(log regions) however fragmented the storage is.
use std::collections::{BTreeMap, BTreeSet};

/// How a service's table size is chosen, for the error that says why the
/// storage ran out.
const SIZE_RULE: &str = "2 slots for one listed backend, else the smallest prime >= 2^k (k >= 8) \
    that is >= 32*N*ceil(log2 N) for N listed backends, at most 1048583; or --maglev-size";

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error(
    "the Maglev ring storage is full: {requested} slots requested, {free} of {capacity} free \
     (largest free region {largest}); raise --ring-slots: it must hold the sum of every \
     service's table size plus the largest one (a changed table is written before the old one \
     is freed); a table's size is {SIZE_RULE}"
)]
pub struct RingFull {
    pub requested: u32,
    pub capacity: u32,
    pub free: u64,
    pub largest: u32,
}

#[derive(Debug, Clone)]
pub struct RingAllocator {
    capacity: u32,
    /// offset -> length of each free region, coalesced.
    free: BTreeMap<u32, u32>,
    /// The same regions as (length, offset), for best fit.
    by_len: BTreeSet<(u32, u32)>,
}

impl RingAllocator {
    pub fn new(capacity: u32) -> Self {
        let mut a = Self {
            capacity,
            free: BTreeMap::new(),
            by_len: BTreeSet::new(),
        };
        a.insert(0, capacity);
        a
    }

    /// An allocator with `used` regions taken (rebuilt from the pinned
    /// services after an agent restart). Overlapping or out-of-range regions
    /// are ignored: they can only come from a corrupted map.
    pub fn with_used(capacity: u32, used: impl IntoIterator<Item = (u32, u32)>) -> Self {
        let mut a = Self::new(capacity);
        let mut used: Vec<_> = used.into_iter().filter(|&(_, len)| len > 0).collect();
        used.sort();
        for (off, len) in used {
            a.take(off, len);
        }
        a
    }

    fn insert(&mut self, off: u32, len: u32) {
        if len > 0 {
            self.free.insert(off, len);
            self.by_len.insert((len, off));
        }
    }

    fn remove(&mut self, off: u32) -> Option<u32> {
        let len = self.free.remove(&off)?;
        self.by_len.remove(&(len, off));
        Some(len)
    }

    fn take(&mut self, off: u32, len: u32) -> bool {
        let Some((&start, &flen)) = self.free.range(..=off).next_back() else {
            return false;
        };
        let end = off as u64 + len as u64;
        let fend = start as u64 + flen as u64;
        if end > fend {
            return false;
        }
        self.remove(start);
        self.insert(start, off - start);
        self.insert(end as u32, (fend - end) as u32);
        true
    }

    pub fn alloc(&mut self, len: u32) -> Result<u32, RingFull> {
        if len == 0 {
            return Ok(0);
        }
        match self.by_len.range((len, 0)..).next() {
            Some(&(_, off)) => {
                self.take(off, len);
                Ok(off)
            }
            None => Err(RingFull {
                requested: len,
                capacity: self.capacity,
                free: self.free_slots(),
                largest: self.by_len.last().map_or(0, |&(l, _)| l),
            }),
        }
    }

    pub fn free(&mut self, off: u32, len: u32) {
        if len == 0 {
            return;
        }
        let mut start = off;
        let mut flen = len;
        if let Some((&p, &plen)) = self.free.range(..off).next_back()
            && p + plen == off
        {
            self.remove(p);
            start = p;
            flen += plen;
        }
        if let Some(nlen) = self.remove(off + len) {
            flen += nlen;
        }
        self.insert(start, flen);
    }

    pub fn free_slots(&self) -> u64 {
        self.free.values().map(|&l| l as u64).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_and_coalesces() {
        let mut a = RingAllocator::new(100);
        let x = a.alloc(30).unwrap();
        let y = a.alloc(30).unwrap();
        let z = a.alloc(30).unwrap();
        assert_eq!((x, y, z), (0, 30, 60));
        assert_eq!(
            a.alloc(11),
            Err(RingFull {
                requested: 11,
                capacity: 100,
                free: 10,
                largest: 10,
            })
        );
        a.free(y, 30);
        a.free(x, 30);
        assert_eq!(a.alloc(60).unwrap(), 0, "freed neighbours coalesce");
        a.free(0, 60);
        a.free(z, 30);
        assert_eq!(a.free_slots(), 100);
        assert_eq!(a.alloc(100).unwrap(), 0);
    }

    #[test]
    fn small_tables_fill_small_holes_and_leave_large_regions_whole() {
        // Regions of varying sizes, as services of 1, 4 and 100 backends get.
        let mut a = RingAllocator::new(3000);
        let small = a.alloc(2).unwrap();
        let mid = a.alloc(257).unwrap();
        let big = a.alloc(2053).unwrap();
        assert_eq!((small, mid, big), (0, 2, 259));
        a.free(mid, 257); // a hole of 257 at 2, and 688 free at the end
        assert_eq!(a.alloc(257).unwrap(), 2, "the hole that fits exactly");
        a.free(small, 2);
        assert_eq!(a.alloc(2).unwrap(), 0, "the 2-slot hole, not the tail");
        assert_eq!(a.alloc(688).unwrap(), 2312, "the tail is still whole");
        let full = a.alloc(1).unwrap_err();
        assert_eq!((full.free, full.largest), (0, 0));
    }

    #[test]
    fn fragmented_storage_says_so() {
        let mut a = RingAllocator::new(1000);
        let regions: Vec<u32> = (0..10).map(|_| a.alloc(100).unwrap()).collect();
        for off in regions.iter().step_by(2) {
            a.free(*off, 100);
        }
        let err = a.alloc(200).unwrap_err();
        assert_eq!(
            err,
            RingFull {
                requested: 200,
                capacity: 1000,
                free: 500,
                largest: 100,
            }
        );
        let msg = err.to_string();
        let cap = crate::maglev::MAX_TABLE_SIZE.to_string();
        for needle in [
            "--ring-slots",
            "largest free region 100",
            "32*N*ceil(log2 N)",
            &cap,
        ] {
            assert!(msg.contains(needle), "{msg}");
        }
    }

    #[test]
    fn rebuilds_from_used_regions() {
        let mut a = RingAllocator::with_used(100, [(10, 10), (50, 20)]);
        assert_eq!(a.free_slots(), 70);
        assert_eq!(a.alloc(10).unwrap(), 0);
        assert_eq!(a.alloc(25).unwrap(), 20);
        assert_eq!(a.alloc(30).unwrap(), 70);
        assert!(a.alloc(6).is_err());
        assert_eq!(a.alloc(5).unwrap(), 45);
    }
}

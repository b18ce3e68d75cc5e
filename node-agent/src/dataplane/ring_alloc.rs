//! First-fit allocator for regions of the shared Maglev `ring` array. A
//! service's table moves to a fresh region on every change, so the old one
//! keeps serving until the service entry flips to the new one.
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "the Maglev ring storage is full: {requested} slots requested, {capacity} in all (raise --ring-slots)"
)]
pub struct RingFull {
    pub requested: u32,
    pub capacity: u32,
}

#[derive(Debug, Clone)]
pub struct RingAllocator {
    capacity: u32,
    /// offset -> length of each free region, coalesced.
    free: BTreeMap<u32, u32>,
}

impl RingAllocator {
    pub fn new(capacity: u32) -> Self {
        let mut free = BTreeMap::new();
        if capacity > 0 {
            free.insert(0, capacity);
        }
        Self { capacity, free }
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

    fn take(&mut self, off: u32, len: u32) -> bool {
        let Some((&start, &flen)) = self.free.range(..=off).next_back() else {
            return false;
        };
        let end = off as u64 + len as u64;
        if end > start as u64 + flen as u64 {
            return false;
        }
        self.free.remove(&start);
        if off > start {
            self.free.insert(start, off - start);
        }
        let fend = start + flen;
        if (end as u32) < fend {
            self.free.insert(end as u32, fend - end as u32);
        }
        true
    }

    pub fn alloc(&mut self, len: u32) -> Result<u32, RingFull> {
        let found = self
            .free
            .iter()
            .find(|&(_, &flen)| flen >= len)
            .map(|(&o, _)| o);
        match found {
            Some(off) if len > 0 => {
                self.take(off, len);
                Ok(off)
            }
            Some(off) => Ok(off),
            None => Err(RingFull {
                requested: len,
                capacity: self.capacity,
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
            self.free.remove(&p);
            start = p;
            flen += plen;
        }
        if let Some(&nlen) = self.free.get(&(off + len)) {
            self.free.remove(&(off + len));
            flen += nlen;
        }
        self.free.insert(start, flen);
    }

    pub fn free_slots(&self) -> u64 {
        self.free.values().map(|&l| l as u64).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_first_fit_and_coalesces() {
        let mut a = RingAllocator::new(100);
        let x = a.alloc(30).unwrap();
        let y = a.alloc(30).unwrap();
        let z = a.alloc(30).unwrap();
        assert_eq!((x, y, z), (0, 30, 60));
        assert_eq!(
            a.alloc(11),
            Err(RingFull {
                requested: 11,
                capacity: 100
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

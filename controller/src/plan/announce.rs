//! Which node answers ARP/NDP for a VIP.
//!
//! Rendezvous (highest random weight) hashing: every node scores
//! hash(vip, node) and the highest wins. When a node leaves, only the VIPs it
//! owned move; when one joins, it takes only the VIPs it now scores highest
//! on. Every controller computes the same owner without coordination.

use std::net::IpAddr;

/// FNV-1a, 64 bit: stable across Rust versions and platforms, unlike
/// `DefaultHasher`, so owners don't move when the controller is rebuilt.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in *part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // Separator, so ("ab","c") and ("a","bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // FNV's high bits mix poorly for inputs that differ in the last byte
    // (node-1, node-2, ...); the murmur3 finaliser spreads them.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The owner of `vip` among `candidates` (any order), or `None` if empty.
pub fn l2_owner<'a>(vip: IpAddr, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let vip = vip.to_string();
    candidates
        .into_iter()
        .max_by_key(|node| (fnv1a(&[vip.as_bytes(), node.as_bytes()]), *node))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_moves_only_when_it_leaves() {
        let nodes: Vec<String> = (0..5).map(|i| format!("node-{i}")).collect();
        let vips: Vec<IpAddr> = (1..=200)
            .map(|i| IpAddr::from([203, 0, 113, i as u8]))
            .collect();
        let owners: Vec<&str> = vips
            .iter()
            .map(|v| l2_owner(*v, nodes.iter().map(String::as_str)).unwrap())
            .collect();
        // Spread: every node owns some.
        for n in &nodes {
            let count = owners.iter().filter(|o| **o == n.as_str()).count();
            assert!((20..=60).contains(&count), "{n} owns {count} of 200");
        }
        // node-2 leaves: only its VIPs move.
        let remaining: Vec<&str> = nodes
            .iter()
            .map(String::as_str)
            .filter(|n| *n != "node-2")
            .collect();
        for (v, before) in vips.iter().zip(&owners) {
            let after = l2_owner(*v, remaining.iter().copied()).unwrap();
            if *before != "node-2" {
                assert_eq!(after, *before, "{v} moved without cause");
            }
        }
        // Order of candidates does not matter.
        let reversed: Vec<&str> = nodes.iter().rev().map(String::as_str).collect();
        assert_eq!(l2_owner(vips[0], reversed.iter().copied()), Some(owners[0]));
        assert_eq!(l2_owner(vips[0], std::iter::empty()), None);
    }
}

//! What one service's entry in the data plane's maps forwards to, read the
//! way the XDP program reads it: the service entry, its Maglev ring, and
//! the backend slots the ring names. Point lookups only (one service among
//! 10k), cheap enough to poll every few tens of microseconds.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ballast_agent::abi::{self, SvcKey};
use ballast_agent::dataplane::maps::Maps;

/// The key of TCP `vip`:`port`.
pub fn tcp_key(vip: Ipv4Addr, port: u16) -> SvcKey {
    SvcKey {
        vip: abi::be_addr(vip),
        port: abi::be_port(port),
        proto: 6,
        pad: 0,
    }
}

/// The backend addresses new flows of `key` go to (the ring's distinct
/// live backends); None while the service is not programmed.
pub fn ring_backends(maps: &Maps, key: &SvcKey) -> Option<BTreeSet<Ipv4Addr>> {
    let svc = maps.service(key).expect("services lookup")?;
    let ids: BTreeSet<u32> = maps
        .ring_read(svc.ring_offset, svc.ring_size)
        .expect("mapping the ring")
        .into_iter()
        .collect();
    Some(
        ids.into_iter()
            .map(|id| maps.backend(id).expect("backends lookup"))
            .filter(|b| b.flags & abi::BACKEND_LIVE != 0 && b.svc_id == svc.id)
            .map(|b| abi::addr_of_be(b.addr))
            .collect(),
    )
}

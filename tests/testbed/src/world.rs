//! The one test world every test, benchmark and the demo share: the
//! addresses of client, director, SNAT, VIP and backends (documentation
//! ranges only) and their fixed MACs. The namespace testbed builds it for
//! real; the packet lab gives the director the same addresses and
//! neighbours, so a frame reads the same in both.
use std::net::Ipv4Addr;

/// Longest interface name the kernel accepts (IFNAMSIZ minus the NUL).
pub const MAX_IFNAME_LEN: usize = 15;

/// Name of the host-side interface in every host namespace.
pub const HOST_IF: &str = "eth0";
/// Name of the bridge in the switch namespace.
pub const BRIDGE_IF: &str = "br0";

pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// Director address on the client subnet; the client's gateway to the VIPs.
pub const DIRECTOR_CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// Director address on the backend subnet; the backends' default gateway.
pub const DIRECTOR_BACKEND_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
/// Source address for FullNAT. Deliberately not configured on the director:
/// the data plane answers ARP for it. See [`crate::Testbed::add_snat_addr_to_director`].
pub const SNAT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 3);
/// Default virtual IP; any address in [`VIP_NET`] is routed to the director.
pub const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
pub const VIP_NET: &str = "203.0.113.0/24";
pub const CLIENT_NET: &str = "192.0.2.0/24";
pub const BACKEND_NET: &str = "198.51.100.0/24";

/// Backend `i` (1-based) has 198.51.100.(10+i).
pub fn backend_addr(i: usize) -> Ipv4Addr {
    assert!(
        (1..=200).contains(&i),
        "backend index {i} out of range 1..=200"
    );
    Ipv4Addr::new(198, 51, 100, 10 + i as u8)
}

/// MACs are fixed (locally administered) so data-plane configuration and
/// packet assertions don't need a neighbour lookup.
pub const CLIENT_MAC: [u8; 6] = [0x02, 0xb1, 0, 0, 0, 0x01];
pub const DIRECTOR_MAC: [u8; 6] = [0x02, 0xb1, 0, 0, 0, 0x02];
pub fn backend_mac(i: usize) -> [u8; 6] {
    let a = backend_addr(i).octets();
    [0x02, 0xb1, 0, 0, 0, a[3]]
}

/// Director `i` (1-based): its client-side and backend-side addresses.
/// Director 1 has [`DIRECTOR_CLIENT_ADDR`] and [`DIRECTOR_BACKEND_ADDR`];
/// director `i` has 192.0.2.(2i) and 198.51.100.(2i) (.3 stays the
/// dedicated SNAT address of the single-director tests).
pub fn director_addrs(i: usize) -> (Ipv4Addr, Ipv4Addr) {
    assert!(
        (1..=9).contains(&i),
        "director index {i} out of range 1..=9"
    );
    let host = 2 * i as u8;
    (
        Ipv4Addr::new(192, 0, 2, host),
        Ipv4Addr::new(198, 51, 100, host),
    )
}

/// Director `i`'s MAC; director 1 has [`DIRECTOR_MAC`].
pub fn director_mac(i: usize) -> [u8; 6] {
    [0x02, 0xb1, 0, 0, 0, 2 * i as u8]
}

pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

//! veth checksum offload. A veth sender with TX checksum offload on hands
//! its peer packets whose TCP/UDP checksum is only partial (the "hardware"
//! that would finish it does not exist); the director's incremental
//! checksum update cannot repair that, and every backend drops the
//! translated packets (TcpInCsumErrors) with nothing counted by Ballast.
//! Real NICs deliver full checksums. So, attached to a veth, the agent says
//! once what the peer must do, naming it when it can, and stays quiet when
//! it can see that the peer already did it.
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GDRVINFO: u32 = 0x03;
const ETHTOOL_GTXCSUM: u32 = 0x16;

/// `struct ethtool_drvinfo` (linux/ethtool.h).
#[repr(C)]
struct DrvInfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

/// `struct ethtool_value`.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// SIOCETHTOOL on `ifname` in the calling thread's namespace, with `data`
/// as the command buffer.
fn ethtool<T>(ifname: &str, data: &mut T) -> std::io::Result<()> {
    if ifname.len() >= libc::IFNAMSIZ {
        return Err(std::io::Error::other(format!("{ifname}: name too long")));
    }
    // SAFETY: socket(2) owned by OwnedFd; ioctl(2) with an ifreq whose name
    // is NUL-terminated and whose data points at a live, correctly laid out
    // ethtool command buffer.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let fd = OwnedFd::from_raw_fd(fd);
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in ifname.bytes().enumerate() {
            req.ifr_name[i] = b as libc::c_char;
        }
        req.ifr_ifru.ifru_data = (data as *mut T).cast();
        if libc::ioctl(fd.as_raw_fd(), SIOCETHTOOL as _, &mut req) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The interface's driver name as the kernel reports it to this namespace
/// (/sys/class/net may show another namespace's view).
pub fn driver(ifname: &str) -> std::io::Result<String> {
    // SAFETY: an all-zero DrvInfo is valid.
    let mut info: DrvInfo = unsafe { std::mem::zeroed() };
    info.cmd = ETHTOOL_GDRVINFO;
    ethtool(ifname, &mut info)?;
    let end = info.driver.iter().position(|&b| b == 0).unwrap_or(32);
    Ok(String::from_utf8_lossy(&info.driver[..end]).into_owned())
}

/// Whether TX checksum offload is on (`ethtool -k`'s tx-checksumming).
pub fn tx_checksum_offload(ifname: &str) -> std::io::Result<bool> {
    let mut v = EthtoolValue {
        cmd: ETHTOOL_GTXCSUM,
        data: 0,
    };
    ethtool(ifname, &mut v)?;
    Ok(v.data != 0)
}

/// The other end of a veth.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peer {
    /// In this namespace, with its TX checksum offload state if known.
    Here {
        name: String,
        tx_csum: Option<bool>,
    },
    /// In another namespace (its ifindex there).
    Elsewhere {
        ifindex: Option<u64>,
    },
    Unknown,
}

/// The peer from `ip -j -d link show dev X`: `link` names it when it is in
/// the same namespace; `link_netnsid` is present when it is not.
pub fn parse_peer(ip_json: &[u8]) -> Peer {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(ip_json) else {
        return Peer::Unknown;
    };
    let l = &v[0];
    if l.get("link_netnsid").is_some() {
        return Peer::Elsewhere {
            ifindex: l["link_index"].as_u64(),
        };
    }
    match l["link"].as_str() {
        Some(name) => Peer::Here {
            name: name.into(),
            tx_csum: None,
        },
        None => Peer::Unknown,
    }
}

/// Something to log once at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Advice {
    Info(String),
    Warn(String),
}

/// What to say about `interface` with driver `driver` and peer `peer`.
pub fn checksum_advice(interface: &str, driver: &str, peer: &Peer) -> Option<Advice> {
    if driver != "veth" {
        return None;
    }
    let why = "a veth sender with TX checksum offload leaves TCP/UDP checksums partial, which the director cannot repair: backends drop every translated packet";
    Some(match peer {
        Peer::Here {
            name,
            tx_csum: Some(false),
        } => Advice::Info(format!(
            "interface {interface} is a veth; its peer {name} has TX checksum offload off, as it must ({why})"
        )),
        Peer::Here { name, .. } => Advice::Warn(format!(
            "interface {interface} is a veth: {why}; run `ethtool -K {name} tx off` on its peer {name}"
        )),
        Peer::Elsewhere { ifindex: Some(i) } => Advice::Warn(format!(
            "interface {interface} is a veth: {why}; run `ethtool -K <peer> tx off` on its peer (ifindex {i} in another network namespace)"
        )),
        Peer::Elsewhere { ifindex: None } | Peer::Unknown => Advice::Warn(format!(
            "interface {interface} is a veth: {why}; run `ethtool -K <peer> tx off` on the peer"
        )),
    })
}

/// Looks at `interface` in the calling thread's namespace.
pub fn check(interface: &str) -> Option<Advice> {
    let driver = driver(interface).ok()?;
    if driver != "veth" {
        return None;
    }
    let peer = match crate::dataplane::loader::ip_link_details(interface) {
        Some(json) => match parse_peer(&json) {
            Peer::Here { name, .. } => Peer::Here {
                tx_csum: tx_checksum_offload(&name).ok(),
                name,
            },
            p => p,
        },
        None => Peer::Unknown,
    };
    checksum_advice(interface, &driver, &peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_read_from_ip_json() {
        let here = br#"[{"ifindex":3,"link":"a1","ifname":"a0","linkinfo":{"info_kind":"veth"}}]"#;
        assert_eq!(
            parse_peer(here),
            Peer::Here {
                name: "a1".into(),
                tx_csum: None
            }
        );
        let away = br#"[{"ifindex":3,"link_index":2,"ifname":"a0","link_netnsid":0}]"#;
        assert_eq!(parse_peer(away), Peer::Elsewhere { ifindex: Some(2) });
        assert_eq!(parse_peer(b"[{}]"), Peer::Unknown);
        assert_eq!(parse_peer(b"garbage"), Peer::Unknown);
    }

    #[test]
    fn only_a_veth_gets_advice_and_the_peer_is_named() {
        assert_eq!(checksum_advice("eth0", "mlx5_core", &Peer::Unknown), None);
        let peer = Peer::Here {
            name: "v1".into(),
            tx_csum: Some(true),
        };
        match checksum_advice("v0", "veth", &peer) {
            Some(Advice::Warn(m)) => {
                assert!(m.contains("ethtool -K v1 tx off"), "{m}");
                assert!(m.contains("partial"), "{m}");
            }
            other => panic!("{other:?}"),
        }
        match checksum_advice("eth0", "veth", &Peer::Elsewhere { ifindex: Some(9) }) {
            Some(Advice::Warn(m)) => assert!(
                m.contains("ethtool -K <peer> tx off") && m.contains("ifindex 9"),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_peer_seen_with_offload_off_gets_no_warning() {
        let peer = Peer::Here {
            name: "v1".into(),
            tx_csum: Some(false),
        };
        assert!(matches!(
            checksum_advice("v0", "veth", &peer),
            Some(Advice::Info(_))
        ));
    }

    #[test]
    fn the_loopback_is_no_veth() {
        // ETHTOOL_GDRVINFO on lo fails (no driver info) or names no veth.
        assert!(check("lo").is_none());
    }
}

//! ARP on the wire, for tests of who answers for an address (the director
//! for its VIPs and SNAT addresses; a DR backend never for the VIP).
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::netns::in_netns;
use crate::world::{CLIENT_ADDR, CLIENT_MAC};

/// One ARP frame, as seen on the interface.
#[derive(Debug, Clone, Copy)]
pub struct Arp {
    /// 1 request, 2 reply.
    pub op: u16,
    /// Sender MAC and address, target address.
    pub sha: [u8; 6],
    pub spa: Ipv4Addr,
    pub tpa: Ipv4Addr,
}

const ETH_P_ARP: u16 = 0x0806;

/// A raw AF_PACKET socket for ARP on one interface of a namespace: sends
/// requests, and sees every ARP frame on the interface from its creation on.
pub struct ArpSocket(OwnedFd);

impl ArpSocket {
    pub fn open(ns: &str, ifname: &str) -> ArpSocket {
        let ifname = std::ffi::CString::new(ifname).unwrap();
        let fd = in_netns(ns, move || -> std::io::Result<OwnedFd> {
            // SAFETY: plain socket/bind on a zeroed sockaddr_ll; the fd is
            // owned right away.
            unsafe {
                let fd = libc::socket(
                    libc::AF_PACKET,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                    ETH_P_ARP.to_be() as libc::c_int,
                );
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let fd = OwnedFd::from_raw_fd(fd);
                let ifindex = libc::if_nametoindex(ifname.as_ptr());
                if ifindex == 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let mut sll: libc::sockaddr_ll = std::mem::zeroed();
                sll.sll_family = libc::AF_PACKET as u16;
                sll.sll_protocol = ETH_P_ARP.to_be();
                sll.sll_ifindex = ifindex as i32;
                if libc::bind(
                    fd.as_raw_fd(),
                    (&sll as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(fd)
            }
        })
        .unwrap()
        .expect("ARP socket");
        ArpSocket(fd)
    }

    /// Broadcasts "who has `tpa`? tell `spa` (`sha`)".
    pub fn request(&self, sha: [u8; 6], spa: Ipv4Addr, tpa: Ipv4Addr) {
        let mut f = Vec::with_capacity(60);
        f.extend_from_slice(&[0xff; 6]);
        f.extend_from_slice(&sha);
        f.extend_from_slice(&ETH_P_ARP.to_be_bytes());
        f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&sha);
        f.extend_from_slice(&spa.octets());
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&tpa.octets());
        f.resize(60, 0);
        // SAFETY: sending a valid buffer on a bound packet socket.
        let n = unsafe { libc::send(self.0.as_raw_fd(), f.as_ptr().cast(), f.len(), 0) };
        assert_eq!(
            n,
            f.len() as isize,
            "sending ARP: {}",
            std::io::Error::last_os_error()
        );
    }

    /// Every ARP frame received (or sent) during the next `dur`, and any
    /// already queued.
    pub fn frames(&self, dur: Duration) -> Vec<Arp> {
        let deadline = Instant::now() + dur;
        let mut out = Vec::new();
        let mut buf = [0u8; 2048];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut pfd = libc::pollfd {
                fd: self.0.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let ready = unsafe { libc::poll(&mut pfd, 1, left.as_millis() as libc::c_int) };
            if ready <= 0 {
                if left.is_zero() {
                    return out;
                }
                continue;
            }
            // SAFETY: receiving into a buffer of the given length.
            let n = unsafe {
                libc::recv(
                    self.0.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 42 {
                continue;
            }
            let b = &buf[..n as usize];
            if b[12..14] != ETH_P_ARP.to_be_bytes() || b[14..20] != [0, 1, 8, 0, 6, 4] {
                continue;
            }
            let ip = |o: usize| Ipv4Addr::new(b[o], b[o + 1], b[o + 2], b[o + 3]);
            out.push(Arp {
                op: u16::from_be_bytes([b[20], b[21]]),
                sha: b[22..28].try_into().unwrap(),
                spa: ip(28),
                tpa: ip(38),
            });
        }
    }

    /// MACs that answer an ARP request for `target` sent from the client.
    pub fn who_answers(&self, target: Ipv4Addr) -> BTreeSet<[u8; 6]> {
        let _ = self.frames(Duration::ZERO);
        let mut macs = BTreeSet::new();
        for _ in 0..3 {
            self.request(CLIENT_MAC, CLIENT_ADDR, target);
            macs.extend(
                self.frames(Duration::from_millis(300))
                    .into_iter()
                    .filter(|a| a.op == 2 && a.spa == target && a.tpa == CLIENT_ADDR)
                    .map(|a| a.sha),
            );
        }
        macs
    }
}

//! The announcer's view of the segment: an AF_PACKET socket on the
//! director's interface for ARP (gratuitous ARPs and probes out, replies
//! in; it sees what the XDP program passes to the kernel, which is every
//! ARP reply), and the interface's carrier.
use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;

use super::arp::ETH_P_ARP;

#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("interface {0} not found")]
    NoInterface(String),
    #[error("interface {ifname}: {what}: {source}")]
    Io {
        ifname: String,
        what: &'static str,
        source: io::Error,
    },
}

pub struct Segment {
    fd: AsyncFd<OwnedFd>,
    ifindex: i32,
    ifname: String,
}

impl Segment {
    /// Opens the socket in the calling thread's network namespace.
    pub fn open(ifname: &str) -> Result<Self, SegmentError> {
        let io_err = |what| {
            let source = io::Error::last_os_error();
            SegmentError::Io {
                ifname: ifname.to_string(),
                what,
                source,
            }
        };
        let cname =
            std::ffi::CString::new(ifname).map_err(|_| SegmentError::NoInterface(ifname.into()))?;
        // SAFETY: a valid NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) } as i32;
        if ifindex == 0 {
            return Err(SegmentError::NoInterface(ifname.into()));
        }
        let proto = ETH_P_ARP.to_be() as i32;
        // SAFETY: plain socket(2).
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                proto,
            )
        };
        if raw < 0 {
            return Err(io_err("socket(AF_PACKET)"));
        }
        // SAFETY: a fresh fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_ll is plain data.
        let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_ARP.to_be();
        sll.sll_ifindex = ifindex;
        // SAFETY: sll is a valid sockaddr_ll of the size given.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io_err("bind"));
        }
        // SAFETY: `fd` is an OwnedFd moved in: nothing else can close it
        // while the AsyncFd holds it.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(|e| SegmentError::Io {
            ifname: ifname.into(),
            what: "registering with the runtime",
            source: e.into(),
        })?;
        Ok(Segment {
            fd,
            ifindex,
            ifname: ifname.to_string(),
        })
    }

    /// Sends one frame; a full socket buffer drops it (the next interval
    /// probes again, the gratuitous ARPs repeat).
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: sockaddr_ll is plain data.
        let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_ARP.to_be();
        sll.sll_ifindex = self.ifindex;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&frame[..6]);
        // SAFETY: frame and sll are valid for the lengths given.
        let rc = unsafe {
            libc::sendto(
                self.fd.get_ref().as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&sll as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The next frame received (an ARP frame on the interface).
    pub async fn recv(&self) -> io::Result<Vec<u8>> {
        loop {
            let mut guard = self.fd.readable().await?;
            let mut buf = [0u8; 128];
            // SAFETY: buf is valid for its length.
            let n = unsafe {
                libc::recv(
                    self.fd.get_ref().as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::WouldBlock {
                    guard.clear_ready();
                    continue;
                }
                return Err(e);
            }
            return Ok(buf[..n as usize].to_vec());
        }
    }

    /// Whether the interface is up with a carrier.
    pub fn carrier(&self) -> io::Result<bool> {
        crate::dataplane::carrier::is_up(&self.ifname)
    }
}

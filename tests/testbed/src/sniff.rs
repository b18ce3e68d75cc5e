//! Minimal capture of IPv4/TCP on one interface inside a namespace, to see
//! what actually reaches a backend (addresses after NAT, TOA option,
//! checksums after XDP rewrites).

use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::netns::in_netns;

/// Packets kept per sniffer; later ones are only counted, so a long
/// transfer can't eat unbounded memory.
const MAX_PACKETS: usize = 100_000;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;

/// TCP option kind used by LVS/DPVS to carry the client address (TOA).
pub const TCPOPT_TOA: u8 = 254;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpOption {
    pub kind: u8,
    /// Option bytes after kind and length.
    pub data: Vec<u8>,
}

#[derive(Clone, Debug)]
pub struct TcpPacket {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub ttl: u8,
    pub ip_id: u16,
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    pub window: u16,
    /// Options in wire order, without NOP and EOL padding.
    pub options: Vec<TcpOption>,
    pub payload_len: usize,
    pub ip_checksum_ok: bool,
    pub tcp_checksum_ok: bool,
    /// Sent by this interface rather than received on it.
    pub outgoing: bool,
}

/// What [`Sniffer::syns`] returns.
pub type SynInfo = TcpPacket;

impl TcpPacket {
    /// A connection-opening SYN (not a SYN-ACK).
    pub fn is_syn(&self) -> bool {
        self.flags & (TCP_SYN | TCP_ACK) == TCP_SYN
    }
    pub fn is_rst(&self) -> bool {
        self.flags & TCP_RST != 0
    }
    pub fn option(&self, kind: u8) -> Option<&TcpOption> {
        self.options.iter().find(|o| o.kind == kind)
    }
    pub fn mss(&self) -> Option<u16> {
        self.option(2)
            .filter(|o| o.data.len() == 2)
            .map(|o| u16::from_be_bytes([o.data[0], o.data[1]]))
    }
    /// Client address from a TOA option (kind 254, length 8: port then
    /// IPv4 address, both network order), as LVS/DPVS encode it.
    pub fn toa(&self) -> Option<SocketAddrV4> {
        let o = self
            .options
            .iter()
            .find(|o| o.kind == TCPOPT_TOA && o.data.len() == 6)?;
        let port = u16::from_be_bytes([o.data[0], o.data[1]]);
        let ip = Ipv4Addr::new(o.data[2], o.data[3], o.data[4], o.data[5]);
        Some(SocketAddrV4::new(ip, port))
    }
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    packets: Mutex<Vec<TcpPacket>>,
    seen: AtomicU64,
}

/// Captures IPv4 TCP packets on `ifname` in a namespace until dropped.
pub struct Sniffer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Sniffer {
    /// Starts capturing TCP packets whose destination port is `dst_port`
    /// (any port if `None`). Capturing has begun when this returns.
    pub fn start(ns: &str, ifname: &str, dst_port: Option<u16>) -> Result<Sniffer> {
        let ifname_owned = ifname.to_string();
        let fd = in_netns(ns, move || open_packet_socket(&ifname_owned))?
            .with_context(|| format!("sniffer on {ifname} in {ns}"))?;
        let shared = Arc::new(Shared::default());
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("sniff-{ifname}"))
            .spawn(move || capture_loop(fd, dst_port, &thread_shared))?;
        Ok(Sniffer {
            shared,
            thread: Some(thread),
        })
    }

    /// All captured packets so far (up to 100 000).
    pub fn packets(&self) -> Vec<TcpPacket> {
        self.shared.packets.lock().unwrap().clone()
    }

    /// Captured connection-opening SYNs, both directions (see
    /// [`TcpPacket::outgoing`]).
    pub fn syns(&self) -> Vec<SynInfo> {
        self.filtered(|p| p.is_syn())
    }

    /// Captured packets matching `pred`.
    pub fn filtered(&self, pred: impl Fn(&TcpPacket) -> bool) -> Vec<TcpPacket> {
        self.shared
            .packets
            .lock()
            .unwrap()
            .iter()
            .filter(|p| pred(p))
            .cloned()
            .collect()
    }

    /// Matching packets seen, including ones beyond the storage cap.
    pub fn seen(&self) -> u64 {
        self.shared.seen.load(Ordering::SeqCst)
    }

    /// Capture is asynchronous: waits until at least `n` packets match
    /// `pred` or `timeout` passes, and returns the matches.
    pub fn wait_for(
        &self,
        n: usize,
        timeout: Duration,
        pred: impl Fn(&TcpPacket) -> bool,
    ) -> Vec<TcpPacket> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.filtered(&pred);
            if got.len() >= n || Instant::now() >= deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// [`Self::wait_for`] received SYNs.
    pub fn wait_for_syns(&self, n: usize, timeout: Duration) -> Vec<SynInfo> {
        self.wait_for(n, timeout, |p| p.is_syn() && !p.outgoing)
    }

    pub fn clear(&self) {
        self.shared.packets.lock().unwrap().clear();
    }
}

impl Drop for Sniffer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn last_os_error(what: &str) -> anyhow::Error {
    anyhow::Error::new(std::io::Error::last_os_error()).context(what.to_string())
}

fn open_packet_socket(ifname: &str) -> Result<OwnedFd> {
    let cname = std::ffi::CString::new(ifname)?;
    // SAFETY: cname is a valid NUL-terminated string.
    let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if ifindex == 0 {
        bail!("interface {ifname} not found");
    }
    // Protocol 0 on creation so nothing is queued from other interfaces
    // before bind narrows the socket to one interface and IPv4.
    // SAFETY: plain socket(2) call.
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(last_os_error("socket(AF_PACKET)"));
    }
    // SAFETY: raw is a fresh fd we own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };

    let rcvbuf: libc::c_int = 8 << 20;
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 50_000,
    };
    // SAFETY: option values point to correctly sized locals.
    unsafe {
        // Best effort: a bigger buffer only reduces drops during bursts.
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&rcvbuf as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        );
        if libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        ) < 0
        {
            return Err(last_os_error("SO_RCVTIMEO"));
        }
    }

    // SAFETY: sockaddr_ll is plain data; all-zero is a valid start.
    let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = (libc::ETH_P_IP as u16).to_be();
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: sll is a valid sockaddr_ll of the given size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(last_os_error("bind(AF_PACKET)"));
    }
    Ok(fd)
}

fn capture_loop(fd: OwnedFd, dst_port: Option<u16>, shared: &Shared) {
    let mut buf = vec![0u8; 65536];
    while !shared.stop.load(Ordering::SeqCst) {
        // SAFETY: sockaddr_ll is plain data.
        let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
        let mut sll_len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: buf and sll are valid for writes of the given lengths.
        let n = unsafe {
            libc::recvfrom(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
                (&mut sll as *mut libc::sockaddr_ll).cast(),
                &mut sll_len,
            )
        };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => continue,
                _ => {
                    tracing::warn!("sniffer recv: {err}");
                    return;
                }
            }
        }
        let Some(mut pkt) = parse_frame(&buf[..n as usize]) else {
            continue;
        };
        if dst_port.is_some_and(|p| p != pkt.dst.port()) {
            continue;
        }
        pkt.outgoing = sll.sll_pkttype == libc::PACKET_OUTGOING;
        shared.seen.fetch_add(1, Ordering::SeqCst);
        let mut packets = shared.packets.lock().unwrap();
        if packets.len() < MAX_PACKETS {
            packets.push(pkt);
        }
    }
}

/// One's-complement sum folded to 16 bits.
fn csum_fold(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

fn csum_add(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    // Fold early so long segments can't overflow.
    (sum & 0xffff) + (sum >> 16)
}

/// Parses an Ethernet frame carrying IPv4/TCP; None for anything else,
/// including non-first fragments and truncated frames.
pub(crate) fn parse_frame(frame: &[u8]) -> Option<TcpPacket> {
    const ETH: usize = 14;
    if frame.len() < ETH + 20 || frame[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = &frame[ETH..];
    if ip[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    // Frames may carry Ethernet padding beyond `total`.
    if ihl < 20 || total < ihl || ip.len() < total || ip[9] != 6 {
        return None;
    }
    let frag = u16::from_be_bytes([ip[6], ip[7]]);
    if frag & 0x3fff != 0 {
        return None;
    }
    let ip = &ip[..total];
    let tcp = &ip[ihl..];
    if tcp.len() < 20 {
        return None;
    }
    let doff = usize::from(tcp[12] >> 4) * 4;
    if doff < 20 || doff > tcp.len() {
        return None;
    }

    let ip_checksum_ok = csum_fold(csum_add(0, &ip[..ihl])) == 0xffff;
    let mut pseudo = [0u8; 12];
    pseudo[..8].copy_from_slice(&ip[12..20]);
    pseudo[9] = 6;
    pseudo[10..12].copy_from_slice(&(tcp.len() as u16).to_be_bytes());
    let tcp_checksum_ok = csum_fold(csum_add(csum_add(0, &pseudo), tcp)) == 0xffff;

    let src_ip = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst_ip = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let be16 = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
    let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);

    Some(TcpPacket {
        dst_mac: frame[0..6].try_into().ok()?,
        src_mac: frame[6..12].try_into().ok()?,
        src: SocketAddrV4::new(src_ip, be16(&tcp[0..2])),
        dst: SocketAddrV4::new(dst_ip, be16(&tcp[2..4])),
        ttl: ip[8],
        ip_id: be16(&ip[4..6]),
        flags: tcp[13],
        seq: be32(&tcp[4..8]),
        ack: be32(&tcp[8..12]),
        window: be16(&tcp[14..16]),
        options: parse_options(&tcp[20..doff]),
        payload_len: tcp.len() - doff,
        ip_checksum_ok,
        tcp_checksum_ok,
        outgoing: false,
    })
}

/// Stops at EOL or at the first malformed option, keeping what came before.
fn parse_options(mut opts: &[u8]) -> Vec<TcpOption> {
    let mut out = Vec::new();
    while let Some(&kind) = opts.first() {
        match kind {
            0 => break,
            1 => opts = &opts[1..],
            _ => {
                let Some(&len) = opts.get(1) else { break };
                let len = usize::from(len);
                if len < 2 || len > opts.len() {
                    break;
                }
                out.push(TcpOption {
                    kind,
                    data: opts[2..len].to_vec(),
                });
                opts = &opts[len..];
            }
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod build {
    //! Builds frames for parser tests.

    use super::{csum_add, csum_fold};
    use std::net::SocketAddrV4;

    pub fn syn_frame(src: SocketAddrV4, dst: SocketAddrV4, options: &[u8]) -> Vec<u8> {
        assert_eq!(options.len() % 4, 0);
        let tcp_len = 20 + options.len();
        let total = 20 + tcp_len;
        let mut f = vec![0u8; 14 + total];
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip = &mut f[14..];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        ip[6] = 0x40; // DF
        ip[8] = 64;
        ip[9] = 6;
        ip[12..16].copy_from_slice(&src.ip().octets());
        ip[16..20].copy_from_slice(&dst.ip().octets());
        let c = !csum_fold(csum_add(0, &ip[..20]));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let (iph, tcp) = ip.split_at_mut(20);
        tcp[0..2].copy_from_slice(&src.port().to_be_bytes());
        tcp[2..4].copy_from_slice(&dst.port().to_be_bytes());
        tcp[4..8].copy_from_slice(&1000u32.to_be_bytes());
        tcp[12] = ((tcp_len / 4) as u8) << 4;
        tcp[13] = super::TCP_SYN;
        tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
        tcp[20..].copy_from_slice(options);
        let mut pseudo = [0u8; 12];
        pseudo[..8].copy_from_slice(&iph[12..20]);
        pseudo[9] = 6;
        pseudo[10..12].copy_from_slice(&(tcp_len as u16).to_be_bytes());
        let c = !csum_fold(csum_add(csum_add(0, &pseudo), tcp));
        tcp[16..18].copy_from_slice(&c.to_be_bytes());
        f
    }
}

//! Real traffic for tests: a backend that identifies itself and echoes,
//! and client-side probes. Blocking std::net on plain threads; sockets are
//! created inside the namespace and keep belonging to it afterwards.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use super::netns::{in_netns, spawn_in_netns};

/// How often blocked server threads look at the stop flag.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    tcp_connections: AtomicU64,
    udp_datagrams: AtomicU64,
    /// Sources seen (TCP connections and UDP datagrams), in arrival order.
    peers: Mutex<Vec<SocketAddrV4>>,
    conn_threads: Mutex<Vec<JoinHandle<()>>>,
}

/// TCP + UDP server on one port inside a namespace. Every TCP connection
/// gets `"<name> <peer_ip>:<peer_port>\n"` and then an echo of everything
/// it sends until EOF; every UDP datagram is answered with the same line.
/// On drop it stops, resets open connections and joins all its threads.
pub struct BackendServer {
    name: String,
    ns: String,
    addr: SocketAddrV4,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    /// The TCP accept loop and its own stop flag, so the listener can close
    /// (a dead service) while open connections and UDP go on.
    acceptor: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

impl BackendServer {
    /// Binds TCP and UDP on `bind` inside `ns`. With port 0 the UDP socket
    /// uses the port the kernel chose for TCP.
    pub fn start(ns: &str, name: &str, bind: SocketAddrV4) -> Result<BackendServer> {
        let (listener, udp) = in_netns(ns, move || -> Result<(TcpListener, UdpSocket)> {
            let listener = TcpListener::bind(bind).with_context(|| format!("tcp bind {bind}"))?;
            let port = listener.local_addr()?.port();
            let udp_addr = SocketAddrV4::new(*bind.ip(), port);
            let udp = UdpSocket::bind(udp_addr).with_context(|| format!("udp bind {udp_addr}"))?;
            Ok((listener, udp))
        })??;
        let addr = match listener.local_addr()? {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(a) => bail!("unexpected IPv6 listener address {a}"),
        };
        udp.set_read_timeout(Some(POLL_INTERVAL))?;
        let shared = Arc::new(Shared::default());
        let mut threads = Vec::new();
        let acceptor = Some(spawn_acceptor(listener, name, &shared)?);
        {
            let shared = shared.clone();
            let name = name.to_string();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("srv-udp-{name}"))
                    .spawn(move || udp_loop(udp, &name, &shared))?,
            );
        }
        Ok(BackendServer {
            name: name.to_string(),
            ns: ns.to_string(),
            addr,
            shared,
            threads,
            acceptor,
        })
    }

    /// Closes the TCP listener: new connections are refused, connections
    /// already accepted keep being served, UDP keeps answering.
    pub fn close_listener(&mut self) {
        if let Some((stop, thread)) = self.acceptor.take() {
            stop.store(true, Ordering::SeqCst);
            // The listener is dropped when its thread returns.
            let _ = thread.join();
        }
    }

    /// Listens again on the same address after [`Self::close_listener`].
    pub fn reopen_listener(&mut self) -> Result<()> {
        if self.acceptor.is_some() {
            return Ok(());
        }
        let bind = self.addr;
        // std sets SO_REUSEADDR, so the bind succeeds beside connections
        // still open on the port.
        let listener = in_netns(&self.ns, move || TcpListener::bind(bind))?
            .with_context(|| format!("tcp bind {bind} again"))?;
        self.acceptor = Some(spawn_acceptor(listener, &self.name, &self.shared)?);
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn ns(&self) -> &str {
        &self.ns
    }
    pub fn local_addr(&self) -> SocketAddrV4 {
        self.addr
    }
    /// TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.tcp_connections.load(Ordering::SeqCst)
    }
    pub fn udp_datagrams(&self) -> u64 {
        self.shared.udp_datagrams.load(Ordering::SeqCst)
    }
    /// Source addresses seen, TCP and UDP, in arrival order.
    pub fn peers(&self) -> Vec<SocketAddrV4> {
        self.shared.peers.lock().unwrap().clone()
    }
}

impl Drop for BackendServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.close_listener();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let conns: Vec<_> = self.shared.conn_threads.lock().unwrap().drain(..).collect();
        for t in conns {
            let _ = t.join();
        }
    }
}

fn greeting(name: &str, peer: SocketAddrV4) -> String {
    format!("{name} {}:{}\n", peer.ip(), peer.port())
}

fn v4(addr: SocketAddr) -> Option<SocketAddrV4> {
    match addr {
        SocketAddr::V4(a) => Some(a),
        SocketAddr::V6(_) => None,
    }
}

/// Waits up to `timeout` for `fd` to become readable. poll(2) rather than a
/// nonblocking accept + sleep so that bursts of connections are accepted
/// without added latency while the stop flag is still seen promptly.
fn wait_readable(fd: std::os::fd::RawFd, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: pfd is a valid pollfd for the duration of the call.
    let n = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as libc::c_int) };
    n > 0
}

fn spawn_acceptor(
    listener: TcpListener,
    name: &str,
    shared: &Arc<Shared>,
) -> Result<(Arc<AtomicBool>, JoinHandle<()>)> {
    let stop = Arc::new(AtomicBool::new(false));
    let (shared, name, own_stop) = (shared.clone(), name.to_string(), stop.clone());
    let thread = std::thread::Builder::new()
        .name(format!("srv-tcp-{name}"))
        .spawn(move || accept_loop(listener, &name, &shared, &own_stop))?;
    Ok((stop, thread))
}

fn accept_loop(listener: TcpListener, name: &str, shared: &Arc<Shared>, stop: &AtomicBool) {
    let fd = listener.as_raw_fd();
    while !shared.stop.load(Ordering::SeqCst) && !stop.load(Ordering::SeqCst) {
        if !wait_readable(fd, POLL_INTERVAL) {
            continue;
        }
        let (stream, peer) = match listener.accept() {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!("{name}: accept: {e}");
                continue;
            }
        };
        let Some(peer) = v4(peer) else { continue };
        shared.tcp_connections.fetch_add(1, Ordering::SeqCst);
        shared.peers.lock().unwrap().push(peer);
        let line = greeting(name, peer);
        let conn_shared = shared.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("srv-conn-{name}"))
            .spawn(move || serve_conn(stream, &line, &conn_shared));
        let mut threads = shared.conn_threads.lock().unwrap();
        // Reap finished handlers so a long run with many probes doesn't
        // accumulate handles.
        let (done, running): (Vec<_>, Vec<_>) = threads.drain(..).partition(|t| t.is_finished());
        *threads = running;
        for t in done {
            let _ = t.join();
        }
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => tracing::warn!("{name}: spawning connection thread: {e}"),
        }
    }
}

fn serve_conn(mut stream: TcpStream, line: &str, shared: &Shared) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    if stream.write_all(line.as_bytes()).is_err() {
        return;
    }
    let _ = stream.set_read_timeout(Some(POLL_INTERVAL));
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // Checked on every iteration: a steady stream never hits the read
        // timeout.
        if shared.stop.load(Ordering::SeqCst) {
            abort(&stream);
            return;
        }
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
    // Half-close so the peer sees EOF after the last echoed byte.
    let _ = stream.shutdown(Shutdown::Write);
}

/// Makes the close send RST, like a crashed backend, so clients see a
/// reset rather than a clean (and possibly short) EOF.
fn abort(stream: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: linger is a valid, correctly sized option value.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

fn udp_loop(sock: UdpSocket, name: &str, shared: &Shared) {
    let mut buf = vec![0u8; 64 * 1024];
    while !shared.stop.load(Ordering::SeqCst) {
        match sock.recv_from(&mut buf) {
            Ok((_, peer)) => {
                let Some(peer) = v4(peer) else { continue };
                shared.udp_datagrams.fetch_add(1, Ordering::SeqCst);
                shared.peers.lock().unwrap().push(peer);
                let _ = sock.send_to(greeting(name, peer).as_bytes(), peer);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => {
                tracing::debug!("{name}: udp recv: {e}");
                std::thread::sleep(POLL_INTERVAL);
            }
        }
    }
}

fn connect_in(ns: &str, target: SocketAddrV4, timeout: Duration) -> Result<TcpStream> {
    in_netns(ns, move || {
        TcpStream::connect_timeout(&target.into(), timeout)
    })?
    .with_context(|| format!("connecting to {target}"))
}

/// Reads up to and including '\n', one byte at a time so nothing after the
/// line is consumed from the socket.
fn read_line(stream: &mut TcpStream, deadline: Instant) -> Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!(
                "timed out reading line (got {:?})",
                String::from_utf8_lossy(&line)
            );
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut byte) {
            Ok(0) => bail!(
                "EOF before end of line (got {:?})",
                String::from_utf8_lossy(&line)
            ),
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                bail!(
                    "timed out reading line (got {:?})",
                    String::from_utf8_lossy(&line)
                )
            }
            Err(e) => return Err(e).context("reading line"),
        }
    }
    String::from_utf8(line).context("line is not UTF-8")
}

/// Connects from `ns` to `target` and returns the first line sent by the
/// server, without the newline (e.g. `"b1 192.0.2.1:40112"`).
pub fn tcp_probe(ns: &str, target: SocketAddrV4, timeout: Duration) -> Result<String> {
    in_netns(ns, move || probe_in_current_ns(target, timeout))?
        .with_context(|| format!("tcp probe {ns} -> {target}"))
}

/// `count` probes like [`tcp_probe`], `concurrency` at a time; each one is a
/// new connection, so a new ephemeral source port. Results are in probe
/// order. Fails as a whole only if the worker threads can't be started.
pub fn tcp_probes(
    ns: &str,
    target: SocketAddrV4,
    count: usize,
    concurrency: usize,
    timeout: Duration,
) -> Result<Vec<Result<String>>> {
    let next = Arc::new(AtomicUsize::new(0));
    let results: Arc<Mutex<Vec<Option<Result<String>>>>> =
        Arc::new(Mutex::new((0..count).map(|_| None).collect()));
    let workers = concurrency.clamp(1, count.max(1));
    let mut threads = Vec::with_capacity(workers);
    for _ in 0..workers {
        let next = next.clone();
        let results = results.clone();
        let ns_owned = ns.to_string();
        // Worker threads live in the namespace, so their connects need no
        // extra thread hop each.
        threads.push(spawn_in_netns(ns, move || {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= count {
                    break;
                }
                let r = probe_in_current_ns(target, timeout)
                    .with_context(|| format!("tcp probe #{i} {ns_owned} -> {target}"));
                results.lock().unwrap()[i] = Some(r);
            }
        })?);
    }
    for t in threads {
        t.join()?;
    }
    let results = std::mem::take(&mut *results.lock().unwrap());
    Ok(results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(anyhow!("probe not run"))))
        .collect())
}

fn probe_in_current_ns(target: SocketAddrV4, timeout: Duration) -> Result<String> {
    let deadline = Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&target.into(), timeout)
        .with_context(|| format!("connecting to {target}"))?;
    let line = read_line(&mut stream, deadline)?;
    // Our FIN goes out with nothing unread on our side, so the close is
    // orderly (no RST) even through a load balancer.
    let _ = stream.shutdown(Shutdown::Write);
    Ok(line)
}

/// Sends one datagram from `ns` to `target` and returns the reply without
/// the newline.
pub fn udp_probe(ns: &str, target: SocketAddrV4, timeout: Duration) -> Result<String> {
    let sock = in_netns(ns, || UdpSocket::bind("0.0.0.0:0"))?.context("udp bind")?;
    sock.connect(target)?;
    sock.set_read_timeout(Some(timeout))?;
    sock.send(b"probe\n")
        .with_context(|| format!("udp send to {target}"))?;
    let mut buf = [0u8; 2048];
    let n = sock
        .recv(&mut buf)
        .with_context(|| format!("udp probe {ns} -> {target}: no reply"))?;
    let s = String::from_utf8_lossy(&buf[..n]);
    Ok(s.trim_end_matches('\n').to_string())
}

/// Bytes per write in [`tcp_transfer`]; with `chunk_delay` this sets the
/// duration: about `bytes / TRANSFER_CHUNK * chunk_delay`.
pub const TRANSFER_CHUNK: usize = 1024;

#[derive(Debug, Clone)]
pub struct TransferReport {
    /// The server's first line (names the backend that served it).
    pub greeting: String,
    pub bytes_sent: usize,
    pub bytes_received: usize,
    pub elapsed: Duration,
}

/// How long the echo may stall before the transfer is declared broken.
const TRANSFER_STALL: Duration = Duration::from_secs(5);

fn pattern_byte(offset: usize) -> u8 {
    // 251 is prime and doesn't divide the chunk size, so a lost, duplicated
    // or reordered chunk shows up as a mismatch.
    (offset % 251) as u8
}

/// Streams `bytes` through the backend's echo in [`TRANSFER_CHUNK`] writes
/// with `chunk_delay` between them, and checks every byte comes back in
/// order. Fails on reset, mismatch, or a stall longer than 5 s. Blocks for
/// the whole transfer; run it on a thread to do something meanwhile.
pub fn tcp_transfer(
    ns: &str,
    target: SocketAddrV4,
    bytes: usize,
    chunk_delay: Duration,
) -> Result<TransferReport> {
    transfer(ns, target, bytes, chunk_delay)
        .with_context(|| format!("tcp transfer {ns} -> {target}"))
}

fn transfer(
    ns: &str,
    target: SocketAddrV4,
    bytes: usize,
    chunk_delay: Duration,
) -> Result<TransferReport> {
    let start = Instant::now();
    let mut stream = connect_in(ns, target, TRANSFER_STALL)?;
    let greeting = read_line(&mut stream, Instant::now() + TRANSFER_STALL)?;
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(TRANSFER_STALL))?;
    let mut writer = stream.try_clone()?;
    let sender = std::thread::Builder::new()
        .name("tcp-transfer-tx".into())
        .spawn(move || -> Result<usize> {
            let mut sent = 0;
            let mut chunk = vec![0u8; TRANSFER_CHUNK];
            while sent < bytes {
                let n = TRANSFER_CHUNK.min(bytes - sent);
                for (j, b) in chunk[..n].iter_mut().enumerate() {
                    *b = pattern_byte(sent + j);
                }
                writer
                    .write_all(&chunk[..n])
                    .with_context(|| format!("send failed after {sent} bytes"))?;
                sent += n;
                if !chunk_delay.is_zero() && sent < bytes {
                    std::thread::sleep(chunk_delay);
                }
            }
            writer.shutdown(Shutdown::Write)?;
            Ok(sent)
        })?;

    let received = receive_pattern(&mut stream, bytes);
    // On a receive error, unblock the sender instead of waiting for its
    // write timeout.
    if received.is_err() {
        let _ = stream.shutdown(Shutdown::Both);
    }
    let sent = sender
        .join()
        .map_err(|p| anyhow!("sender panicked: {}", super::netns::panic_message(&*p)))?;
    let bytes_received = received?;
    let bytes_sent = sent?;
    Ok(TransferReport {
        greeting,
        bytes_sent,
        bytes_received,
        elapsed: start.elapsed(),
    })
}

fn receive_pattern(stream: &mut TcpStream, bytes: usize) -> Result<usize> {
    stream.set_read_timeout(Some(TRANSFER_STALL))?;
    let mut got = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if got + n > bytes {
                    bail!("echo returned more than sent ({} > {bytes})", got + n);
                }
                if let Some(j) = (0..n).find(|&j| buf[j] != pattern_byte(got + j)) {
                    bail!(
                        "echo corrupted at offset {}: got {:#04x}, want {:#04x}",
                        got + j,
                        buf[j],
                        pattern_byte(got + j)
                    );
                }
                got += n;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                bail!("echo stalled for {TRANSFER_STALL:?} after {got} of {bytes} bytes")
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                bail!("connection reset after {got} of {bytes} bytes echoed")
            }
            Err(e) => return Err(e).with_context(|| format!("after {got} of {bytes} bytes")),
        }
    }
    if got != bytes {
        bail!("EOF after {got} of {bytes} bytes echoed");
    }
    Ok(got)
}

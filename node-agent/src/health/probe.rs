//! One probe from this host (the director) to a backend's address and
//! target port: a TCP connect, or an HTTP/1.1 GET whose status line is
//! compared with the expected status. Every probe is bounded by its timeout.
//!
//! The HTTP request is written by hand: a probe needs one request line and
//! the status line of the answer, not an HTTP client.

use std::net::SocketAddr;
use std::time::Duration;

use ballast_api::Probe;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Enough for any sane status line; a backend that sends more before the
/// first CRLF is not speaking HTTP.
const MAX_STATUS_LINE: usize = 1024;

/// Why a probe failed, in words fit for `stats` and a metric label.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error("connect: {0}")]
    Connect(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("http: {0}")]
    Io(String),
    #[error("http: status {got}, expected {want}")]
    Status { got: u16, want: u16 },
    #[error("http: not an HTTP response: {0}")]
    BadResponse(String),
    #[error("udp: {0}")]
    Udp(String),
}

/// Runs `probe` against `addr`, giving up after `timeout`.
pub async fn run(addr: SocketAddr, probe: &Probe, timeout: Duration) -> Result<(), ProbeError> {
    if let Probe::Udp { payload, expect } = probe {
        return udp(addr, payload, expect.as_deref(), timeout).await;
    }
    let attempt = async {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| ProbeError::Connect(io_reason(&e)))?;
        match probe {
            Probe::Tcp => Ok(()),
            Probe::Http {
                path,
                expect_status,
            } => http_get(stream, addr, path, *expect_status).await,
            Probe::Udp { .. } => unreachable!("handled above"),
        }
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or(Err(ProbeError::Timeout(timeout)))
}

/// One datagram from a connected socket: a backend with nothing on the
/// port makes the kernel answer ICMP port unreachable, which the socket
/// reports as ECONNREFUSED. Without `expect`, silence until the timeout is
/// health (a UDP server need not answer an arbitrary datagram); with it,
/// only a reply that starts with it is.
async fn udp(
    addr: SocketAddr,
    payload: &[u8],
    expect: Option<&[u8]>,
    timeout: Duration,
) -> Result<(), ProbeError> {
    let bind: SocketAddr = if addr.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| ProbeError::Udp(format!("bind: {}", io_reason(&e))))?;
    sock.connect(addr)
        .await
        .map_err(|e| ProbeError::Connect(io_reason(&e)))?;
    sock.send(payload)
        .await
        .map_err(|e| ProbeError::Udp(format!("send: {}", io_reason(&e))))?;
    let mut buf = vec![0u8; expect.map_or(1, |e| e.len().max(1))];
    match tokio::time::timeout(timeout, sock.recv(&mut buf)).await {
        Err(_) if expect.is_none() => Ok(()),
        Err(_) => Err(ProbeError::Udp(format!("no reply within {timeout:?}"))),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            Err(ProbeError::Udp("port unreachable".into()))
        }
        Ok(Err(e)) => Err(ProbeError::Udp(format!("receive: {}", io_reason(&e)))),
        Ok(Ok(n)) => match expect {
            None => Ok(()),
            Some(e) if n >= e.len() && buf[..e.len()] == *e => Ok(()),
            Some(_) => Err(ProbeError::Udp(format!(
                "reply {:?} does not start with the expected text",
                String::from_utf8_lossy(&buf[..n])
            ))),
        },
    }
}

async fn http_get(
    mut stream: TcpStream,
    addr: SocketAddr,
    path: &str,
    want: u16,
) -> Result<(), ProbeError> {
    stream
        .write_all(request(addr, path).as_bytes())
        .await
        .map_err(|e| ProbeError::Io(format!("sending the request: {}", io_reason(&e))))?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    let line_end = loop {
        if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
            break i;
        }
        if buf.len() >= MAX_STATUS_LINE {
            return Err(ProbeError::BadResponse(format!(
                "no status line in the first {MAX_STATUS_LINE} bytes"
            )));
        }
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| ProbeError::Io(format!("reading the response: {}", io_reason(&e))))?;
        if n == 0 {
            return Err(ProbeError::BadResponse(if buf.is_empty() {
                "connection closed without a response".into()
            } else {
                "connection closed inside the status line".into()
            }));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let got = parse_status_line(&buf[..line_end])?;
    if got == want {
        Ok(())
    } else {
        Err(ProbeError::Status { got, want })
    }
}

/// `GET <path> HTTP/1.1` with the headers a server needs to answer it and
/// close. Bytes a request line cannot carry are percent-encoded.
fn request(addr: SocketAddr, path: &str) -> String {
    let mut target = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_graphic() {
            target.push(b as char);
        } else {
            target.push_str(&format!("%{b:02X}"));
        }
    }
    format!(
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: ballast-health-check\r\n\
         Accept: */*\r\nConnection: close\r\n\r\n"
    )
}

/// `HTTP/1.x NNN reason` -> NNN.
fn parse_status_line(line: &[u8]) -> Result<u16, ProbeError> {
    let text = String::from_utf8_lossy(line);
    let mut parts = text.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/") || code.len() != 3 {
        return Err(ProbeError::BadResponse(format!(
            "status line {:?}",
            truncate(&text, 64)
        )));
    }
    code.parse()
        .map_err(|_| ProbeError::BadResponse(format!("status line {:?}", truncate(&text, 64))))
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// "connection refused" rather than "Connection refused (os error 111)":
/// the errno adds nothing for a reader and would split metric label values.
fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    let s = match s.find(" (os error") {
        Some(i) => &s[..i],
        None => &s,
    };
    s.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A local listener that answers every connection with `response`
    /// after reading the request head; returns its address.
    async fn http_server(response: &'static str) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut b = [0u8; 512];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut b).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&b[..n]),
                        }
                    }
                    let req = String::from_utf8_lossy(&head);
                    assert!(req.starts_with("GET /health%20z HTTP/1.1\r\n"), "{req}");
                    assert!(req.contains(&format!("\r\nHost: {addr}\r\n")), "{req}");
                    let _ = s.write_all(response.as_bytes()).await;
                });
            }
        });
        addr
    }

    fn http(expect_status: u16) -> Probe {
        Probe::Http {
            path: "/health z".into(),
            expect_status,
        }
    }

    const T: Duration = Duration::from_secs(2);

    #[tokio::test]
    async fn http_probe_compares_the_status() {
        let ok = http_server("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
        assert_eq!(run(ok, &http(200), T).await, Ok(()));
        assert_eq!(
            run(ok, &http(204), T).await,
            Err(ProbeError::Status {
                got: 200,
                want: 204
            })
        );
        let unavailable = http_server("HTTP/1.0 503 Service Unavailable\r\n\r\n").await;
        let err = run(unavailable, &http(200), T).await.unwrap_err();
        assert_eq!(err.to_string(), "http: status 503, expected 200");
    }

    #[tokio::test]
    async fn http_probe_refuses_what_is_not_http() {
        let garbage = http_server("SSH-2.0-OpenSSH_9.6\r\n").await;
        let err = run(garbage, &http(200), T).await.unwrap_err();
        assert!(matches!(err, ProbeError::BadResponse(_)), "{err}");
        let silent_close = http_server("").await;
        let err = run(silent_close, &http(200), T).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "http: not an HTTP response: connection closed without a response"
        );
    }

    #[tokio::test]
    async fn http_probe_times_out_on_a_silent_server() {
        // Accepts (the kernel completes the handshake from the backlog) but
        // never answers.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let t = Duration::from_millis(200);
        assert_eq!(run(addr, &http(200), t).await, Err(ProbeError::Timeout(t)));
        drop(l);
    }

    #[tokio::test]
    async fn tcp_probe_connects_or_says_why_not() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        assert_eq!(run(addr, &Probe::Tcp, T).await, Ok(()));
        drop(l);
        let err = run(addr, &Probe::Tcp, T).await.unwrap_err();
        assert_eq!(err.to_string(), "connect: connection refused");
    }

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 404 Not Found"), Ok(404));
        assert_eq!(parse_status_line(b"HTTP/1.1 200"), Ok(200));
        assert!(parse_status_line(b"HTTP/1.1 20x OK").is_err());
        assert!(parse_status_line(b"ICY 200 OK").is_err());
    }

    /// A UDP echo server on loopback that answers "pong <what it got>".
    async fn udp_server() -> SocketAddr {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        tokio::spawn(async move {
            let mut b = [0u8; 512];
            while let Ok((n, from)) = sock.recv_from(&mut b).await {
                let mut reply = b"pong ".to_vec();
                reply.extend_from_slice(&b[..n]);
                let _ = sock.send_to(&reply, from).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn udp_probes_see_port_unreachable_and_check_replies() {
        let up = udp_server().await;
        let quiet = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let closed = {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            s.local_addr().unwrap()
        };
        let t = Duration::from_millis(300);
        let probe = |expect: Option<&str>| Probe::Udp {
            payload: b"ping".to_vec(),
            expect: expect.map(|e| e.as_bytes().to_vec()),
        };
        // No reply asked for: silence is health, port unreachable is not.
        assert_eq!(run(up, &probe(None), t).await, Ok(()));
        assert_eq!(
            run(quiet.local_addr().unwrap(), &probe(None), t).await,
            Ok(())
        );
        assert_eq!(
            run(closed, &probe(None), t).await,
            Err(ProbeError::Udp("port unreachable".into()))
        );
        // A reply asked for: it must come, and start with the text.
        assert_eq!(run(up, &probe(Some("pong ping")), t).await, Ok(()));
        let err = run(up, &probe(Some("PONG")), t).await.unwrap_err();
        assert!(err.to_string().contains("does not start with"), "{err}");
        let err = run(quiet.local_addr().unwrap(), &probe(Some("pong")), t)
            .await
            .unwrap_err();
        assert_eq!(err, ProbeError::Udp(format!("no reply within {t:?}")));
    }
}

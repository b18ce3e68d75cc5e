//! One HTTP/1.1 GET from inside a network namespace, as a user's `curl`
//! does: the agent's `/metrics` and `/healthz`.
use std::io::{Read, Write};
use std::net::{SocketAddrV4, TcpStream};
use std::time::Duration;

use crate::netns::in_netns;

/// Connect and read timeout.
const TIMEOUT: Duration = Duration::from_secs(5);

/// A response: status, headers in order, body.
pub struct Http {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Http {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 GET from inside `ns`, `Connection: close`.
pub fn get(ns: &str, addr: SocketAddrV4, path: &str) -> anyhow::Result<Http> {
    let mut s = in_netns(ns, move || {
        TcpStream::connect_timeout(&addr.into(), TIMEOUT)
    })??;
    s.set_read_timeout(Some(TIMEOUT))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8(raw)?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no end of headers in {text:?}"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("bad status line in {head:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let r = Http {
        status,
        headers,
        body: body.to_string(),
    };
    anyhow::ensure!(
        r.header("transfer-encoding").is_none(),
        "chunked response not expected"
    );
    if let Some(len) = r.header("content-length") {
        anyhow::ensure!(
            len.parse::<usize>()? == r.body.len(),
            "content-length {len}, body {} bytes",
            r.body.len()
        );
    }
    Ok(r)
}

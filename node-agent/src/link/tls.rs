//! The agent's side of the link's mutual TLS: its client certificate (which
//! names it `spiffe://ballast/agent/<node>`), its key, and the CA that
//! issued the controller's certificate, checked against the name the agent
//! expects the controller to carry (the controller Service's DNS name).
//!
//! The files are read at every dial, and watched while a stream is open:
//! when one changes (modification time or size), the agent reconnects with
//! the new ones, so rotation needs no restart. A file that fails to load
//! keeps the agent dialling (and logging why) while it forwards what it holds.
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// The files `--tls-cert`, `--tls-key`, `--tls-ca` name, and the server name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientTls {
    /// PEM: the agent's certificate chain (leaf first).
    pub cert: PathBuf,
    /// PEM: its private key.
    pub key: PathBuf,
    /// PEM: the CA certificate(s) that issue the controller's certificate.
    pub ca: PathBuf,
    /// The DNS name the controller's certificate must carry.
    pub server_name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientTlsError {
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: no PEM {what} in it", path.display())]
    NoPem { path: PathBuf, what: &'static str },
}

fn read(path: &Path) -> Result<Vec<u8>, ClientTlsError> {
    std::fs::read(path).map_err(|source| ClientTlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Refuses a file with no PEM block of the kind, so that a half-written
/// rotation is reported as what it is rather than as a handshake failure.
fn pem(path: &Path, what: &'static str) -> Result<Vec<u8>, ClientTlsError> {
    let bytes = read(path)?;
    if !String::from_utf8_lossy(&bytes).contains("-----BEGIN ") {
        return Err(ClientTlsError::NoPem {
            path: path.to_path_buf(),
            what,
        });
    }
    Ok(bytes)
}

impl ClientTls {
    /// Reads the files into tonic's client configuration.
    pub fn load(&self) -> Result<ClientTlsConfig, ClientTlsError> {
        let ca = pem(&self.ca, "certificate")?;
        let cert = pem(&self.cert, "certificate")?;
        let key = pem(&self.key, "private key")?;
        Ok(ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .identity(Identity::from_pem(cert, key))
            .domain_name(self.server_name.clone()))
    }

    fn paths(&self) -> [&Path; 3] {
        [&self.cert, &self.key, &self.ca]
    }
}

/// What the files looked like when last read.
pub struct TlsWatch {
    tls: ClientTls,
    seen: Vec<Option<(SystemTime, u64)>>,
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl TlsWatch {
    pub fn new(tls: &ClientTls) -> Self {
        let mut w = TlsWatch {
            tls: tls.clone(),
            seen: Vec::new(),
        };
        w.mark();
        w
    }

    /// Records the files as they are now (just before they are read).
    pub fn mark(&mut self) {
        self.seen = self.tls.paths().iter().map(|p| stamp(p)).collect();
    }

    /// True when a file changed since [`Self::mark`].
    pub fn changed(&mut self) -> bool {
        let now: Vec<_> = self.tls.paths().iter().map(|p| stamp(p)).collect();
        now != self.seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> PathBuf {
        let d = std::env::temp_dir().join(format!("ballast-client-tls-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_file_without_pem_is_named() {
        let d = scratch();
        let good = d.join("good.pem");
        let bad = d.join("bad.pem");
        std::fs::write(
            &good,
            "-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        std::fs::write(&bad, "half written").unwrap();
        let tls = ClientTls {
            cert: good.clone(),
            key: bad.clone(),
            ca: good.clone(),
            server_name: "controller.example".into(),
        };
        let err = tls.load().unwrap_err().to_string();
        assert!(err.contains("bad.pem: no PEM private key"), "{err}");
        let missing = ClientTls {
            ca: d.join("missing.pem"),
            ..tls
        };
        let err = missing.load().unwrap_err().to_string();
        assert!(err.contains("missing.pem"), "{err}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_rewrite_is_noticed() {
        let d = scratch().join("watch");
        std::fs::create_dir_all(&d).unwrap();
        let f = d.join("cert.pem");
        std::fs::write(&f, "one").unwrap();
        let tls = ClientTls {
            cert: f.clone(),
            key: f.clone(),
            ca: f.clone(),
            server_name: "x".into(),
        };
        let mut w = TlsWatch::new(&tls);
        assert!(!w.changed());
        std::fs::write(&f, "three").unwrap(); // size changes even within one mtime tick
        assert!(w.changed());
        w.mark();
        assert!(!w.changed());
        std::fs::remove_dir_all(&d).unwrap();
    }
}

//! The link's mutual TLS: the controller's certificate and key, the CA that
//! issues agents' client certificates, and the agent identity convention.
//!
//! Identity: an agent's client certificate carries the SAN URI
//! `spiffe://ballast/agent/<node name>` (SPIFFE-shaped, so cert-manager and
//! SPIRE can issue it; a URI rather than a CN because CNs are deprecated for
//! identity and a URI SAN cannot be mistaken for a DNS name). The server
//! accepts only chains to `--tls-client-ca`, then requires that URI and that
//! the Hello's node name equals the node it names.
//!
//! `--agent-identity shared` also accepts the URI `spiffe://ballast/agent`
//! (exactly), for any node: one certificate for every agent, which is what
//! a Helm chart can hand out through one Secret. The trade-off: a node whose
//! key is stolen can then speak for every other node (receive their states,
//! report for them), where a per-node certificate limits it to its own.
//! Per-node certificates need a per-node issuer, such as cert-manager's
//! csi-driver or SPIRE; `node` (the default) requires them.
//!
//! The files are re-read when they change (checked on every new
//! connection by modification time and size), so rotating them needs no
//! restart; a rewrite that does not parse keeps the previous configuration
//! and logs why.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ServerConfig, WebPkiClientVerifier};

/// Prefix of an agent's SAN URI; the node name follows.
pub const AGENT_URI_PREFIX: &str = "spiffe://ballast/agent/";
/// The SAN URI of a certificate shared by every agent (`--agent-identity
/// shared`).
pub const SHARED_AGENT_URI: &str = "spiffe://ballast/agent";

/// Which agent certificates the link accepts (`--agent-identity`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum AgentIdentity {
    /// Only `spiffe://ballast/agent/<node>`, for that node.
    #[default]
    Node,
    /// Also `spiffe://ballast/agent`, for any node.
    Shared,
}

/// What an agent's certificate says it may speak for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentClaim {
    /// `spiffe://ballast/agent/<node>`: that node only.
    Node(String),
    /// `spiffe://ballast/agent`: any node, if the link accepts shared
    /// certificates.
    Shared,
}

/// Why an agent may not speak for the node its Hello names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthorizeError {
    #[error("Hello names node {hello:?} but the client certificate is node {certified:?}'s")]
    OtherNode { hello: String, certified: String },
    #[error(
        "the client certificate is the shared agent identity {SHARED_AGENT_URI}, which this \
         controller refuses (--agent-identity node needs {AGENT_URI_PREFIX}<node>)"
    )]
    SharedRefused,
}

/// The three files `--tls-cert`, `--tls-key`, `--tls-client-ca` name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM: the controller's certificate chain (leaf first).
    pub cert: PathBuf,
    /// PEM: its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM: the CA certificate(s) that issue agents' client certificates.
    pub client_ca: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {what}: {source}", path.display())]
    Pem {
        path: PathBuf,
        what: &'static str,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{}: no certificate in it", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: no usable CA certificate in it: {source}", path.display())]
    ClientCa {
        path: PathBuf,
        source: rustls::server::VerifierBuilderError,
    },
    #[error("{} with {}: {source}", cert.display(), key.display())]
    KeyPair {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
}

/// Why a client certificate does not identify an agent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("no client certificate")]
    NoCertificate,
    #[error("the client certificate does not parse: {0}")]
    Unparsable(String),
    #[error(
        "the client certificate names no agent (expected one SAN URI {AGENT_URI_PREFIX}<node> \
         or {SHARED_AGENT_URI})"
    )]
    NotAnAgent,
    /// The agent URIs it carries.
    #[error("the client certificate names several agents: {0:?}")]
    Ambiguous(Vec<String>),
}

/// The process-wide rustls provider: `ring`, installed explicitly, because
/// with two providers in the dependency tree rustls cannot pick one and
/// panics. A second call (or one made elsewhere first) is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What an agent's certificate claims: exactly one agent URI, either
/// node-bound or the shared one.
pub fn agent_claim(cert: &CertificateDer<'_>) -> Result<AgentClaim, IdentityError> {
    let parsed = webpki::EndEntityCert::try_from(cert)
        .map_err(|e| IdentityError::Unparsable(e.to_string()))?;
    let claims: Vec<(&str, AgentClaim)> = parsed
        .valid_uri_names()
        .filter_map(|uri| {
            if uri == SHARED_AGENT_URI {
                return Some((uri, AgentClaim::Shared));
            }
            let node = uri.strip_prefix(AGENT_URI_PREFIX)?;
            (!node.is_empty() && !node.contains('/')).then(|| (uri, AgentClaim::Node(node.into())))
        })
        .collect();
    match <[_; 1]>::try_from(claims) {
        Ok([(_, claim)]) => Ok(claim),
        Err(v) if v.is_empty() => Err(IdentityError::NotAnAgent),
        Err(v) => Err(IdentityError::Ambiguous(
            v.into_iter().map(|(uri, _)| uri.to_string()).collect(),
        )),
    }
}

/// The claim made by the leaf of a peer's chain.
pub fn peer_agent_claim(
    certs: Option<&[CertificateDer<'static>]>,
) -> Result<AgentClaim, IdentityError> {
    let leaf = certs
        .and_then(|c| c.first())
        .ok_or(IdentityError::NoCertificate)?;
    agent_claim(leaf)
}

/// Whether `claim` may speak for `hello_node` under `mode`.
pub fn authorize(
    mode: AgentIdentity,
    claim: &AgentClaim,
    hello_node: &str,
) -> Result<(), AuthorizeError> {
    match (claim, mode) {
        (AgentClaim::Node(node), _) if node == hello_node => Ok(()),
        (AgentClaim::Node(node), _) => Err(AuthorizeError::OtherNode {
            hello: hello_node.into(),
            certified: node.clone(),
        }),
        (AgentClaim::Shared, AgentIdentity::Shared) => Ok(()),
        (AgentClaim::Shared, AgentIdentity::Node) => Err(AuthorizeError::SharedRefused),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            path: path.to_path_buf(),
            what: "certificates",
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The server configuration the files describe: our chain and key, client
/// certificates required and verified against the client CA, HTTP/2 only.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certificates(&files.cert)?;
    let key =
        PrivateKeyDer::from_pem_slice(&read(&files.key)?).map_err(|source| TlsError::Pem {
            path: files.key.clone(),
            what: "private key",
            source,
        })?;
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(certificates(&files.client_ca)?);
    let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider())
        .build()
        .map_err(|source| TlsError::ClientCa {
            path: files.client_ca.clone(),
            source,
        })?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|source| TlsError::KeyPair {
            cert: files.cert.clone(),
            key: files.key.clone(),
            source,
        })?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Modification time and size of each file: what "changed" means.
type Stamps = Vec<Option<(SystemTime, u64)>>;

fn stamps(files: &TlsFiles) -> Stamps {
    [&files.cert, &files.key, &files.client_ca]
        .iter()
        .map(|p| {
            let m = std::fs::metadata(p).ok()?;
            Some((m.modified().ok()?, m.len()))
        })
        .collect()
}

/// A server configuration that follows its files.
pub struct ReloadingConfig {
    files: TlsFiles,
    current: Mutex<Loaded>,
}

struct Loaded {
    config: Arc<ServerConfig>,
    /// The files' stamps when `config` was loaded.
    stamps: Stamps,
    /// Stamps of a later version that failed to load (warned about once).
    failed: Option<Stamps>,
}

impl ReloadingConfig {
    /// Loads the files; an error here stops the server from starting.
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let before = stamps(&files);
        let config = server_config(&files)?;
        Ok(Self {
            files,
            current: Mutex::new(Loaded {
                config,
                stamps: before,
                failed: None,
            }),
        })
    }

    /// The configuration for a new connection, re-read first if a file
    /// changed since it was loaded. A change that does not load keeps the
    /// previous configuration (and is retried on the next connection).
    pub fn get(&self) -> Arc<ServerConfig> {
        let now = stamps(&self.files);
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if now != current.stamps && current.failed.as_ref() != Some(&now) {
            match server_config(&self.files) {
                Ok(config) => {
                    tracing::info!(cert = %self.files.cert.display(), "link TLS files changed; reloaded");
                    *current = Loaded {
                        config,
                        stamps: now,
                        failed: None,
                    };
                }
                Err(e) => {
                    tracing::warn!(error = %e, "link TLS files changed but do not load; keeping the previous ones");
                    current.failed = Some(now);
                }
            }
        }
        current.config.clone()
    }
}

#[cfg(test)]
mod tests;

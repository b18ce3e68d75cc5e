//! The link's certificates when the controller issues them itself
//! (`--tls-bootstrap`; the I/O is `k8s::tls_bootstrap`): a self-signed CA
//! (10 years), the controller's serving certificate (its Service's DNS
//! names, 90 days) and the agents' shared client certificate (SAN URI
//! `spiffe://ballast/agent`, 90 days), and when each is due for renewal.
//! Pure: the clock is a parameter.
//!
//! Renewal follows cert-manager's default: a certificate is renewed once
//! less than a third of its lifetime is left (day 60 of 90), so a renewal
//! that fails has a month of retries before anything expires, and an agent
//! that misses a rotation (kubelet syncs Secret volumes within a minute or
//! two) still holds a valid certificate. A certificate that does not chain
//! to the CA, whose key is not its own, or whose names are not the ones
//! wanted is renewed at once.

use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, UnixTime};
use time::OffsetDateTime;

use super::tls::SHARED_AGENT_URI;

/// The CA's lifetime: long, because replacing it cuts every agent off
/// until they hold certificates from the new one.
pub const CA_LIFETIME: Duration = Duration::from_secs(3650 * 24 * 3600);
/// A serving or agent certificate's lifetime.
pub const LEAF_LIFETIME: Duration = Duration::from_secs(90 * 24 * 3600);
/// How far back a new certificate's validity starts, so a peer whose
/// clock is a little behind ours accepts it at once.
const BACKDATE: Duration = Duration::from_secs(300);
/// The CA's subject.
pub const CA_NAME: &str = "Ballast link CA";

/// A certificate and its private key, PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertKey {
    pub cert: String,
    pub key: String,
}

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("the CA certificate does not parse: {0}")]
    CaCertificate(String),
    #[error("the CA private key does not parse: {0}")]
    CaKey(String),
    #[error("the CA private key is not the CA certificate's")]
    CaKeyMismatch,
    #[error("{what}: {source}")]
    Rcgen {
        what: &'static str,
        source: rcgen::Error,
    },
}

/// What a certificate is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Usage {
    /// The controller's serving certificate, for these DNS names.
    Server(Vec<String>),
    /// The agents' shared client certificate.
    Agent,
}

/// Whether a certificate is kept or replaced, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Renewal {
    /// Good until `renew_at`.
    Keep {
        renew_at: SystemTime,
    },
    Renew(RenewWhy),
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RenewWhy {
    #[error("there is none")]
    Missing,
    #[error("it does not parse: {0}")]
    Unparsable(String),
    #[error("the private key is not the certificate's")]
    KeyMismatch,
    #[error("it is not valid from the CA for its use now: {0}")]
    NotFromCa(String),
    #[error("it names {have:?}, not {want:?}")]
    Names {
        have: Vec<String>,
        want: Vec<String>,
    },
    #[error("less than a third of its lifetime is left (renewal was due at {due})")]
    Due { due: String },
}

/// `t` as RFC 3339 (UTC), for errors and logs.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    match k8s_openapi::jiff::Timestamp::from_second(secs) {
        Ok(t) => t.to_string(),
        Err(_) => format!("{secs}s after the epoch"),
    }
}

fn offset(t: SystemTime) -> OffsetDateTime {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn rcgen_err(what: &'static str) -> impl FnOnce(rcgen::Error) -> IssueError {
    move |source| IssueError::Rcgen { what, source }
}

/// A new self-signed CA, valid for [`CA_LIFETIME`] from `now`.
pub fn new_ca(now: SystemTime) -> Result<CertKey, IssueError> {
    let mut params =
        CertificateParams::new(Vec::<String>::new()).map_err(rcgen_err("CA parameters"))?;
    params.distinguished_name.push(DnType::CommonName, CA_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = offset(now - BACKDATE);
    params.not_after = offset(now + CA_LIFETIME);
    let key = KeyPair::generate().map_err(rcgen_err("CA key"))?;
    let cert = params
        .self_signed(&key)
        .map_err(rcgen_err("CA certificate"))?;
    Ok(CertKey {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// A CA read back: issues and checks leaves.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

/// The DER of the first certificate in `pem`.
fn first_der(pem: &str) -> Result<CertificateDer<'static>, String> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .ok_or_else(|| "no PEM certificate in it".to_string())?
        .map_err(|e| e.to_string())
}

impl Authority {
    /// The CA of `ca`: its certificate must parse, and its key must be the
    /// certificate's (a mismatch would issue leaves nothing verifies).
    pub fn from_pem(ca: &CertKey) -> Result<Authority, IssueError> {
        let cert_der = first_der(&ca.cert).map_err(IssueError::CaCertificate)?;
        let key = KeyPair::from_pem(&ca.key).map_err(|e| IssueError::CaKey(e.to_string()))?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&cert_der)
            .map_err(|e| IssueError::CaCertificate(e.to_string()))?;
        if parsed.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(IssueError::CaKeyMismatch);
        }
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)
            .map_err(|e| IssueError::CaCertificate(e.to_string()))?;
        Ok(Authority {
            issuer,
            cert_pem: ca.cert.clone(),
            cert_der,
        })
    }

    /// The CA certificate, PEM (what peers trust).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A new leaf for `usage`, valid for [`LEAF_LIFETIME`] from `now`.
    pub fn issue(&self, usage: &Usage, now: SystemTime) -> Result<CertKey, IssueError> {
        let mut params = CertificateParams::new(Vec::<String>::new())
            .map_err(rcgen_err("certificate parameters"))?;
        match usage {
            Usage::Server(names) => {
                params
                    .distinguished_name
                    .push(DnType::CommonName, "ballast-controller");
                params.subject_alt_names = names
                    .iter()
                    .map(|n| {
                        n.as_str()
                            .try_into()
                            .map(SanType::DnsName)
                            .map_err(|e| IssueError::Rcgen {
                                what: "a --tls-service-names entry",
                                source: e,
                            })
                    })
                    .collect::<Result<_, _>>()?;
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            }
            Usage::Agent => {
                params
                    .distinguished_name
                    .push(DnType::CommonName, "ballast-agent");
                let uri = SHARED_AGENT_URI.try_into().map_err(|e| IssueError::Rcgen {
                    what: "the agent URI",
                    source: e,
                })?;
                params.subject_alt_names = vec![SanType::URI(uri)];
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            }
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = offset(now - BACKDATE);
        params.not_after = offset(now + LEAF_LIFETIME);
        let key = KeyPair::generate().map_err(rcgen_err("key"))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(rcgen_err("certificate"))?;
        Ok(CertKey {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }

    /// Whether `held` (None: nothing held) serves `usage` until the next
    /// check, or must be replaced now.
    pub fn renewal(&self, held: Option<&CertKey>, usage: &Usage, now: SystemTime) -> Renewal {
        match self.check(held, usage, now) {
            Ok(renew_at) if now < renew_at => Renewal::Keep { renew_at },
            Ok(renew_at) => Renewal::Renew(RenewWhy::Due {
                due: rfc3339(renew_at),
            }),
            Err(why) => Renewal::Renew(why),
        }
    }

    /// When `held` is due: two thirds into its lifetime.
    fn check(
        &self,
        held: Option<&CertKey>,
        usage: &Usage,
        now: SystemTime,
    ) -> Result<SystemTime, RenewWhy> {
        let held = held.ok_or(RenewWhy::Missing)?;
        let der = first_der(&held.cert).map_err(RenewWhy::Unparsable)?;
        let key = KeyPair::from_pem(&held.key)
            .map_err(|e| RenewWhy::Unparsable(format!("the private key: {e}")))?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| RenewWhy::Unparsable(e.to_string()))?;
        if parsed.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(RenewWhy::KeyMismatch);
        }
        self.verify(&der, usage, now).map_err(RenewWhy::NotFromCa)?;
        let have = san_names(&parsed);
        let want = match usage {
            Usage::Server(names) => names.clone(),
            Usage::Agent => vec![SHARED_AGENT_URI.to_string()],
        };
        if sorted(have.clone()) != sorted(want.clone()) {
            return Err(RenewWhy::Names { have, want });
        }
        let validity = parsed.validity();
        let from = epoch_plus(validity.not_before.timestamp());
        let until = epoch_plus(validity.not_after.timestamp());
        let lifetime = until.duration_since(from).unwrap_or_default();
        Ok(until - lifetime / 3)
    }

    /// Chains to this CA, for the usage, at `now` (webpki, as peers check).
    fn verify(
        &self,
        der: &CertificateDer<'_>,
        usage: &Usage,
        now: SystemTime,
    ) -> Result<(), String> {
        let anchor = webpki::anchor_from_trusted_cert(&self.cert_der).map_err(|e| e.to_string())?;
        let leaf = webpki::EndEntityCert::try_from(der).map_err(|e| e.to_string())?;
        let key_usage = match usage {
            Usage::Server(_) => webpki::KeyUsage::server_auth(),
            Usage::Agent => webpki::KeyUsage::client_auth(),
        };
        let since = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        leaf.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &[anchor],
            &[],
            UnixTime::since_unix_epoch(since),
            key_usage,
            None,
            None,
        )
        .map(|_| ())
        .map_err(|e| format!("{e:?}"))
    }
}

fn epoch_plus(secs: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64)
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// The DNS names and URIs a certificate carries.
fn san_names(cert: &x509_parser::certificate::X509Certificate<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_string()),
            GeneralName::URI(u) => Some(u.to_string()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests;

//! `--tls-bootstrap`: the controller issues the link's certificates itself,
//! so a Helm install needs neither cert-manager nor a hook Job.
//!
//! - The CA lives in a Secret (`--tls-ca-secret`, type kubernetes.io/tls)
//!   in the controller's namespace. The first replica to start creates it;
//!   two racing replicas both create, one gets 409 and reads the winner's.
//!   A CA Secret that exists but does not parse is an error naming the
//!   Secret and the key, never replaced: a new CA would cut every agent
//!   off until it holds a certificate from it.
//! - Every replica issues its own serving certificate (the link Service's
//!   DNS names, `--tls-service-names`) into `--tls-dir`, with the CA as the
//!   client CA, and serves from those files through the link's reloading
//!   [`TlsFiles`](crate::link::tls::TlsFiles).
//! - The leader keeps the agents' Secret (`--tls-agent-secret`: tls.crt,
//!   tls.key, ca.crt) present; agents mount it and re-read it on change.
//! - Both are checked every few minutes and renewed once a third of their
//!   lifetime is left (see `link::issue`).
//!
//! Each step takes the time as a parameter, so tests drive expiry.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use tokio::sync::watch;

use crate::link::issue::{Authority, CertKey, IssueError, RenewWhy, Renewal, Usage, new_ca};
use crate::link::tls::TlsFiles;

/// How often certificates are checked for renewal.
pub const CHECK_EVERY: Duration = Duration::from_secs(300);
const TLS_CRT: &str = "tls.crt";
const TLS_KEY: &str = "tls.key";
const CA_CRT: &str = "ca.crt";

/// What `--tls-bootstrap` and its flags say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootstrapConfig {
    /// The controller's namespace (`POD_NAMESPACE`), where both Secrets live.
    pub namespace: String,
    /// `--tls-ca-secret`.
    pub ca_secret: String,
    /// `--tls-agent-secret`.
    pub agent_secret: String,
    /// `--tls-service-names`: the DNS names of the serving certificate.
    pub service_names: Vec<String>,
    /// `--tls-dir`: where this replica writes tls.crt, tls.key, ca.crt.
    pub dir: PathBuf,
}

impl BootstrapConfig {
    /// The files this replica serves the link from.
    pub fn tls_files(&self) -> TlsFiles {
        TlsFiles {
            cert: self.dir.join(TLS_CRT),
            key: self.dir.join(TLS_KEY),
            client_ca: self.dir.join(CA_CRT),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("Secret {namespace}/{name}: {source}")]
    Api {
        namespace: String,
        name: String,
        source: kube::Error,
    },
    #[error(
        "Secret {namespace}/{name} has no key {key:?}: it is not a CA this controller can use; \
         give it {TLS_CRT} and {TLS_KEY} (PEM) or delete it to have a new CA made \
         (agents then need certificates from the new one)"
    )]
    MissingKey {
        namespace: String,
        name: String,
        key: &'static str,
    },
    #[error(
        "Secret {namespace}/{name}, key {key:?}: {why}; refusing to replace a CA \
         (fix the Secret, or delete it to have a new CA made)"
    )]
    Garbled {
        namespace: String,
        name: String,
        key: &'static str,
        why: String,
    },
    #[error("issuing a certificate: {0}")]
    Issue(#[from] IssueError),
    #[error("writing {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What a check did to a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Issued now, and why.
    Issued(RenewWhy),
    /// Still good until then.
    Kept { renew_at: SystemTime },
    /// Another writer changed the Secret between our read and our write;
    /// the next check decides again.
    Raced,
}

fn secret_api(client: &kube::Client, cfg: &BootstrapConfig) -> Api<Secret> {
    Api::namespaced(client.clone(), &cfg.namespace)
}

fn api_error(cfg: &BootstrapConfig, name: &str) -> impl FnOnce(kube::Error) -> BootstrapError {
    let (namespace, name) = (cfg.namespace.clone(), name.to_string());
    move |source| BootstrapError::Api {
        namespace,
        name,
        source,
    }
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// A kubernetes.io/tls Secret holding `data`.
fn tls_secret(cfg: &BootstrapConfig, name: &str, data: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(cfg.namespace.clone()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_string(),
                "ballast-controller".to_string(),
            )])),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Secret::default()
    }
}

/// Key `key` of `secret` as text; None when absent.
fn text(secret: &Secret, key: &str) -> Option<Result<String, String>> {
    let bytes = secret.data.as_ref()?.get(key)?;
    Some(String::from_utf8(bytes.0.clone()).map_err(|_| "not UTF-8 text".to_string()))
}

/// The CA a Secret holds, or an error naming the Secret and the key.
fn authority_of(cfg: &BootstrapConfig, secret: &Secret) -> Result<Authority, BootstrapError> {
    let name = &cfg.ca_secret;
    let garbled = |key: &'static str, why: String| BootstrapError::Garbled {
        namespace: cfg.namespace.clone(),
        name: name.clone(),
        key,
        why,
    };
    let field = |key: &'static str| match text(secret, key) {
        None => Err(BootstrapError::MissingKey {
            namespace: cfg.namespace.clone(),
            name: name.clone(),
            key,
        }),
        Some(Err(why)) => Err(garbled(key, why)),
        Some(Ok(t)) => Ok(t),
    };
    let ca = CertKey {
        cert: field(TLS_CRT)?,
        key: field(TLS_KEY)?,
    };
    Authority::from_pem(&ca).map_err(|e| match e {
        IssueError::CaCertificate(why) => garbled(TLS_CRT, why),
        IssueError::CaKey(why) => garbled(TLS_KEY, why),
        IssueError::CaKeyMismatch => garbled(TLS_KEY, "not the key of tls.crt".into()),
        other => BootstrapError::Issue(other),
    })
}

/// The CA from its Secret, made (and stored) when there is none.
pub async fn ensure_ca(
    client: &kube::Client,
    cfg: &BootstrapConfig,
    now: SystemTime,
) -> Result<Authority, BootstrapError> {
    let api = secret_api(client, cfg);
    match api
        .get_opt(&cfg.ca_secret)
        .await
        .map_err(api_error(cfg, &cfg.ca_secret))?
    {
        Some(secret) => authority_of(cfg, &secret),
        None => create_ca(client, cfg, now).await,
    }
}

/// Creates the CA Secret with a new CA; when another replica created it
/// first (409), that one is read and used instead.
pub async fn create_ca(
    client: &kube::Client,
    cfg: &BootstrapConfig,
    now: SystemTime,
) -> Result<Authority, BootstrapError> {
    let api = secret_api(client, cfg);
    let ca = new_ca(now)?;
    let secret = tls_secret(
        cfg,
        &cfg.ca_secret,
        &[(TLS_CRT, &ca.cert), (TLS_KEY, &ca.key)],
    );
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => {
            tracing::info!(secret = %cfg.ca_secret, namespace = %cfg.namespace, "made a new link CA");
            Ok(Authority::from_pem(&ca)?)
        }
        Err(e) if is_conflict(&e) => {
            let theirs = api
                .get(&cfg.ca_secret)
                .await
                .map_err(api_error(cfg, &cfg.ca_secret))?;
            authority_of(cfg, &theirs)
        }
        Err(e) => Err(api_error(cfg, &cfg.ca_secret)(e)),
    }
}

fn read_optional(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// Writes `text` to `path` through a temporary file and a rename, so a
/// reader sees the old file or the new one, never half of one.
fn write_atomic(path: &Path, text: &str, private: bool) -> Result<(), BootstrapError> {
    let err = |source| BootstrapError::Write {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(err)?;
    file.write_all(text.as_bytes()).map_err(err)?;
    file.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Keeps this replica's serving certificate in `--tls-dir` current: issued
/// when missing, due, or not what is wanted; the CA written beside it as
/// the client CA. The key is written before the certificate: the link
/// server reloads on each change and keeps its last good configuration
/// while the two do not match.
pub fn ensure_serving_files(
    authority: &Authority,
    cfg: &BootstrapConfig,
    now: SystemTime,
) -> Result<Outcome, BootstrapError> {
    let files = cfg.tls_files();
    std::fs::create_dir_all(&cfg.dir).map_err(|source| BootstrapError::Write {
        path: cfg.dir.clone(),
        source,
    })?;
    if read_optional(&files.client_ca).as_deref() != Some(authority.cert_pem()) {
        write_atomic(&files.client_ca, authority.cert_pem(), false)?;
    }
    let held = match (read_optional(&files.cert), read_optional(&files.key)) {
        (Some(cert), Some(key)) => Some(CertKey { cert, key }),
        _ => None,
    };
    let usage = Usage::Server(cfg.service_names.clone());
    match authority.renewal(held.as_ref(), &usage, now) {
        Renewal::Keep { renew_at } => Ok(Outcome::Kept { renew_at }),
        Renewal::Renew(why) => {
            let leaf = authority.issue(&usage, now)?;
            write_atomic(&files.key, &leaf.key, true)?;
            write_atomic(&files.cert, &leaf.cert, false)?;
            tracing::info!(dir = %cfg.dir.display(), reason = %why, "issued this replica's link serving certificate");
            Ok(Outcome::Issued(why))
        }
    }
}

/// Keeps the agents' Secret current (the leader's duty): created when
/// missing, replaced when due, not from this CA, or carrying another CA.
pub async fn ensure_agent_secret(
    client: &kube::Client,
    authority: &Authority,
    cfg: &BootstrapConfig,
    now: SystemTime,
) -> Result<Outcome, BootstrapError> {
    let api = secret_api(client, cfg);
    let name = &cfg.agent_secret;
    let current = api.get_opt(name).await.map_err(api_error(cfg, name))?;
    let held = current.as_ref().and_then(|s| {
        Some(CertKey {
            cert: text(s, TLS_CRT)?.ok()?,
            key: text(s, TLS_KEY)?.ok()?,
        })
    });
    let why = match authority.renewal(held.as_ref(), &Usage::Agent, now) {
        Renewal::Keep { renew_at } => {
            let ca = current.as_ref().and_then(|s| text(s, CA_CRT)?.ok());
            if ca.as_deref() == Some(authority.cert_pem()) {
                return Ok(Outcome::Kept { renew_at });
            }
            RenewWhy::NotFromCa(format!("its {CA_CRT} is not the CA's"))
        }
        Renewal::Renew(why) => why,
    };
    let leaf = authority.issue(&Usage::Agent, now)?;
    let mut secret = tls_secret(
        cfg,
        name,
        &[
            (TLS_CRT, &leaf.cert),
            (TLS_KEY, &leaf.key),
            (CA_CRT, authority.cert_pem()),
        ],
    );
    let written = match current {
        None => api.create(&PostParams::default(), &secret).await,
        Some(old) => {
            // With the resourceVersion read: a concurrent writer (a former
            // leader) makes this a 409 instead of a lost update.
            secret.metadata.resource_version = old.metadata.resource_version;
            api.replace(name, &PostParams::default(), &secret).await
        }
    };
    match written {
        Ok(_) => {
            tracing::info!(secret = %name, namespace = %cfg.namespace, reason = %why, "issued the agents' link certificate");
            Ok(Outcome::Issued(why))
        }
        Err(e) if is_conflict(&e) => Ok(Outcome::Raced),
        Err(e) => Err(api_error(cfg, name)(e)),
    }
}

/// The renewal loop: every `every`, and whenever this replica becomes the
/// leader, re-reads the CA, renews this replica's serving certificate, and
/// (leading) the agents' Secret. Failures are logged and retried at the
/// next check: what is held stays valid for weeks past its renewal point.
pub async fn maintain(
    client: kube::Client,
    cfg: BootstrapConfig,
    mut leader: watch::Receiver<bool>,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            r = leader.changed() => {
                if r.is_err() {
                    return;
                }
                if !*leader.borrow_and_update() {
                    continue;
                }
            }
        }
        let now = SystemTime::now();
        let authority = match ensure_ca(&client, &cfg, now).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("link TLS bootstrap: {e}");
                continue;
            }
        };
        if let Err(e) = ensure_serving_files(&authority, &cfg, now) {
            tracing::warn!("link TLS bootstrap: {e}");
        }
        if *leader.borrow() {
            match ensure_agent_secret(&client, &authority, &cfg, now).await {
                Ok(Outcome::Raced) => {
                    tracing::info!(secret = %cfg.agent_secret, "the agents' Secret changed while renewing it; checking again next time")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("link TLS bootstrap: {e}"),
            }
        }
    }
}

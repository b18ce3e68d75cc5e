//! `ballast-controller`: the Kubernetes side of Ballast.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use ballast_controller::k8s::leader::LeaseConfig;
use ballast_controller::k8s::run::{DEFAULT_DEBOUNCE, DEFAULT_RESYNC, Options, start};
use ballast_controller::k8s::tls_bootstrap::{self, BootstrapConfig};
use ballast_controller::link::tls::{AgentIdentity, TlsFiles};
use ballast_controller::link::{AgentReports, Security};
use ballast_controller::metrics::Metrics;
use ballast_controller::plan::PlanOptions;

#[derive(Parser)]
#[command(
    version,
    about = "Ballast controller: VirtualServers and LoadBalancer Services in, per-node plans and status out"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller against the cluster in the kubeconfig or the
    /// in-cluster service account.
    Run(Box<RunArgs>),
    /// Print the CRD manifests, or write them into a directory.
    Crdgen {
        /// Directory to write one file per CRD into (e.g. `crds`).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Args)]
struct RunArgs {
    /// Also serve LoadBalancer Services that set no loadBalancerClass.
    #[arg(long)]
    default_class: bool,
    /// Where /metrics, /healthz and /readyz listen.
    #[arg(long, default_value = "0.0.0.0:9090")]
    metrics_addr: SocketAddr,
    /// Namespace of the leader-election Lease (and of the Secrets of
    /// --tls-bootstrap).
    #[arg(long, env = "POD_NAMESPACE", default_value = "ballast-system")]
    lease_namespace: String,
    #[arg(long, default_value = "ballast-controller")]
    lease_name: String,
    /// This replica's identity in the Lease (defaults to the host name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Seconds a silent leader keeps the Lease.
    #[arg(long, default_value_t = 15)]
    lease_duration: u64,
    /// Seconds a disconnected agent keeps its node's duties (10 heartbeats
    /// by default); also how long a new leader or a restarted controller
    /// waits for agents to reconnect before planning without the missing
    /// ones. Fractions allowed (e.g. 1.5).
    #[arg(long, default_value = "10", value_parser = parse_grace)]
    agent_grace: Duration,
    #[command(flatten)]
    link: LinkArgs,
}

/// The agent link (gRPC `ballast.v1.NodeSync`, mutual TLS).
#[derive(Args)]
struct LinkArgs {
    /// Where agents connect (the controller Service's target port).
    #[arg(long, default_value = "0.0.0.0:9443")]
    link_addr: SocketAddr,
    /// PEM file: the controller's certificate chain for the link (leaf
    /// first); agents check it against their CA and expected name.
    #[arg(long, requires_all = ["tls_key", "tls_client_ca"])]
    tls_cert: Option<PathBuf>,
    /// PEM file: the private key of --tls-cert.
    #[arg(long, requires_all = ["tls_cert", "tls_client_ca"])]
    tls_key: Option<PathBuf>,
    /// PEM file: the CA that issues agents' client certificates. Only
    /// certificates from it with the SAN URI spiffe://ballast/agent/<node>
    /// are accepted, for that node only (see --agent-identity). All three
    /// files are re-read when they change.
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    tls_client_ca: Option<PathBuf>,
    /// Which agent certificates are accepted: `node`, only SAN URI
    /// spiffe://ballast/agent/<node> for that node; `shared`, also
    /// spiffe://ballast/agent for any node (one certificate for every
    /// agent: simpler to issue, but a node whose key is stolen can speak
    /// for every other node).
    #[arg(long, value_enum, default_value_t = AgentIdentity::Node)]
    agent_identity: AgentIdentity,
    /// Serve the link over plain TCP, without TLS: any client can claim any
    /// node. For tests only; logged loudly at every start.
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key", "tls_client_ca"])]
    insecure: bool,
    #[command(flatten)]
    bootstrap: BootstrapArgs,
}

/// The controller issues the link's certificates itself.
#[derive(Args)]
struct BootstrapArgs {
    /// Issue the link's certificates: a CA kept in --tls-ca-secret (made
    /// when missing), this replica's serving certificate in --tls-dir, and
    /// (the leader) one client certificate for every agent in
    /// --tls-agent-secret (tls.crt, tls.key, ca.crt; SAN URI
    /// spiffe://ballast/agent, so it needs --agent-identity shared). All
    /// are renewed when a third of their 90 days is left. The Secrets are
    /// in --lease-namespace (POD_NAMESPACE).
    #[arg(
        long,
        conflicts_with_all = ["tls_cert", "tls_key", "tls_client_ca", "insecure"],
        requires = "tls_service_names"
    )]
    tls_bootstrap: bool,
    /// The Secret holding the CA (type kubernetes.io/tls).
    #[arg(long, default_value = "ballast-ca", requires = "tls_bootstrap")]
    tls_ca_secret: String,
    /// The Secret the leader keeps the agents' certificate in.
    #[arg(long, default_value = "ballast-agent-tls", requires = "tls_bootstrap")]
    tls_agent_secret: String,
    /// DNS names of the controller's serving certificate, comma separated:
    /// the names agents dial (e.g. the link Service's
    /// NAME.NAMESPACE.svc).
    #[arg(long, value_delimiter = ',', requires = "tls_bootstrap")]
    tls_service_names: Vec<String>,
    /// Where this replica writes its serving certificate, key and client CA
    /// (tls.crt, tls.key, ca.crt), which the link serves from.
    #[arg(long, default_value = "/run/ballast/tls", requires = "tls_bootstrap")]
    tls_dir: PathBuf,
}

/// How the link gets its TLS: ready as flags say, or issued at start.
enum LinkSecurity {
    Ready(Security),
    Bootstrap(BootstrapConfig, AgentIdentity),
}

impl LinkArgs {
    fn security(&self, namespace: &str) -> anyhow::Result<LinkSecurity> {
        let b = &self.bootstrap;
        if b.tls_bootstrap {
            if self.agent_identity != AgentIdentity::Shared {
                anyhow::bail!(
                    "--tls-bootstrap issues one certificate shared by every agent (SAN URI \
                     spiffe://ballast/agent): it needs --agent-identity shared"
                );
            }
            return Ok(LinkSecurity::Bootstrap(
                BootstrapConfig {
                    namespace: namespace.to_string(),
                    ca_secret: b.tls_ca_secret.clone(),
                    agent_secret: b.tls_agent_secret.clone(),
                    service_names: b.tls_service_names.clone(),
                    dir: b.tls_dir.clone(),
                },
                self.agent_identity,
            ));
        }
        match (&self.tls_cert, &self.tls_key, &self.tls_client_ca) {
            (Some(cert), Some(key), Some(client_ca)) => Ok(LinkSecurity::Ready(Security::Mtls(
                TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                    client_ca: client_ca.clone(),
                },
                self.agent_identity,
            ))),
            _ if self.insecure => Ok(LinkSecurity::Ready(Security::Insecure)),
            _ => anyhow::bail!(
                "the agent link needs --tls-cert, --tls-key and --tls-client-ca, \
                 or --tls-bootstrap (or --insecure, for tests only)"
            ),
        }
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crdgen { out } => crdgen(out),
        Command::Run(args) => {
            // Logs go to stderr, as the agent's do (stdout is for data:
            // `crdgen`'s manifests). Coloured only on a terminal: in a
            // container stderr is a pipe, and `kubectl logs` would show
            // the colour codes as text.
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "info".into()),
                )
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .init();
            tokio::runtime::Runtime::new()
                .context("starting the async runtime")?
                .block_on(run(*args))
        }
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    // Refuse a missing TLS configuration before touching the cluster.
    let link_security = args.link.security(&args.lease_namespace)?;
    let client = kube::Client::try_default()
        .await
        .context("no Kubernetes API: set KUBECONFIG or run in a cluster")?;
    ballast_controller::link::tls::install_crypto_provider();
    let (security, bootstrap) = match link_security {
        LinkSecurity::Ready(s) => (s, None),
        LinkSecurity::Bootstrap(cfg, identity) => {
            let now = std::time::SystemTime::now();
            let authority = tls_bootstrap::ensure_ca(&client, &cfg, now)
                .await
                .context("--tls-bootstrap: the link CA")?;
            tls_bootstrap::ensure_serving_files(&authority, &cfg, now)
                .context("--tls-bootstrap: this replica's serving certificate")?;
            (Security::Mtls(cfg.tls_files(), identity), Some(cfg))
        }
    };
    let identity = match args.identity {
        Some(i) => i,
        None => nix_hostname().context("reading the host name for --identity")?,
    };
    let options = Options {
        plan: PlanOptions {
            default_class: args.default_class,
        },
        lease: LeaseConfig {
            namespace: args.lease_namespace,
            name: args.lease_name,
            identity,
            duration: Duration::from_secs(args.lease_duration),
        },
        retry_period: Duration::from_secs((args.lease_duration / 5).max(1)),
        debounce: DEFAULT_DEBOUNCE,
        resync: DEFAULT_RESYNC,
        agent_grace: args.agent_grace,
    };
    let metrics = Arc::new(Metrics::new());
    // One record of what agents report: the link server writes it; metrics
    // and the status writer read it.
    let reports = AgentReports::new();
    let handle = match start(client.clone(), options, metrics.clone(), reports.clone()).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("ballast-controller: {e}");
            std::process::exit(2);
        }
    };
    if let Some(cfg) = bootstrap {
        // Renewals, and the agents' Secret while this replica leads.
        tokio::spawn(tls_bootstrap::maintain(
            client.clone(),
            cfg,
            handle.leader.clone(),
            tls_bootstrap::CHECK_EVERY,
        ));
    }
    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| format!("binding the metrics address {}", args.metrics_addr))?;
    let http = tokio::spawn(ballast_controller::http::serve(
        listener,
        metrics.clone(),
        handle.ready.clone(),
    ));
    let link_listener = tokio::net::TcpListener::bind(args.link.link_addr)
        .await
        .with_context(|| format!("binding the agent link address {}", args.link.link_addr))?;
    let (link_stop_tx, link_stop) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(ballast_controller::metrics::export_agents(
        metrics.clone(),
        reports.clone(),
    ));
    let mut link = tokio::spawn(ballast_controller::link::serve(
        link_listener,
        security,
        handle.link_inputs(),
        reports.clone(),
        async {
            let _ = link_stop.await;
        },
    ));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: shutting down"),
        r = http => {
            r.context("metrics server task")?
                .with_context(|| format!("serving metrics on {}", args.metrics_addr))?;
        }
        // Ends early only on an error (e.g. TLS files that do not load).
        r = &mut link => {
            r.context("agent link task")?.context("serving the agent link")?;
        }
    }
    // Agents hear UNAVAILABLE and retry; their data planes keep forwarding.
    let _ = link_stop_tx.send(());
    if !link.is_finished() {
        link.await
            .context("agent link task")?
            .context("serving the agent link")?;
    }
    handle.shutdown().await;
    Ok(())
}

/// A positive number of seconds.
fn parse_grace(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|e| format!("{s:?} is not a number of seconds: {e}"))?;
    if secs.is_nan() || secs <= 0.0 {
        return Err(format!("{s:?}: the grace must be more than 0 seconds"));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

fn nix_hostname() -> std::io::Result<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string())
}

fn crdgen(out: Option<PathBuf>) -> anyhow::Result<()> {
    let manifests = ballast_controller::crdgen::manifests();
    match out {
        None => {
            for (_, yaml) in manifests {
                println!("---\n{yaml}");
            }
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            for (file, yaml) in manifests {
                let path = dir.join(file);
                std::fs::write(&path, yaml)
                    .with_context(|| format!("writing {}", path.display()))?;
                eprintln!("wrote {}", path.display());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(extra: &[&str]) -> Result<LinkSecurity, String> {
        let argv = ["ballast-controller", "run"].iter().chain(extra);
        let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        let Command::Run(args) = cli.command else {
            unreachable!("run parsed")
        };
        args.link
            .security("ballast-system")
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_link_tls_comes_from_files_or_from_the_bootstrap() {
        let files = [
            "--tls-cert",
            "/c",
            "--tls-key",
            "/k",
            "--tls-client-ca",
            "/a",
        ];
        let Ok(LinkSecurity::Ready(Security::Mtls(got, AgentIdentity::Node))) = link(&files) else {
            panic!("files, node identity by default")
        };
        assert_eq!(got.client_ca, PathBuf::from("/a"));
        let bootstrap = [
            "--tls-bootstrap",
            "--agent-identity",
            "shared",
            "--tls-service-names",
            "link.ballast-system.svc,link.ballast-system.svc.cluster.local",
        ];
        let Ok(LinkSecurity::Bootstrap(cfg, AgentIdentity::Shared)) = link(&bootstrap) else {
            panic!("bootstrap")
        };
        assert_eq!(
            cfg,
            BootstrapConfig {
                namespace: "ballast-system".into(),
                ca_secret: "ballast-ca".into(),
                agent_secret: "ballast-agent-tls".into(),
                service_names: vec![
                    "link.ballast-system.svc".into(),
                    "link.ballast-system.svc.cluster.local".into()
                ],
                dir: PathBuf::from("/run/ballast/tls"),
            }
        );
        assert_eq!(
            cfg.tls_files().cert,
            PathBuf::from("/run/ballast/tls/tls.crt")
        );
        let refusals: &[(&[&str], &str)] = &[
            (
                &[],
                "needs --tls-cert, --tls-key and --tls-client-ca, or --tls-bootstrap",
            ),
            (&bootstrap[..3], "--tls-service-names"),
            (
                &[&bootstrap[..1], &bootstrap[3..]].concat(),
                "it needs --agent-identity shared",
            ),
            (
                &[&bootstrap[..], &files[..2]].concat(),
                "cannot be used with",
            ),
            (&["--tls-ca-secret", "x", "--insecure"], "--tls-bootstrap"),
        ];
        for (argv, why) in refusals {
            let err = link(argv)
                .err()
                .unwrap_or_else(|| panic!("{argv:?} accepted"));
            assert!(err.contains(why), "{argv:?}: {err}");
        }
    }

    #[test]
    fn the_grace_is_positive_seconds() {
        assert_eq!(parse_grace("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_grace("1.5"), Ok(Duration::from_millis(1500)));
        for bad in ["0", "-1", "NaN", "10s"] {
            assert!(parse_grace(bad).is_err(), "{bad}");
        }
    }
}

//! The agent's command line (clap): what each subcommand takes, and the
//! flags turned into the options the library's modes start from. The
//! binary (`main.rs`) only parses, wires and runs.
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::announce::l2::options::{StandbyArgs, parse_duration};
use crate::dataplane::{self, XdpAttachMode};
use crate::lifecycle::startup::DataplaneOptions;
use crate::link::tls::ClientTls;
use crate::{maglev, realserver};

#[derive(Parser)]
#[command(
    name = "ballast-agent",
    version,
    about = "Ballast node agent: XDP load balancer data plane"
)]
pub struct Cli {
    /// bpffs directory holding one subdirectory of pinned state per interface,
    /// named `net<netns cookie>-if<ifindex>` (the interface's name is in
    /// /run/<this directory's name>/<same key>/interface).
    #[arg(long, global = true, default_value = dataplane::DEFAULT_PIN_ROOT)]
    pub pin_root: PathBuf,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ModeArg {
    Auto,
    Native,
    Generic,
}

/// The data plane's flags, the same in both modes.
#[derive(Args)]
pub struct DataplaneArgs {
    #[arg(long)]
    pub interface: String,
    /// Give every service this Maglev table size (a prime). Without it
    /// each service's size follows its backend count: 2 slots for one
    /// backend, else the smallest prime >= 2^k that is
    /// >= 32*N*ceil(log2 N), from 257 up to 1048583.
    #[arg(long, value_parser = parse_maglev_size)]
    maglev_size: Option<u32>,
    /// Slots of the shared Maglev ring storage, 8 bytes each, allocated
    /// at start: the sum of every service's table size, plus the
    /// largest (a changed table is written before the old one is freed).
    /// The default (32 MiB) holds 16,319 services of 2-4 backends, or 6
    /// of 1000.
    #[arg(long, default_value_t = crate::abi::RING_SLOTS_DEFAULT)]
    ring_slots: u32,
    /// Backend slots of the data plane, allocated at start: one per
    /// backend of every service (default 262,144; 100,000 services of 4
    /// backends need 400,000). Each costs 16 bytes, a next-hop entry and
    /// 40 bytes of counters per CPU.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    backend_slots: Option<u32>,
    #[arg(long, value_enum, default_value = "auto")]
    xdp_mode: ModeArg,
    /// Serve Prometheus metrics here, e.g. 127.0.0.1:9469.
    #[arg(long)]
    metrics: Option<SocketAddr>,
    /// MSS clamp on SYN/SYN-ACK of TOA services.
    #[arg(long, default_value_t = crate::standalone::desired::DEFAULT_TOA_MSS)]
    toa_mss: u16,
    /// Pause between sweeps deleting expired flows (conntrack, NAT
    /// replies, persistence); 0 disables sweeping (the LRU evicts). A
    /// dead flow keeps its slot and SNAT port at most this long past
    /// its timeout.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    sweep_interval: Duration,
    /// Refusals the node sends itself per second (TCP RST, ICMP port
    /// unreachable to a service with no usable backend), shared out over
    /// per-CPU buckets; over it a refused packet is dropped and counted
    /// (`refusal_limited`). The default is the kernel's icmp_msgs_per_sec.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    refusal_rate: u32,
    /// Refusals sent at once before the rate applies (the kernel's icmp_msgs_burst).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    refusal_burst: u32,
}

impl DataplaneArgs {
    pub fn options(self, pin_root: PathBuf) -> DataplaneOptions {
        DataplaneOptions {
            interface: self.interface,
            pin_root,
            maglev_size: self.maglev_size,
            ring_slots: self.ring_slots,
            backend_slots: self.backend_slots,
            mode: match self.xdp_mode {
                ModeArg::Auto => XdpAttachMode::Auto,
                ModeArg::Native => XdpAttachMode::Native,
                ModeArg::Generic => XdpAttachMode::Generic,
            },
            metrics: self.metrics,
            toa_mss: self.toa_mss,
            sweep_interval: self.sweep_interval,
            refusals: (self.refusal_rate, self.refusal_burst),
        }
    }
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Run the data plane from VirtualServer YAML (file or directory), reloading on change and SIGHUP.
    Standalone {
        #[command(flatten)]
        dataplane: DataplaneArgs,
        /// Source addresses for FullNAT, comma separated.
        #[arg(long, value_delimiter = ',', required = true)]
        snat_address: Vec<Ipv4Addr>,
        #[arg(long)]
        config: PathBuf,
        /// SNAT port range, e.g. 10000-65000.
        #[arg(long, default_value = "10000-65000", value_parser = parse_range)]
        snat_ports: (u16, u16),
        /// How often to check the configuration for changes.
        #[arg(long, default_value = "1s", value_parser = parse_duration)]
        poll: Duration,
        /// Do not answer ARP for the VIPs (another speaker announces them).
        #[arg(long, conflicts_with = "peers")]
        no_announce: bool,
        #[command(flatten)]
        standby: StandbyArgs,
    },
    /// Kubernetes mode: serve the node state the controller streams (the
    /// agent dials the controller; it keeps forwarding its last applied
    /// state while the controller is away).
    Node {
        /// The Kubernetes Node this agent runs on (from the downward API).
        #[arg(long, env = "NODE_NAME")]
        node_name: String,
        /// The controller's link address, e.g.
        /// https://ballast-controller.ballast-system.svc:9443 (http:// only
        /// with --insecure). Each is resolved at every round of dials and
        /// each address it resolves to is tried in turn (a headless Service
        /// names every replica; standbys refuse, naming the leader).
        /// Several, comma separated, are tried in order.
        #[arg(long, value_delimiter = ',', required = true)]
        controller: Vec<String>,
        /// PEM: this agent's client certificate (SAN URI
        /// spiffe://ballast/agent/<node name>, or spiffe://ballast/agent
        /// when the controller runs with --agent-identity shared).
        #[arg(long, requires_all = ["tls_key", "tls_ca"])]
        tls_cert: Option<PathBuf>,
        /// PEM: its private key.
        #[arg(long)]
        tls_key: Option<PathBuf>,
        /// PEM: the CA that issued the controller's certificate.
        #[arg(long)]
        tls_ca: Option<PathBuf>,
        /// The DNS name the controller's certificate must carry; default:
        /// the host of --controller.
        #[arg(long)]
        tls_server_name: Option<String>,
        /// Talk to the controller over plain TCP, without TLS (labs and
        /// tests only: anyone on the path can read and forge the node's state).
        #[arg(long, conflicts_with_all = ["tls_cert", "tls_key", "tls_ca"])]
        insecure: bool,
        #[command(flatten)]
        dataplane: DataplaneArgs,
        /// FullNAT source addresses, comma separated; default: the
        /// interface's first IPv4 address (the node's InternalIP on its
        /// uplink). The controller's node settings, when it sends any, win.
        #[arg(long, value_delimiter = ',')]
        snat_address: Option<Vec<Ipv4Addr>>,
        /// SNAT port range, reserved from the kernel's ephemeral ports
        /// (net.ipv4.ip_local_reserved_ports).
        #[arg(long, default_value = "10000-29999", value_parser = parse_range)]
        snat_ports: (u16, u16),
        /// How often the agent reports usage and health to the controller.
        #[arg(long, default_value = "1s", value_parser = parse_duration)]
        heartbeat: Duration,
        /// Longest pause between two dials of the controller (exponential
        /// backoff from 250ms with full jitter). Keep it well under the
        /// controller's --agent-grace (10s), or a restarted controller may
        /// give this node's duties away before the agent is back.
        #[arg(long, default_value = "4s", value_parser = parse_duration)]
        reconnect_max: Duration,
    },
    /// Detach the data plane from an interface and remove its pinned maps
    /// (run it in the interface's network namespace; refused while an agent runs on it).
    Cleanup {
        #[arg(long)]
        interface: String,
    },
    /// Configure this host as a real server: DR (--vip on lo) and/or the
    /// FullNAT TOA reader (--toa); --status shows what is installed.
    Realserver(realserver::RealserverArgs),
    /// Per-service and per-backend counters (run it in the agent's network namespace).
    Stats {
        #[arg(long)]
        interface: String,
        #[arg(long)]
        json: bool,
    },
}

/// The link's TLS files, or None under `--insecure`; neither is an error
/// (an agent never talks to a controller it cannot authenticate by accident).
pub fn link_tls(
    (cert, key, ca): (Option<PathBuf>, Option<PathBuf>, Option<PathBuf>),
    server_name: Option<String>,
    insecure: bool,
    controller: &str,
) -> anyhow::Result<Option<ClientTls>> {
    match (cert, key, ca) {
        (Some(cert), Some(key), Some(ca)) => Ok(Some(ClientTls {
            cert,
            key,
            ca,
            server_name: match server_name {
                Some(n) => n,
                None => server_name_of(controller)?,
            },
        })),
        _ if insecure => Ok(None),
        _ => anyhow::bail!(
            "the controller link needs --tls-cert, --tls-key and --tls-ca (or --insecure, for labs only)"
        ),
    }
}

/// The host part of `--controller`, which the controller's certificate must
/// name unless `--tls-server-name` says otherwise.
fn server_name_of(controller: &str) -> anyhow::Result<String> {
    let uri: tonic::transport::Uri = controller
        .parse()
        .with_context(|| format!("--controller {controller}"))?;
    uri.host()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
        .with_context(|| format!("--controller {controller}: no host in it"))
}

fn parse_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s.split_once('-').ok_or("expected MIN-MAX")?;
    let a: u16 = a.parse().map_err(|e| format!("{a}: {e}"))?;
    let b: u16 = b.parse().map_err(|e| format!("{b}: {e}"))?;
    if a == 0 || b < a {
        return Err(format!("{s}: empty range or port 0"));
    }
    Ok((a, b))
}

fn parse_maglev_size(s: &str) -> Result<u32, String> {
    let n: u32 = s.parse().map_err(|e| format!("{s}: {e}"))?;
    if !maglev::is_prime(n) {
        return Err(format!(
            "{n} is not prime (Maglev tables need a prime size)"
        ));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(extra: &[&str]) -> Result<Cli, String> {
        let base = [
            "ballast-agent",
            "node",
            "--node-name",
            "node-a",
            "--controller",
            "https://ballast-controller.ballast-system.svc:9443",
            "--interface",
            "eth0",
        ];
        Cli::try_parse_from(base.iter().chain(extra)).map_err(|e| e.to_string())
    }

    fn tls_of(cli: Cli) -> anyhow::Result<Option<ClientTls>> {
        let Cmd::Node {
            tls_cert,
            tls_key,
            tls_ca,
            tls_server_name,
            insecure,
            controller,
            ..
        } = cli.command
        else {
            unreachable!("node parsed")
        };
        link_tls(
            (tls_cert, tls_key, tls_ca),
            tls_server_name,
            insecure,
            &controller[0],
        )
    }

    #[test]
    fn node_mode_refuses_to_run_without_tls_unless_insecure() {
        let err = tls_of(node(&[]).unwrap()).unwrap_err().to_string();
        assert!(
            err.contains("needs --tls-cert, --tls-key and --tls-ca"),
            "{err}"
        );
        assert_eq!(tls_of(node(&["--insecure"]).unwrap()).unwrap(), None);
        let err = node(&["--tls-cert", "/c"]).err().unwrap();
        assert!(
            err.contains("--tls-key") && err.contains("--tls-ca"),
            "{err}"
        );
        let err = node(&[
            "--insecure",
            "--tls-cert",
            "/c",
            "--tls-key",
            "/k",
            "--tls-ca",
            "/a",
        ])
        .err()
        .unwrap();
        assert!(err.contains("cannot be used with"), "{err}");
    }

    #[test]
    fn node_mode_expects_the_controllers_host_in_its_certificate() {
        let files = ["--tls-cert", "/c", "--tls-key", "/k", "--tls-ca", "/a"];
        let tls = tls_of(node(&files).unwrap()).unwrap().unwrap();
        assert_eq!(tls.server_name, "ballast-controller.ballast-system.svc");
        assert_eq!(tls.cert, PathBuf::from("/c"));
        let named = [&files[..], &["--tls-server-name", "controller.example"]].concat();
        let tls = tls_of(node(&named).unwrap()).unwrap().unwrap();
        assert_eq!(tls.server_name, "controller.example");
        let Cmd::Node {
            controller,
            snat_ports,
            snat_address,
            ..
        } = node(&[
            "--insecure",
            "--controller",
            "http://192.0.2.254:9443,http://192.0.2.253:9443",
        ])
        .unwrap()
        .command
        else {
            unreachable!()
        };
        // The base line names one, the list two more: flags accumulate.
        assert_eq!(controller.len(), 3, "several replicas, tried in turn");
        assert_eq!(snat_ports, crate::node::DEFAULT_SNAT_PORTS);
        assert_eq!(snat_address, None, "the interface's address");
    }

    #[test]
    fn maglev_size_flag_is_optional_and_must_be_prime() {
        let size = |extra: &[&str]| standalone_flags(extra).map(|d| d.maglev_size);
        assert_eq!(size(&[]), Ok(None), "automatic without the flag");
        assert_eq!(size(&["--maglev-size", "65537"]), Ok(Some(65537)));
        let err = size(&["--maglev-size", "65536"]).unwrap_err();
        assert!(err.contains("65536 is not prime"), "{err}");
    }

    #[test]
    fn backend_slots_flag_is_optional_and_positive() {
        let slots = |extra: &[&str]| standalone_flags(extra).map(|d| d.backend_slots);
        assert_eq!(
            slots(&[]),
            Ok(None),
            "the object's default without the flag"
        );
        assert_eq!(slots(&["--backend-slots", "500000"]), Ok(Some(500_000)));
        let err = slots(&["--backend-slots", "0"]).unwrap_err();
        assert!(err.contains("--backend-slots"), "{err}");
    }

    /// The data-plane flags of a standalone command line with `extra`.
    fn standalone_flags(extra: &[&str]) -> Result<DataplaneArgs, String> {
        let base = [
            "ballast-agent",
            "standalone",
            "--interface",
            "eth0",
            "--snat-address",
            "198.51.100.3",
            "--config",
            "/etc/ballast",
        ];
        match Cli::try_parse_from(base.iter().chain(extra)) {
            Ok(Cli {
                command: Cmd::Standalone { dataplane, .. },
                ..
            }) => Ok(dataplane),
            Ok(_) => unreachable!("standalone parsed"),
            Err(e) => Err(e.to_string()),
        }
    }
}

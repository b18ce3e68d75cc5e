//! ballast-agent: the node agent of the Ballast load balancer. Parses the
//! command line (`ballast_agent::cli`), wires the chosen mode and runs it.
use std::time::Duration;

use anyhow::Context;
use ballast_agent::cli::{Cli, Cmd, link_tls};
use ballast_agent::dataplane;
use ballast_agent::lifecycle::identity::Interface;
use ballast_agent::lifecycle::{cleanup, signals::Signals};
use ballast_agent::node::{Node, NodeOptions};
use ballast_agent::standalone::{Standalone, StandaloneOptions};
use ballast_agent::{inventory, realserver, stats};
use clap::Parser;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal: `kubectl logs` and
        // journald show escape codes as text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let pin_root = cli.pin_root;
    match cli.command {
        Cmd::Standalone {
            dataplane,
            snat_address,
            config,
            snat_ports,
            poll,
            no_announce,
            standby,
        } => {
            // Before anything touches the system: a bad flag changes nothing.
            ballast_agent::standalone::snat_check::check(&snat_address)?;
            let standby = standby.options(&dataplane.interface)?;
            let opts = StandaloneOptions {
                dataplane: dataplane.options(pin_root),
                snat_addrs: snat_address,
                snat_ports,
                config,
                poll,
                announce: !no_announce,
                standby,
            };
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()?;
            rt.block_on(async {
                // First of all: until the handlers exist, SIGHUP kills the
                // agent, and opening the data plane takes seconds.
                let mut signals = Signals::register().context("installing signal handlers")?;
                match Standalone::start(opts, &mut signals).await? {
                    Some(agent) => agent.run(signals).await,
                    None => Ok(()),
                }
            })
        }
        Cmd::Node {
            node_name,
            controller,
            tls_cert,
            tls_key,
            tls_ca,
            tls_server_name,
            insecure,
            dataplane,
            snat_address,
            snat_ports,
            heartbeat,
            reconnect_max,
        } => {
            // One crypto provider, chosen here: with two in the dependency
            // tree rustls would panic at the first handshake.
            let _ = rustls::crypto::ring::default_provider().install_default();
            // A malformed entry is a flag error, not something to retry.
            for entry in &controller {
                ballast_agent::link::dial::Entry::parse(entry)?;
            }
            let tls = link_tls(
                (tls_cert, tls_key, tls_ca),
                tls_server_name,
                insecure,
                &controller[0],
            )?;
            if tls.is_none() {
                tracing::warn!(
                    "--insecure: the controller link runs WITHOUT TLS; anyone on the path can read and forge this node's state. Never use it outside a lab."
                );
            }
            if let Some(addrs) = &snat_address {
                ballast_agent::standalone::snat_check::check(addrs)?;
            }
            let opts = NodeOptions {
                dataplane: dataplane.options(pin_root),
                node_name,
                controllers: controller,
                tls,
                snat_addrs: snat_address,
                snat_ports,
                heartbeat,
                backoff: (Duration::from_millis(250).min(reconnect_max), reconnect_max),
            };
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(async {
                let mut signals = Signals::register().context("installing signal handlers")?;
                match Node::start(opts, &mut signals).await? {
                    Some(node) => node.run(signals).await,
                    None => Ok(()),
                }
            })
        }
        Cmd::Cleanup { interface } => {
            for done in cleanup::cleanup(&pin_root, &interface)? {
                println!("{done}");
            }
            Ok(())
        }
        Cmd::Realserver(args) => realserver::run(&args, &pin_root),
        Cmd::Stats { interface, json } => {
            let iface = Interface::resolve(&interface)?;
            let dir = iface.pin_dir(&pin_root);
            let maps = dataplane::maps::Maps::open_pinned(&dir).with_context(|| {
                format!(
                    "interface {interface}: no Ballast data plane pinned at {} (is the agent running, in this network namespace?)",
                    dir.display()
                )
            })?;
            let inv = inventory::read(&pin_root, &iface.key).unwrap_or_default();
            let snap = stats::snapshot(&maps, &inv)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&snap)?);
            } else {
                print!("{}", stats::render_table(&snap));
            }
            Ok(())
        }
    }
}

//! `ballast-demo` (what `scripts/demo.sh` runs): a client, a director and
//! three backends in network namespaces on one L2 segment; a few hundred
//! real TCP connections through the XDP director in FullNAT (backends see
//! the SNAT address), in FullNAT with the TOA reader on the backends (they
//! see the client), then in DR, with the distribution and the counters
//! printed. Everything is removed at
//! the end, on failure and on Ctrl-C. Built on the test scaffolding
//! (`ballast-testbed`), so it is not part of the agent users run.
use std::collections::BTreeMap;
use std::net::SocketAddrV4;
use std::time::Duration;

use anyhow::{Context, Result};
use ballast_agent::abi;
use ballast_agent::standalone::desired::DEFAULT_TOA_MSS;
use ballast_agent::{stats, toa_reader};
use ballast_testbed::lab::{self, Lab};
use ballast_testbed::{self as testbed, TestCgroup, Testbed, is_root, servers};
use clap::Parser;

const PREFIX_BASE: &str = "bdemo";

/// Build a throwaway namespace topology and show FullNAT and DR at work
/// (as root).
#[derive(Parser)]
#[command(name = "ballast-demo", version)]
struct Cli {
    /// Connections per mode.
    #[arg(long, default_value_t = 300)]
    connections: usize,
}

fn main() -> Result<()> {
    // The director logs as the agent does (attach mode, warnings).
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal, not in a file or a CI log.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    run(Cli::parse().connections)
}

fn run(connections: usize) -> Result<()> {
    anyhow::ensure!(
        is_root(),
        "the demo builds network namespaces: run it as root"
    );
    let prefix = format!("{PREFIX_BASE}{}", std::process::id() % 10_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let p = prefix.clone();
    rt.block_on(async move {
        let work = tokio::task::spawn_blocking(move || scenario(&p, connections));
        tokio::select! {
            r = work => r.context("demo task")?,
            _ = tokio::signal::ctrl_c() => {
                eprintln!("\ninterrupted: cleaning up");
                Testbed::cleanup_prefix(&prefix);
                let _ = std::fs::remove_dir_all(lab::lab_pin_dir(&prefix));
                std::process::exit(130);
            }
        }
    })
}

fn scenario(prefix: &str, connections: usize) -> Result<()> {
    println!(
        "Building the topology (namespaces {prefix}-*): client 192.0.2.1, director 192.0.2.2/198.51.100.2, backends 198.51.100.11-13, VIP {}",
        testbed::VIP
    );
    let mut lab = Lab::start(prefix, 3)?;
    println!(
        "XDP director attached to {} in {}\n",
        lab.tb.director_if(),
        lab.tb.director_ns()
    );

    // FullNAT: VIP:80 -> backends:8080, sources rewritten to the SNAT address.
    lab.serve(8080)?;
    let mut svc = lab::service(
        "demo/web:http",
        abi::MODE_FULLNAT,
        6,
        80,
        8080,
        &[(1, 1), (2, 1), (3, 1)],
    );
    svc.flags = abi::SVC_TOA;
    svc.mss_max = DEFAULT_TOA_MSS;
    lab.apply(vec![svc])?;
    round(
        &lab,
        "FullNAT (with TOA), no reader on the backends",
        80,
        connections,
    )?;
    toa_round(&mut lab, prefix, connections)?;

    // DR: same port on the backends, VIP on their lo, replies go straight back.
    lab.tb
        .set_backend_mode(testbed::BackendRouting::DirectToClient)?;
    lab.tb.add_vip_to_backends(testbed::VIP)?;
    lab.serve(81)?;
    lab.apply(vec![lab::service(
        "demo/web-dr:http",
        abi::MODE_DR,
        6,
        81,
        81,
        &[(1, 1), (2, 1), (3, 1)],
    )])?;
    round(&lab, "DR", 81, connections)?;
    println!("Cleaning up.");
    Ok(())
}

/// The same service with the TOA reader installed on the backends, as
/// `ballast-agent realserver --toa --toa-from <SNAT address> --cgroup
/// <cgroup>` does, trusting the director's SNAT address. The backends'
/// servers run in this process, so the process joins a cgroup of its own
/// that the reader attaches to (rather than the host's root cgroup), and
/// the servers are restarted in it: the reader covers listeners opened
/// after it.
fn toa_round(lab: &mut Lab, prefix: &str, connections: usize) -> Result<()> {
    let cgroup = TestCgroup::create("demo")?;
    let pin_dir = toa_reader::pin_dir(&lab::lab_pin_dir(prefix));
    let trusted = [testbed::SNAT_ADDR.into()];
    toa_reader::install(&pin_dir, Some(cgroup.path()), &trusted)?;
    {
        let _inside = cgroup.enter()?;
        lab.servers.clear();
        lab.serve(8080)?;
    }
    round(
        lab,
        "FullNAT (with TOA), TOA reader on the backends",
        80,
        connections,
    )?;
    let status = toa_reader::read_status(&pin_dir)?;
    print!("{}", toa_reader::status::render(status.as_ref(), &pin_dir));
    toa_reader::remove(&pin_dir)?;
    lab.servers.clear();
    println!();
    Ok(())
}

fn round(lab: &Lab, title: &str, port: u16, n: usize) -> Result<()> {
    let target = SocketAddrV4::new(testbed::VIP, port);
    println!("== {title}: {n} TCP connections from the client to {target}");
    let results = servers::tcp_probes(lab.tb.client_ns(), target, n, 16, Duration::from_secs(5))?;
    let mut per_backend: BTreeMap<String, (usize, String)> = BTreeMap::new();
    let mut failed = 0;
    for r in &results {
        match r {
            Ok(line) => {
                let mut it = line.split_whitespace();
                let name = it.next().unwrap_or("?").to_string();
                let peer = it
                    .next()
                    .unwrap_or("?")
                    .split(':')
                    .next()
                    .unwrap_or("?")
                    .to_string();
                let e = per_backend.entry(name).or_insert((0, peer));
                e.0 += 1;
            }
            Err(_) => failed += 1,
        }
    }
    println!(
        "{:<10} {:>12} {:>8}   CLIENT ADDRESS THE BACKEND SAW",
        "BACKEND", "CONNECTIONS", "SHARE"
    );
    for (name, (count, peer)) in &per_backend {
        println!(
            "{:<10} {:>12} {:>7.1}%   {}",
            name,
            count,
            100.0 * *count as f64 / n as f64,
            peer
        );
    }
    if failed > 0 {
        println!("failed connections: {failed}");
    }
    println!("\n{}", stats::render_table(&lab.snapshot()?));
    anyhow::ensure!(failed == 0, "{failed} of {n} connections failed");
    Ok(())
}

//! The TOA reader's cost (issue 13): TCP connections per second a backend
//! accepts without and with the reader (`realserver --toa`), same run,
//! rounds alternating; also with the reader installed but the SYNs'
//! sender not trusted (the option found and ignored), which separates the
//! cost of reading the SYN from that of storing and rewriting the peer.
//!
//! Backend 1 of a namespace testbed runs a small server (this binary
//! re-executed with `--toa-bench-server`, in a cgroup of its own, where the
//! reader attaches): accept, write 3 bytes, close. Client threads in
//! backend 2's namespace (same L2 segment, over veth and a bridge) open
//! short connections as fast as they can for a fixed count: connect, read
//! to EOF, close (SO_LINGER 0, so neither side keeps TIME_WAIT state
//! across rounds). Every SYN carries a TOA option in every round
//! (dataplane-ebpf/test/toa_writer.c on the client's cgroup), as a FullNAT
//! director's would; with the reader, the client's address is trusted, so
//! every connection is translated (checked against the reader's counter).
//! The server is restarted each round (the reader covers listeners opened
//! after it), in both kinds of round alike.
//!
//! What the reader adds per connection: the sockops program at passive
//! establishment (copy of the SYN's TCP header, bpf_loop over the options,
//! an LPM lookup, a socket-storage allocation), the getpeername hook on
//! accept(), the saved SYN (TCP_SAVE_SYN), and the sockops calls the kernel
//! makes for any connection of a cgroup with a sockops program.
//!
//! Run as root: `nice cargo bench -p ballast-agent --bench toa_reader`.
//! Knobs (environment): BALLAST_TOA_BENCH_CONNS (10000 per run),
//! BALLAST_TOA_BENCH_ROUNDS (15, one run of each kind), BALLAST_TOA_BENCH_THREADS (2).
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use aya::programs::{CgroupAttachMode, SockOps};
use ballast_agent::toa_reader;
use ballast_testbed::{
    TestCgroup, Testbed, TestbedSpec, backend_addr, objects, require_root, spawn_in_netns,
};
use ipnet::Ipv4Net;

const SERVE_ARG: &str = "--toa-bench-server";
const PORT: u16 = 8090;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(SERVE_ARG) {
        serve();
        return;
    }
    require_root("network namespaces and cgroup BPF hooks");
    let conns = env_or("BALLAST_TOA_BENCH_CONNS", 10_000);
    let rounds = env_or("BALLAST_TOA_BENCH_ROUNDS", 15);
    let threads = env_or("BALLAST_TOA_BENCH_THREADS", 2);
    if let Err(e) = run(conns, rounds, threads) {
        eprintln!("toa_reader bench: {e:#}");
        std::process::exit(1);
    }
}

/// The server, in the backend's namespace and the server cgroup already.
fn serve() {
    let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, PORT)).unwrap();
    println!("listening");
    std::io::stdout().flush().unwrap();
    loop {
        let (mut s, _peer) = listener.accept().unwrap();
        let _ = s.write_all(b"hi\n");
    }
}

struct Server(Child);

impl Server {
    fn start(tb: &Testbed, cg: &TestCgroup) -> anyhow::Result<Server> {
        let exe = std::env::current_exe()?;
        let mut child = cg
            .command_in_netns(tb.backend_ns(1), exe.to_str().unwrap())?
            .arg(SERVE_ARG)
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line)?;
        anyhow::ensure!(line.trim() == "listening", "server: {line:?}");
        Ok(Server(child))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `conns` connections from backend 2 to backend 1 on `threads` threads:
/// connections per second.
fn client_round(tb: &Testbed, conns: usize, threads: usize) -> anyhow::Result<f64> {
    let target = SocketAddrV4::new(backend_addr(1), PORT);
    let per = conns / threads;
    let start = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            spawn_in_netns(tb.backend_ns(2), move || -> std::io::Result<()> {
                let mut buf = [0u8; 8];
                for _ in 0..per {
                    let mut s = TcpStream::connect_timeout(&target.into(), Duration::from_secs(5))?;
                    while s.read(&mut buf)? > 0 {}
                    socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO))?;
                }
                Ok(())
            })
        })
        .collect::<anyhow::Result<_>>()?;
    for w in workers {
        w.join()??;
    }
    Ok((per * threads) as f64 / start.elapsed().as_secs_f64())
}

fn run(conns: usize, rounds: usize, threads: usize) -> anyhow::Result<()> {
    let prefix = format!("tb{}", std::process::id() % 10_000);
    let tb = Testbed::build(&TestbedSpec::new(&prefix).backends(2))?;
    let server_cg = TestCgroup::create("bench-srv")?;
    let client_cg = TestCgroup::create("bench-cli")?;
    let pins = PathBuf::from(format!(
        "/sys/fs/bpf/ballast-bench-toa-{}",
        std::process::id()
    ));
    let pin_dir = toa_reader::pin_dir(&pins);

    // Every SYN of the client carries the option, in every round.
    let mut writer = aya::Ebpf::load(objects::TOA_WRITER)?;
    let prog: &mut SockOps = writer.program_mut("toa_writer").unwrap().try_into()?;
    prog.load()?;
    prog.attach(client_cg.open()?, CgroupAttachMode::Single)?;
    let _client_in = client_cg.enter()?;

    let per_round = conns / threads * threads;
    println!(
        "TOA reader cost: {per_round} connections per run, {threads} client threads, \
         backend 2 -> backend 1 (veth + bridge), every SYN with a TOA option"
    );
    // Warm-up, not counted.
    {
        let _srv = Server::start(&tb, &server_cg)?;
        client_round(&tb, conns / 4, threads)?;
    }
    let mut rates: [Vec<f64>; 3] = Default::default();
    for round in 0..rounds {
        let mut line = format!("round {}:", round + 1);
        // Each round in another order, so that a drift over the run
        // weighs on every kind alike.
        for k in 0..3 {
            let kind = KINDS[(k + round) % 3];
            let rate = measure(kind, &tb, &server_cg, &pin_dir, conns, threads)?;
            rates[kind as usize].push(rate);
            line.push_str(&format!("  {} {rate:>7.0}", kind.label()));
        }
        println!("{line}  conns/s");
    }
    // Paired: each round's ratio to its own run without the reader, so
    // that the load of the (shared) machine at that moment cancels out.
    let base = rates[Kind::Without as usize].clone();
    println!(
        "median conns/s; median, min and max of the rounds' ratios to the run without the reader:"
    );
    for kind in KINDS {
        let mut ratios: Vec<f64> = rates[kind as usize]
            .iter()
            .zip(&base)
            .map(|(r, b)| r / b)
            .collect();
        let m = median(&mut rates[kind as usize]);
        // median() sorts: the ends are the extremes.
        let r = median(&mut ratios);
        let (lo, hi) = (ratios[0], ratios[ratios.len() - 1]);
        println!(
            "  {:<36} {m:>7.0}   {r:.3} ({:+.1}%)  [{lo:.3} .. {hi:.3}]",
            kind.describe(),
            100.0 * (r - 1.0)
        );
    }
    let _ = std::fs::remove_dir_all(&pins);
    Ok(())
}

#[derive(Clone, Copy)]
enum Kind {
    Without = 0,
    /// Installed, but the SYNs' sender is not trusted: the option is
    /// found and ignored, nothing is stored or rewritten.
    Untrusted = 1,
    With = 2,
}

const KINDS: [Kind; 3] = [Kind::Without, Kind::Untrusted, Kind::With];

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Without => "without",
            Kind::Untrusted => "untrusted",
            Kind::With => "with",
        }
    }
    fn describe(self) -> &'static str {
        match self {
            Kind::Without => "without the reader",
            Kind::Untrusted => "reader, sender not trusted",
            Kind::With => "reader, every connection translated",
        }
    }
}

/// One round of `kind`: the reader installed as it says, a fresh server,
/// the client's connections; conns/s. Checks the reader's counters.
fn measure(
    kind: Kind,
    tb: &Testbed,
    server_cg: &TestCgroup,
    pin_dir: &std::path::Path,
    conns: usize,
    threads: usize,
) -> anyhow::Result<f64> {
    let trusted = match kind {
        Kind::Without => None,
        // An address no SYN comes from.
        Kind::Untrusted => Some(Ipv4Net::from(Ipv4Addr::new(10, 255, 255, 254))),
        Kind::With => Some(Ipv4Net::from(backend_addr(2))),
    };
    if let Some(t) = trusted {
        toa_reader::install(pin_dir, Some(server_cg.path()), &[t])?;
    }
    let srv = Server::start(tb, server_cg)?;
    let rate = client_round(tb, conns, threads)?;
    drop(srv);
    if trusted.is_some() {
        let status = toa_reader::read_status(pin_dir)?.expect("installed");
        toa_reader::remove(pin_dir)?;
        let n = (conns / threads * threads) as u64;
        let want = match kind {
            Kind::With => (n, 0),
            _ => (0, n),
        };
        anyhow::ensure!(
            (status.translated, status.untrusted) == want,
            "{}: translated/untrusted {:?}, expected {want:?}",
            kind.label(),
            (status.translated, status.untrusted)
        );
    }
    Ok(rate)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

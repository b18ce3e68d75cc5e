//! A hot-standby group in namespaces for tests and benchmarks: N
//! standalone directors on the client's segment serving one VIP (DR to
//! the backends; the client reaches the VIP on-link, so it ARPs for it),
//! each `--peers` the others, director `i` with priority `250 - 50 i`. A
//! client that connects every 10 ms measures what a failover costs it.
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::agent::{Agent, Log, PinRoot, WorkDir, command, output, standalone_args};
use crate::arp::ArpSocket;
use crate::failover::{Prober, longest_gap};
use crate::servers::BackendServer;
use crate::topology::{BackendRouting, Testbed, TestbedSpec};
use crate::world::{self, director_addrs, director_mac};

pub const PORT: u16 = 8080;
const KEY: &str = "a shared secret for the group, 32B\n";
/// Client connections: one every 10 ms, each given this long to connect.
pub const PROBE_EVERY: Duration = Duration::from_millis(10);
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(200);

/// The VirtualServer every director serves, with its priority.
pub fn virtual_server(priority: u8) -> String {
    format!(
        r#"apiVersion: ballast.dev/v1alpha1
kind: VirtualServer
metadata: {{name: web, namespace: default}}
spec:
  addresses: [{vip}]
  ports:
    - {{name: http, port: {PORT}, protocol: TCP}}
  forwarding: DR
  announce:
    l2: {{priority: {priority}}}
  backends:
    static:
      - {{address: 198.51.100.11, weight: 1}}
      - {{address: 198.51.100.12, weight: 1}}
      - {{address: 198.51.100.13, weight: 1}}
"#,
        vip = world::VIP
    )
}

/// Director `i`'s priority: the first ranks highest.
pub fn priority(i: usize) -> u8 {
    (250 - 50 * i) as u8
}

/// Director `i`'s `--node-name`.
pub fn node_name(i: usize) -> String {
    format!("dir-{}", (b'a' + (i - 1) as u8) as char)
}

/// A director's SNAT address: the flag is required, and two directors
/// must not both answer ARP for one address.
fn snat(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 51, 100, 1 + 2 * i as u8)
}

/// Each director's VIP on-link at the client, the VIP on the backends' lo
/// (DR), servers on the backends: the testbed a group runs on.
pub fn testbed(prefix: &str, directors: usize) -> (Testbed, Vec<BackendServer>) {
    let tb = Testbed::build(&TestbedSpec::new(prefix).backends(3).directors(directors)).unwrap();
    tb.attach_test_xdp_pass().unwrap();
    tb.set_backend_mode(BackendRouting::DirectToClient).unwrap();
    tb.add_vip_to_backends(world::VIP).unwrap();
    let vip = format!("{}/32", world::VIP);
    tb.ip(tb.client_ns(), &["route", "replace", &vip, "dev", "eth0"])
        .unwrap();
    let servers = tb.serve(PORT).unwrap();
    (tb, servers)
}

pub struct StandbyGroup {
    bin: String,
    pub tb: Testbed,
    work: WorkDir,
    pins: Vec<PinRoot>,
    agents: Vec<Option<Agent>>,
    /// Agents started per director (their logs are appended).
    starts: Vec<usize>,
    servers: Vec<BackendServer>,
    arp: ArpSocket,
    /// Flags every agent gets beside the group's own.
    extra: Vec<String>,
}

impl StandbyGroup {
    /// `directors` agents of `bin`, started, with `extra` flags each.
    pub fn new(bin: &str, prefix: &str, directors: usize, extra: &[&str]) -> StandbyGroup {
        let (tb, servers) = testbed(prefix, directors);
        let work = WorkDir::new(prefix);
        std::fs::write(work.file("key"), KEY).unwrap();
        for i in 1..=directors {
            let dir = work.file(&format!("conf{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("web.yaml"), virtual_server(priority(i))).unwrap();
        }
        let pins = (1..=directors)
            .map(|i| PinRoot::new(&format!("ballast-{prefix}-{i}")))
            .collect();
        let arp = ArpSocket::open(tb.client_ns(), "eth0");
        let mut g = StandbyGroup {
            bin: bin.to_string(),
            tb,
            work,
            pins,
            agents: (0..directors).map(|_| None).collect(),
            starts: vec![0; directors],
            servers,
            arp,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        for i in 1..=directors {
            g.start(i);
        }
        g
    }

    pub fn directors(&self) -> usize {
        self.agents.len()
    }

    /// Starts director `i`'s agent and waits for its announcer.
    pub fn start(&mut self, i: usize) {
        let peers: Vec<String> = (1..=self.directors())
            .filter(|j| *j != i)
            .map(|j| director_addrs(j).0.to_string())
            .collect();
        let key = self.work.file("key");
        let conf = self.work.file(&format!("conf{i}"));
        let mut args = standalone_args(self.tb.director_if(), &conf, &[]);
        let at = args.iter().position(|a| a == "--snat-address").unwrap();
        args[at + 1] = snat(i).to_string();
        args.extend(
            [
                "--node-name",
                &node_name(i),
                "--peers",
                &peers.join(","),
                "--heartbeat-key-file",
                key.to_str().unwrap(),
                "--metrics",
                "127.0.0.1:9469",
            ]
            .map(String::from),
        );
        args.extend(self.extra.iter().cloned());
        let mut cmd = command(
            &self.bin,
            self.tb.director_ns_at(i),
            self.pins[i - 1].path(),
        );
        cmd.args(&args);
        self.agents[i - 1] = Some(Agent::spawn(cmd, &self.log(i), Log::Append));
        self.starts[i - 1] += 1;
        let n = self.starts[i - 1];
        self.agent(i)
            .wait_log_count("hot standby: listening for peers", n);
    }

    pub fn log(&self, i: usize) -> PathBuf {
        self.work.file(&format!("agent{i}.log"))
    }

    pub fn agent(&mut self, i: usize) -> &mut Agent {
        self.agents[i - 1].as_mut().expect("running")
    }

    pub fn pin_root(&self, i: usize) -> &Path {
        self.pins[i - 1].path()
    }

    pub fn servers(&self) -> &[BackendServer] {
        &self.servers
    }

    /// The MACs answering ARP for the VIP, asked once from the client.
    pub fn answering(&self) -> Vec<[u8; 6]> {
        answering(&self.arp)
    }

    /// Waits until exactly director `i` answers for the VIP.
    #[track_caller]
    pub fn wait_owner(&self, i: usize, within: Duration) -> Duration {
        let start = Instant::now();
        loop {
            if self.answering() == [director_mac(i)] {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < within,
                "director {i} not the only one answering ARP for the VIP after {within:?} (answering: {:?})\n{}",
                self.answering(),
                self.logs()
            );
        }
    }

    /// Every director's log.
    pub fn logs(&self) -> String {
        (1..=self.directors())
            .map(|i| format!("--- dir{i} ---\n{}", self.log_of(i)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn log_of(&self, i: usize) -> String {
        std::fs::read_to_string(self.log(i)).unwrap_or_default()
    }

    /// Runs `what` under the 10 ms client: the longest gap between two
    /// successful connections after it, and the failures.
    pub fn gap_of(&mut self, what: impl FnOnce(&mut Self), settle: Duration) -> (Duration, usize) {
        let ns = self.tb.client_ns().to_string();
        gap_of(&ns, || what(self), settle)
            .unwrap_or_else(|| panic!("no connection succeeded after the event\n{}", self.logs()))
    }

    /// `ballast-agent cleanup` on director `i` (its agent stopped): the
    /// XDP program detached, the pins gone, as when the node dies.
    pub fn detach(&mut self, i: usize) {
        let out = output(
            &self.bin,
            self.tb.director_ns_at(i),
            self.pins[i - 1].path(),
            &["cleanup", "--interface", self.tb.director_if()],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

pub fn target() -> SocketAddrV4 {
    SocketAddrV4::new(world::VIP, PORT)
}

/// The MACs that answer one ARP request for the VIP from the client.
pub fn answering(arp: &ArpSocket) -> Vec<[u8; 6]> {
    let _ = arp.frames(Duration::ZERO);
    arp.request(world::CLIENT_MAC, world::CLIENT_ADDR, world::VIP);
    let mut macs: Vec<[u8; 6]> = arp
        .frames(Duration::from_millis(100))
        .into_iter()
        .filter(|a| a.op == 2 && a.spa == world::VIP)
        .map(|a| a.sha)
        .collect();
    macs.sort();
    macs.dedup();
    macs
}

/// Runs `what` while a client in `ns` connects to the VIP every 10 ms:
/// the longest gap between successes after it (and the failures), None
/// when nothing succeeded after it.
pub fn gap_of(ns: &str, what: impl FnOnce(), settle: Duration) -> Option<(Duration, usize)> {
    let prober = Prober::start(ns, target(), PROBE_EVERY, PROBE_TIMEOUT).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let at = Instant::now();
    what();
    std::thread::sleep(settle);
    longest_gap(&prober.stop(), at)
}

/// A long-lived connection through the VIP: a line out, its echo back.
pub struct Held(TcpStream);

impl Held {
    pub fn open(tb: &Testbed) -> Held {
        let s = crate::netns::in_netns(tb.client_ns(), || {
            TcpStream::connect_timeout(&target().into(), Duration::from_secs(2))
        })
        .unwrap()
        .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut h = Held(s);
        let greeting = h.line();
        assert!(greeting.starts_with('b'), "{greeting}");
        h
    }

    fn line(&mut self) -> String {
        use std::io::Read;
        let mut out = Vec::new();
        let mut b = [0u8; 1];
        while self.0.read(&mut b).expect("reading the held connection") == 1 && b[0] != b'\n' {
            out.push(b[0]);
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    #[track_caller]
    pub fn echo(&mut self, what: &str) {
        use std::io::Write;
        writeln!(self.0, "{what}").unwrap();
        assert_eq!(self.line(), what, "the held DR connection echoes");
    }
}

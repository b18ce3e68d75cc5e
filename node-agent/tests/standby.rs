//! Hot standby in namespaces: two standalone directors on the client's
//! segment (one VIP, DR to three backends, the client reaching the VIP
//! on-link, so it ARPs for it), `--peers` each other. A client connects
//! every 10 ms; the announcing director is taken away (clean stop, SIGKILL
//! with its XDP program detached, link down, SIGKILL alone) and the gap
//! the client sees is measured; a long-lived DR connection must survive.
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ballast_testbed::agent::{Agent, Log, PinRoot, WorkDir, command, output, standalone_args};
use ballast_testbed::arp::ArpSocket;
use ballast_testbed::failover::{Prober, longest_gap};
use ballast_testbed::root::require_root;
use ballast_testbed::servers::BackendServer;
use ballast_testbed::topology::{BackendRouting, Testbed, TestbedSpec};
use ballast_testbed::world::{self as testbed, director_addrs, director_mac};

const BIN: &str = env!("CARGO_BIN_EXE_ballast-agent");
const PORT: u16 = 8080;
const TARGET: u16 = 8080;
const KEY: &str = "a shared secret for the pair, 32B\n";

fn virtual_server(priority: u8) -> String {
    format!(
        r#"apiVersion: ballast.dev/v1alpha1
kind: VirtualServer
metadata: {{name: web, namespace: default}}
spec:
  addresses: [{vip}]
  ports:
    - {{name: http, port: {PORT}, protocol: TCP, targetPort: {TARGET}}}
  forwarding: DR
  announce:
    l2: {{priority: {priority}}}
  backends:
    static:
      - {{address: 198.51.100.11, weight: 1}}
      - {{address: 198.51.100.12, weight: 1}}
      - {{address: 198.51.100.13, weight: 1}}
"#,
        vip = testbed::VIP
    )
}

/// A director's SNAT address (FullNAT is not used here, but the flag is
/// required and two directors must not answer ARP for one address).
fn snat(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 51, 100, 1 + 2 * i as u8)
}

struct Pair {
    tb: Testbed,
    work: WorkDir,
    pins: Vec<PinRoot>,
    agents: Vec<Option<Agent>>,
    /// Agents started per director (their logs are appended).
    starts: [usize; 2],
    _servers: Vec<BackendServer>,
    arp: ArpSocket,
}

impl Pair {
    /// Director 1 (`dir-a`, priority 150) and director 2 (`dir-b`, 100).
    fn new(tag: &str) -> Pair {
        let prefix = format!("hs{tag}{}", std::process::id() % 1000);
        let tb = Testbed::build(&TestbedSpec::new(&prefix).backends(3).directors(2)).unwrap();
        tb.attach_test_xdp_pass().unwrap();
        tb.set_backend_mode(BackendRouting::DirectToClient).unwrap();
        tb.add_vip_to_backends(testbed::VIP).unwrap();
        // On-link: the client asks the segment who has the VIP.
        let vip = format!("{}/32", testbed::VIP);
        tb.ip(tb.client_ns(), &["route", "replace", &vip, "dev", "eth0"])
            .unwrap();
        let servers = tb.serve(TARGET).unwrap();
        let work = WorkDir::new(&prefix);
        std::fs::write(work.file("key"), KEY).unwrap();
        for (i, prio) in [(1, 150), (2, 100)] {
            let dir = work.file(&format!("conf{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("web.yaml"), virtual_server(prio)).unwrap();
        }
        let pins = (1..=2)
            .map(|i| PinRoot::new(&format!("ballast-{prefix}-{i}")))
            .collect();
        let arp = ArpSocket::open(tb.client_ns(), "eth0");
        let mut pair = Pair {
            tb,
            work,
            pins,
            agents: vec![None, None],
            starts: [0, 0],
            _servers: servers,
            arp,
        };
        pair.start(1);
        pair.start(2);
        pair
    }

    /// Starts director `i`'s agent (its log continues across restarts).
    fn start(&mut self, i: usize) {
        let other = 3 - i;
        let peer = director_addrs(other).0.to_string();
        let name = ["dir-a", "dir-b"][i - 1];
        let key = self.work.file("key");
        let conf = self.work.file(&format!("conf{i}"));
        let snat = snat(i).to_string();
        let mut args = standalone_args(self.tb.director_if(), &conf, &[]);
        // standalone_args names the shared SNAT address; each its own here.
        let at = args.iter().position(|a| a == "--snat-address").unwrap();
        args[at + 1] = snat;
        args.extend(
            [
                "--node-name",
                name,
                "--peers",
                &peer,
                "--heartbeat-key-file",
                key.to_str().unwrap(),
                "--metrics",
                "127.0.0.1:9469",
            ]
            .map(String::from),
        );
        let mut cmd = command(BIN, self.tb.director_ns_at(i), self.pins[i - 1].path());
        cmd.args(&args);
        let agent = Agent::spawn(cmd, &self.log(i), Log::Append);
        self.agents[i - 1] = Some(agent);
        self.starts[i - 1] += 1;
        let n = self.starts[i - 1];
        self.agent(i)
            .wait_log_count("hot standby: listening for peers", n);
    }

    fn log(&self, i: usize) -> PathBuf {
        self.work.file(&format!("agent{i}.log"))
    }

    fn agent(&mut self, i: usize) -> &mut Agent {
        self.agents[i - 1].as_mut().expect("running")
    }

    /// The MACs answering ARP for the VIP, asked once from the client.
    fn answering(&self) -> Vec<[u8; 6]> {
        let _ = self.arp.frames(Duration::ZERO);
        self.arp
            .request(testbed::CLIENT_MAC, testbed::CLIENT_ADDR, testbed::VIP);
        let mut macs: Vec<[u8; 6]> = self
            .arp
            .frames(Duration::from_millis(100))
            .into_iter()
            .filter(|a| a.op == 2 && a.spa == testbed::VIP)
            .map(|a| a.sha)
            .collect();
        macs.sort();
        macs.dedup();
        macs
    }

    /// Waits until exactly director `i` answers for the VIP.
    #[track_caller]
    fn wait_owner(&self, i: usize, within: Duration) -> Duration {
        let start = Instant::now();
        loop {
            if self.answering() == [director_mac(i)] {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < within,
                "director {i} not the only one answering ARP for the VIP after {within:?} (answering: {:?})\n{}\n{}",
                self.answering(),
                self.logs(1),
                self.logs(2)
            );
        }
    }

    fn logs(&self, i: usize) -> String {
        format!(
            "--- dir{i} ---\n{}",
            std::fs::read_to_string(self.log(i)).unwrap_or_default()
        )
    }

    fn target() -> SocketAddrV4 {
        SocketAddrV4::new(testbed::VIP, PORT)
    }

    /// Runs `what` under a 10 ms client and returns the longest gap
    /// between two successful connections after it.
    fn gap_of(&mut self, what: impl FnOnce(&mut Pair), settle: Duration) -> (Duration, usize) {
        let prober = Prober::start(
            self.tb.client_ns(),
            Self::target(),
            Duration::from_millis(10),
            Duration::from_millis(200),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let at = Instant::now();
        what(self);
        std::thread::sleep(settle);
        let attempts = prober.stop();
        longest_gap(&attempts, at).unwrap_or_else(|| {
            panic!(
                "no connection succeeded after the event\n{}\n{}",
                self.logs(1),
                self.logs(2)
            )
        })
    }

    fn detach(&mut self, i: usize) {
        let out = output(
            BIN,
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

/// A long-lived connection through the VIP: a line out, its echo back.
struct Held(std::net::TcpStream);

impl Held {
    fn open(tb: &Testbed) -> Held {
        let s = ballast_testbed::netns::in_netns(tb.client_ns(), || {
            std::net::TcpStream::connect_timeout(&Pair::target().into(), Duration::from_secs(2))
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
    fn echo(&mut self, what: &str) {
        use std::io::Write;
        writeln!(self.0, "{what}").unwrap();
        assert_eq!(self.line(), what, "the held DR connection echoes");
    }
}

const BOUND: Duration = Duration::from_millis(1500);

#[test]
fn a_standalone_pair_fails_over_each_way_and_a_dr_connection_survives() {
    require_root("network namespaces, XDP and bpffs pins");
    let mut p = Pair::new("a");
    p.wait_owner(1, Duration::from_secs(10));
    let mut held = Held::open(&p.tb);
    held.echo("before");

    // 1. Clean stop: the leaving heartbeat hands the VIP over at once.
    let (stop_gap, _) = p.gap_of(
        |p| {
            p.agent(1).stop(Duration::from_secs(10));
        },
        Duration::from_millis(700),
    );
    p.wait_owner(2, Duration::from_secs(2));
    held.echo("after a clean stop");
    assert!(
        p.logs(2).contains("peer down: it said it is leaving"),
        "{}",
        p.logs(2)
    );

    // 2. It comes back: it takes the VIP back after the hold time (3 s).
    p.start(1);
    let back_after = p.wait_owner(1, Duration::from_secs(8));
    let (back_gap, _) = p.gap_of(|_| {}, Duration::from_millis(200));
    assert!(
        back_after >= Duration::from_secs(2),
        "the returning node waited the hold time: {back_after:?}"
    );
    held.echo("after it came back");

    // 3. SIGKILL and its XDP program detached: a node death.
    let (kill_gap, _) = p.gap_of(
        |p| {
            p.agent(1).kill();
            p.detach(1);
        },
        Duration::from_millis(1500),
    );
    p.wait_owner(2, Duration::from_secs(2));
    held.echo("after SIGKILL and detach");
    p.start(1);
    p.wait_owner(1, Duration::from_secs(8));

    // 4. Its link down.
    let dir1 = p.tb.director_ns_at(1).to_string();
    let (link_gap, _) = p.gap_of(
        |p| {
            p.tb.ip(&dir1, &["link", "set", "eth0", "down"]).unwrap();
        },
        Duration::from_millis(1500),
    );
    p.wait_owner(2, Duration::from_secs(2));
    held.echo("after link down");
    eprintln!(
        "client-side gaps (100 ms x 3): clean stop {stop_gap:?}, move back {back_gap:?}, \
         SIGKILL+detach {kill_gap:?}, link down {link_gap:?}"
    );
    for (what, gap) in [
        ("clean stop", stop_gap),
        ("move back", back_gap),
        ("SIGKILL+detach", kill_gap),
        ("link down", link_gap),
    ] {
        assert!(
            gap < BOUND,
            "{what}: gap {gap:?}\n{}\n{}",
            p.logs(1),
            p.logs(2)
        );
    }
    assert!(p.logs(2).contains("taking over"), "{}", p.logs(2));
}

#[test]
fn an_agent_restart_is_not_a_node_death() {
    require_root("network namespaces, XDP and bpffs pins");
    let mut p = Pair::new("r");
    p.wait_owner(1, Duration::from_secs(10));
    // SIGKILL and back within a second: nothing moves.
    p.agent(1).kill();
    let killed = Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    p.start(1);
    eprintln!(
        "the agent was back announcing {:?} after SIGKILL",
        killed.elapsed()
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        p.answering(),
        [director_mac(1)],
        "{}\n{}",
        p.logs(1),
        p.logs(2)
    );
    assert!(
        !p.logs(2).contains("taking over"),
        "dir-b took over on a restart:\n{}",
        p.logs(2)
    );
    assert!(p.logs(1).contains("agent restart"), "{}", p.logs(1));

    // SIGKILL and no restart: its XDP program answers on for the restart
    // grace (2 s), then stops; dir-b takes over and is the only answerer.
    p.agent(1).kill();
    let moved = p.wait_owner(2, Duration::from_secs(5));
    assert!(
        moved >= Duration::from_millis(1500),
        "moved before the grace ran out: {moved:?}"
    );
    for _ in 0..5 {
        assert_eq!(
            p.answering(),
            [director_mac(2)],
            "the dead agent's XDP stopped answering"
        );
    }
}

#[test]
fn a_cut_heartbeat_path_never_makes_a_second_announcer() {
    require_root("network namespaces, XDP, nftables and bpffs pins");
    let p = Pair::new("p");
    p.wait_owner(1, Duration::from_secs(10));
    let dir1 = p.tb.director_ns_at(1).to_string();
    let peer = director_addrs(2).0.to_string();
    for cmd in [
        "add table inet cut".to_string(),
        "add chain inet cut in { type filter hook input priority 0; }".into(),
        "add chain inet cut out { type filter hook output priority 0; }".into(),
        format!("add rule inet cut in ip saddr {peer} drop"),
        format!("add rule inet cut out ip daddr {peer} drop"),
    ] {
        p.tb.exec(&dir1, &["nft", &cmd]).unwrap();
    }
    let prober = Prober::start(
        p.tb.client_ns(),
        Pair::target(),
        Duration::from_millis(10),
        Duration::from_millis(200),
    )
    .unwrap();
    let until = Instant::now() + Duration::from_secs(4);
    let mut asked = 0;
    while Instant::now() < until {
        assert_eq!(
            p.answering(),
            [director_mac(1)],
            "exactly dir-a answers while the heartbeat path is cut\n{}\n{}",
            p.logs(1),
            p.logs(2)
        );
        asked += 1;
    }
    p.tb.exec(&dir1, &["nft", "delete table inet cut"]).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(p.answering(), [director_mac(1)], "after the cut heals");
    let attempts = prober.stop();
    let failed = attempts.iter().filter(|a| !a.ok).count();
    assert!(asked > 10, "{asked}");
    assert_eq!(failed, 0, "of {} connections", attempts.len());
    assert!(p.logs(1).contains("peer up"), "{}", p.logs(1));
    assert!(
        !p.logs(2).contains("taking over"),
        "dir-b took the VIP over:\n{}",
        p.logs(2)
    );
}

#[test]
fn flooded_frames_are_translated_once() {
    require_root("network namespaces, XDP and bpffs pins");
    let mut p = Pair::new("f");
    p.wait_owner(1, Duration::from_secs(10));
    // The switch forgets dir-a's MAC and may not learn it again: frames to
    // it are flooded to every port, dir-b's too.
    let sw = p.tb.switch_ns().to_string();
    let port = format!("{}-dir", p.tb.prefix());
    p.tb.exec(
        &sw,
        &[
            "bridge", "link", "set", "dev", &port, "learning", "off", "flood", "on",
        ],
    )
    .unwrap();
    let mac = testbed::format_mac(&director_mac(1));
    let _ =
        p.tb.exec(&sw, &["bridge", "fdb", "del", &mac, "dev", &port, "master"]);
    let before: u64 = p._servers.iter().map(|s| s.connections()).sum();
    let n = 20;
    for _ in 0..n {
        ballast_testbed::servers::tcp_probe(
            p.tb.client_ns(),
            Pair::target(),
            Duration::from_secs(2),
        )
        .unwrap();
    }
    let after: u64 = p._servers.iter().map(|s| s.connections()).sum();
    assert_eq!(after - before, n, "each connection reached a backend once");
    let stats = output(
        BIN,
        p.tb.director_ns_at(2),
        p.pins[1].path(),
        &["stats", "--interface", "eth0", "--json"],
    );
    let json: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    let other = json["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["reason"] == "pass_other_host")
        .map_or(0, |r| r["count"].as_u64().unwrap());
    assert!(
        other >= n,
        "dir-b saw the flooded frames and passed them: {other}"
    );
    let _ = p.agent(2);
}

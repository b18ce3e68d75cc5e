//! Active health checks end to end: a standalone agent in a namespace
//! testbed probes real backends over real TCP (and HTTP), takes a backend
//! whose listener stopped out of new flows while its established connection
//! keeps carrying data, shows it in `stats` and `/metrics`, brings it back
//! after recovery, and refuses new connections when every backend is down.
use std::io::{Read, Write};
use std::net::{SocketAddrV4, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ballast_testbed::agent::{self, Agent, Log, PinRoot, WorkDir, standalone_args, stdout_ok};
use ballast_testbed::{
    self as testbed, Testbed, TestbedSpec, http, require_root, servers, servers::BackendServer,
};

const BIN: &str = env!("CARGO_BIN_EXE_ballast-agent");
const T: Duration = Duration::from_secs(5);
const METRICS_PORT: u16 = 19469;

/// intervalSeconds 1, unhealthyThreshold 2, healthyThreshold 2.
const INTERVAL: Duration = Duration::from_secs(1);
const UNHEALTHY: u32 = 2;
const HEALTHY: u32 = 2;
/// For the agent to re-apply and write the inventory, and for a loaded
/// two-core machine; liveness, not speed.
const SLACK: Duration = Duration::from_secs(2);

fn config(extra: &str) -> String {
    format!(
        r#"
apiVersion: ballast.dev/v1alpha1
kind: VirtualServer
metadata: {{name: web, namespace: default}}
spec:
  addresses: [203.0.113.10]
  ports:
    - {{name: http, port: 80, protocol: TCP, targetPort: 8080}}
  backends:
    static:
      - {{address: 198.51.100.11}}
      - {{address: 198.51.100.12}}
      - {{address: 198.51.100.13}}
  healthCheck: {{tcp: {{}}, intervalSeconds: 1, timeoutSeconds: 1, unhealthyThreshold: {UNHEALTHY}, healthyThreshold: {HEALTHY}}}
{extra}"#
    )
}

/// A second object whose backends answer HTTP on 8081 with a status the
/// test sets per backend.
const HTTP_WEB: &str = r#"---
apiVersion: ballast.dev/v1alpha1
kind: VirtualServer
metadata: {name: api, namespace: default}
spec:
  addresses: [203.0.113.11]
  ports:
    - {name: http, port: 80, protocol: TCP, targetPort: 8081}
  backends:
    static:
      - {address: 198.51.100.11}
      - {address: 198.51.100.12}
  healthCheck: {http: {path: /healthz, expectStatus: 200}, intervalSeconds: 1, timeoutSeconds: 1}
"#;

/// Everything one test creates, removed on drop (also on panic), in field
/// order: the agent, its pins and inventory, the work directory, then the
/// namespaces.
struct Lab {
    agent: Option<Agent>,
    pins: PinRoot,
    work: WorkDir,
    tb: Testbed,
}

impl Lab {
    /// The testbed, without an agent yet.
    fn new(prefix: &str) -> Lab {
        require_root("network namespaces, XDP and bpffs pins");
        let tb = Testbed::build(&TestbedSpec::new(prefix).backends(3)).unwrap();
        let lab = Lab {
            agent: None,
            pins: PinRoot::new(prefix),
            work: WorkDir::new(prefix),
            tb,
        };
        lab.tb.attach_test_xdp_pass().unwrap();
        lab
    }

    /// Starts the agent on `yaml` (backends should listen already, or
    /// they are rightly found down).
    fn start_agent(&mut self, yaml: &str) {
        std::fs::write(self.work.conf().join("web.yaml"), yaml).unwrap();
        let metrics = format!("127.0.0.1:{METRICS_PORT}");
        let mut cmd = agent::command(BIN, self.tb.director_ns(), self.pins.path());
        cmd.args(standalone_args(
            self.tb.director_if(),
            &self.work.conf(),
            &["--metrics", &metrics],
        ));
        self.agent = Some(Agent::spawn(cmd, &self.work.file("agent.log"), Log::Fresh));
        self.wait_log("configuration applied");
    }

    fn log(&self) -> String {
        self.agent.as_ref().map(Agent::log).unwrap_or_default()
    }

    fn agent(&mut self) -> &mut Agent {
        self.agent.as_mut().expect("the agent was started")
    }

    fn wait_log(&mut self, needle: &str) {
        self.agent().wait_log(needle);
    }

    fn wait_log_count(&mut self, needle: &str, count: usize) {
        self.agent().wait_log_count(needle, count);
    }

    fn servers(&self, port: u16) -> Vec<BackendServer> {
        self.tb.serve(port).unwrap()
    }

    /// `ballast-agent stats --json`, run as a user does, in the agent's
    /// network namespace (pins are keyed by the interface's identity).
    fn stats(&self) -> serde_json::Value {
        let out = agent::output(
            BIN,
            self.tb.director_ns(),
            self.pins.path(),
            &["stats", "--json", "--interface", self.tb.director_if()],
        );
        serde_json::from_str(&stdout_ok(&out)).unwrap()
    }

    fn stats_table(&self) -> String {
        let out = agent::output(
            BIN,
            self.tb.director_ns(),
            self.pins.path(),
            &["stats", "--interface", self.tb.director_if()],
        );
        stdout_ok(&out)
    }

    /// The `health` object of `backend` in service `service`, from stats.
    fn health(&self, service: &str, backend: &str) -> serde_json::Value {
        let s = self.stats();
        let svc = s["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == service)
            .unwrap_or_else(|| panic!("no service {service} in {s:#}"))
            .clone();
        svc["backends"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["address"] == backend)
            .unwrap_or_else(|| panic!("no backend {backend} in {svc:#}"))["health"]
            .clone()
    }

    /// Waits until `backend`'s health in `service` is `up`; returns how long
    /// it took, failing after `limit`.
    fn wait_health(&self, service: &str, backend: &str, up: bool, limit: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let h = self.health(service, backend);
            if h["up"] == up {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < limit,
                "{service} {backend} not {} within {limit:?}: {h}\n{}",
                if up { "up" } else { "down" },
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// GET /metrics from inside the director's namespace: the body.
    fn metrics(&self) -> String {
        let addr = SocketAddrV4::new([127, 0, 0, 1].into(), METRICS_PORT);
        http::get(self.tb.director_ns(), addr, "/metrics")
            .unwrap()
            .body
    }

    /// `n` new connections to `vip`: the backend name that greeted each,
    /// or the error.
    fn connect_many(&self, vip: SocketAddrV4, n: usize) -> Vec<Result<String, String>> {
        servers::tcp_probes(self.tb.client_ns(), vip, n, 4, T)
            .unwrap()
            .into_iter()
            .map(|r| {
                r.map(|line| line.split(' ').next().unwrap_or_default().to_string())
                    .map_err(|e| format!("{e:#}"))
            })
            .collect()
    }
}

fn prefix(tag: &str) -> String {
    format!("blhc{}{tag}", std::process::id() % 1000)
}

const WEB: &str = "default/web:http";
const VIP: SocketAddrV4 = SocketAddrV4::new(testbed::VIP, 80);

/// A connection through the VIP, held open: its greeting names its backend,
/// and every line sent comes back (the backend echoes).
struct Held {
    stream: TcpStream,
    backend: String,
}

impl Held {
    fn open(lab: &Lab) -> Held {
        let mut stream = testbed::in_netns(lab.tb.client_ns(), || {
            TcpStream::connect_timeout(&VIP.into(), T)
        })
        .unwrap()
        .unwrap();
        stream.set_read_timeout(Some(T)).unwrap();
        let greeting = read_line(&mut stream);
        let backend = greeting.split(' ').next().unwrap().to_string();
        Held { stream, backend }
    }

    fn echo(&mut self, msg: &str) -> String {
        self.stream
            .write_all(format!("{msg}\n").as_bytes())
            .unwrap_or_else(|e| panic!("held connection to {}: {e}", self.backend));
        read_line(&mut self.stream)
    }
}

fn read_line(s: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while b[0] != b'\n' {
        match s.read(&mut b) {
            Ok(1) => line.push(b[0]),
            other => panic!("reading a line: {other:?} after {line:?}"),
        }
    }
    String::from_utf8(line).unwrap().trim_end().to_string()
}

fn backend_addr(name: &str, port: u16) -> String {
    let i: usize = name.trim_start_matches('b').parse().unwrap();
    format!("{}:{port}", testbed::backend_addr(i))
}

#[test]
fn a_backend_whose_listener_stops_leaves_new_flows_keeps_its_flows_and_returns() {
    let mut lab = Lab::new(&prefix("a"));
    let mut servers = lab.servers(8080);
    lab.start_agent(&config(""));

    // All three serve at first (a fresh load starts every backend UP).
    let first = lab.connect_many(VIP, 30);
    for b in ["b1", "b2", "b3"] {
        assert!(
            first.iter().any(|r| r.as_deref() == Ok(b)),
            "{b} got no flow: {first:?}"
        );
    }

    let mut held = Held::open(&lab);
    let x = held.backend.clone();
    let x_index: usize = x.trim_start_matches('b').parse().unwrap();
    let x_addr = backend_addr(&x, 8080);
    assert_eq!(held.echo("before"), "before");

    // X's listener stops; its established connection stays open.
    servers[x_index - 1].close_listener();
    let bound = INTERVAL * UNHEALTHY + INTERVAL + SLACK;
    let took = lab.wait_health(WEB, &x_addr, false, bound);
    eprintln!("{x} marked down {took:?} after its listener closed (bound {bound:?})");

    // New connections all succeed, none on X.
    let after = lab.connect_many(VIP, 60);
    assert!(
        after.iter().all(|r| r.as_ref().is_ok_and(|b| *b != x)),
        "{x} is down: {after:?}"
    );
    // X's established connection still carries data.
    assert_eq!(held.echo("while down"), "while down");

    // stats and /metrics say so, with the reason and the transition.
    let h = lab.health(WEB, &x_addr);
    assert_eq!(h["check"], "tcp");
    assert_eq!(h["transitions"], 1);
    assert_eq!(h["last_failure"], "connect: connection refused", "{h}");
    for i in (1..=3).filter(|&i| i != x_index) {
        let other = lab.health(WEB, &format!("{}:8080", testbed::backend_addr(i)));
        assert_eq!(other["up"], true, "{other}");
    }
    let table = lab.stats_table();
    assert!(
        table.lines().any(|l| l.contains(&x_addr)
            && l.contains("DOWN (tcp; 1 transition; last failure: connect: connection refused)")),
        "{table}"
    );
    let m = lab.metrics();
    for line in [
        format!(r#"ballast_backend_up{{backend="{x_addr}",service="{WEB}"}} 0"#),
        format!(
            r#"ballast_backend_health_transitions_total{{backend="{x_addr}",service="{WEB}"}} 1"#
        ),
        format!(
            r#"ballast_backend_health_last_failure_info{{backend="{x_addr}",reason="connect: connection refused",service="{WEB}"}} 1"#
        ),
    ] {
        assert!(m.contains(&line), "{line} in\n{m}");
    }
    assert_eq!(m.matches("ballast_backend_up{").count(), 3, "{m}");

    // A reload that keeps the backend keeps its verdict: X stays out (a
    // reset to UP would send new flows to its closed port).
    std::fs::write(
        lab.work.conf().join("web.yaml"),
        config("# edited: the agent reloads"),
    )
    .unwrap();
    lab.wait_log_count("configuration applied", 2);
    assert_eq!(lab.health(WEB, &x_addr)["up"], false);
    let reloaded = lab.connect_many(VIP, 30);
    assert!(
        reloaded.iter().all(|r| r.as_ref().is_ok_and(|b| *b != x)),
        "{x} still down after a reload: {reloaded:?}"
    );

    // Back: the listener reopens, X passes healthyThreshold probes and gets
    // new flows again.
    servers[x_index - 1].reopen_listener().unwrap();
    let bound = INTERVAL * HEALTHY + INTERVAL + SLACK;
    let took = lab.wait_health(WEB, &x_addr, true, bound);
    eprintln!("{x} back up {took:?} after its listener reopened (bound {bound:?})");
    let back = lab.connect_many(VIP, 60);
    assert!(back.iter().all(|r| r.is_ok()), "{back:?}");
    assert!(
        back.iter().any(|r| r.as_deref() == Ok(x.as_str())),
        "{x} gets new flows again: {back:?}"
    );
    assert_eq!(lab.health(WEB, &x_addr)["transitions"], 2);
    assert_eq!(held.echo("after"), "after");
    assert!(
        lab.log().contains("health check: backend DOWN"),
        "{}",
        lab.log()
    );
}

#[test]
fn when_every_backend_is_down_new_connections_fail_and_recovery_serves_again() {
    let mut lab = Lab::new(&prefix("b"));
    let mut servers = lab.servers(8080);
    lab.start_agent(&config(""));
    let first = lab.connect_many(VIP, 6);
    assert!(first.iter().all(|r| r.is_ok()), "{first:?}");
    let mut held = Held::open(&lab);

    for s in &mut servers {
        s.close_listener();
    }
    let bound = INTERVAL * UNHEALTHY + INTERVAL + SLACK;
    for i in 1..=3 {
        lab.wait_health(
            WEB,
            &format!("{}:8080", testbed::backend_addr(i)),
            false,
            bound,
        );
    }
    lab.wait_log("every backend is DOWN");

    // Fail closed: no backend is chosen for a new connection, and the data
    // plane refuses it at once with a RST (REJECT), not a timeout.
    let attempt = Instant::now();
    let r = servers::tcp_probe(lab.tb.client_ns(), VIP, Duration::from_secs(3));
    let err = r.expect_err("a new connection with every backend down");
    let io = err
        .chain()
        .find_map(|e| e.downcast_ref::<std::io::Error>())
        .unwrap_or_else(|| panic!("not an I/O error: {err:#}"));
    assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused, "{err:#}");
    assert!(
        attempt.elapsed() < Duration::from_secs(1),
        "refused in {:?}",
        attempt.elapsed()
    );
    // The established connection is not cut.
    assert_eq!(held.echo("all down"), "all down");

    // One backend recovers: it takes every new connection.
    servers[1].reopen_listener().unwrap();
    let bound = INTERVAL * HEALTHY + INTERVAL + SLACK;
    lab.wait_health(WEB, "198.51.100.12:8080", true, bound);
    let back = lab.connect_many(VIP, 12);
    assert!(back.iter().all(|r| r.as_deref() == Ok("b2")), "{back:?}");
}

/// An HTTP server on `port` in `ns` answering every request with `status`
/// (changeable) and a body naming the backend. Stops on drop.
struct HttpBackend {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpBackend {
    fn start(ns: &str, name: &str, port: u16, status: Arc<AtomicU16>) -> HttpBackend {
        let l = testbed::in_netns(ns, move || TcpListener::bind(("0.0.0.0", port)))
            .unwrap()
            .unwrap();
        l.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (stop2, name) = (stop.clone(), name.to_string());
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                let Ok((mut s, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let _ = s.set_nonblocking(false);
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut head = Vec::new();
                let mut b = [0u8; 512];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut b) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&b[..n]),
                    }
                }
                let code = status.load(Ordering::SeqCst);
                let _ = s.write_all(
                    format!(
                        "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{name}",
                        name.len()
                    )
                    .as_bytes(),
                );
            }
        });
        HttpBackend {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for HttpBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// GET / through `vip`: the body (the backend's name).
fn http_get(ns: &str, vip: SocketAddrV4) -> Result<String, String> {
    let mut s = testbed::in_netns(ns, move || TcpStream::connect_timeout(&vip.into(), T))
        .unwrap()
        .map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(T)).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).map_err(|e| e.to_string())?;
    resp.split("\r\n\r\n")
        .nth(1)
        .map(str::to_string)
        .ok_or(resp)
}

#[test]
fn an_http_check_takes_out_a_backend_answering_the_wrong_status() {
    let mut lab = Lab::new(&prefix("c"));
    let status: Vec<Arc<AtomicU16>> = (0..2).map(|_| Arc::new(AtomicU16::new(200))).collect();
    let _http: Vec<HttpBackend> = (1..=2)
        .map(|i| {
            HttpBackend::start(
                lab.tb.backend_ns(i),
                &format!("b{i}"),
                8081,
                status[i - 1].clone(),
            )
        })
        .collect();
    let _tcp = lab.servers(8080);
    lab.start_agent(&config(HTTP_WEB));
    let api = "default/api:http";
    let vip = SocketAddrV4::new([203, 0, 113, 11].into(), 80);
    let b2 = "198.51.100.12:8081";
    assert_eq!(lab.health(api, b2)["check"], "http GET /healthz -> 200");

    status[1].store(503, Ordering::SeqCst);
    let bound = INTERVAL * 2 + INTERVAL + SLACK;
    lab.wait_health(api, b2, false, bound);
    let h = lab.health(api, b2);
    assert_eq!(h["last_failure"], "http: status 503, expected 200", "{h}");
    for _ in 0..20 {
        assert_eq!(http_get(lab.tb.client_ns(), vip).as_deref(), Ok("b1"));
    }

    status[1].store(200, Ordering::SeqCst);
    lab.wait_health(api, b2, true, bound);
    let seen: Vec<_> = (0..40).map(|_| http_get(lab.tb.client_ns(), vip)).collect();
    assert!(seen.iter().all(|r| r.is_ok()), "{seen:?}");
    assert!(seen.iter().any(|r| r.as_deref() == Ok("b2")), "{seen:?}");
}

#[test]
fn a_restarted_agent_keeps_a_down_backend_out() {
    let mut lab = Lab::new(&prefix("k"));
    let mut servers = lab.servers(8080);
    // Three failures in a row to go DOWN: an agent that forgot the verdict
    // would send new flows to the dead backend for three probe intervals
    // after its restart.
    let yaml = config("").replace(
        &format!("unhealthyThreshold: {UNHEALTHY}"),
        "unhealthyThreshold: 3",
    );
    lab.start_agent(&yaml);
    servers[1].close_listener();
    let b2 = format!("{}:8080", testbed::backend_addr(2));
    lab.wait_health(WEB, &b2, false, INTERVAL * 4 + SLACK);
    // The inventory (where the verdicts are kept) is written off the apply
    // path: wait for it to say DOWN, as `stats` reads it.
    lab.agent().kill();
    lab.start_agent(&yaml);
    assert!(
        lab.log()
            .contains("health checks start from the verdicts the previous agent left"),
        "{}",
        lab.log()
    );
    let after = lab.connect_many(VIP, 30);
    assert!(
        after.iter().all(|r| r.as_ref().is_ok_and(|b| b != "b2")),
        "no new flow reaches the backend known down: {after:?}"
    );
    assert_eq!(lab.health(WEB, &b2)["up"], false, "still DOWN in stats");
    assert_eq!(lab.health(WEB, &b2)["transitions"], 1, "its history kept");
}

#[test]
fn a_udp_check_takes_out_a_backend_with_nothing_on_its_port() {
    let mut lab = Lab::new(&prefix("u"));
    // b1 and b2 serve UDP on 5353; nothing listens there on b3, whose
    // kernel answers ICMP port unreachable.
    let _servers: Vec<BackendServer> = (1..=2)
        .map(|i| {
            BackendServer::start(
                lab.tb.backend_ns(i),
                &format!("b{i}"),
                SocketAddrV4::new(testbed::backend_addr(i), 5353),
            )
            .unwrap()
        })
        .collect();
    lab.start_agent(
        r#"
apiVersion: ballast.dev/v1alpha1
kind: VirtualServer
metadata: {name: dns, namespace: default}
spec:
  addresses: [203.0.113.10]
  ports:
    - {name: dns, port: 53, protocol: UDP, targetPort: 5353}
  backends:
    static:
      - {address: 198.51.100.11}
      - {address: 198.51.100.12}
      - {address: 198.51.100.13}
  healthCheck: {udp: {payload: probe}, intervalSeconds: 1, timeoutSeconds: 1, unhealthyThreshold: 2, healthyThreshold: 2}
"#,
    );
    const DNS: &str = "default/dns:dns";
    let b3 = format!("{}:5353", testbed::backend_addr(3));
    lab.wait_health(DNS, &b3, false, INTERVAL * (UNHEALTHY + 1) + SLACK);
    let h = lab.health(DNS, &b3);
    assert_eq!(h["check"], "udp (5 bytes, no port unreachable)", "{h}");
    assert_eq!(h["last_failure"], "udp: port unreachable", "{h}");
    for i in 1..=2 {
        let up = lab.health(DNS, &format!("{}:5353", testbed::backend_addr(i)));
        assert_eq!(
            up["up"], true,
            "b{i} answers nothing but has the port: {up}"
        );
    }
    let vip = SocketAddrV4::new(testbed::VIP, 53);
    for _ in 0..20 {
        let reply = servers::udp_probe(lab.tb.client_ns(), vip, T).unwrap();
        assert!(
            reply.starts_with("b1 ") || reply.starts_with("b2 "),
            "only the live backends get new flows: {reply}"
        );
    }
}

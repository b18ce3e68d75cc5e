//! A whole Ballast cluster in network namespaces: the controller (in this
//! process, against the fake API server, over mutual TLS) and agents in
//! node mode (real `ballast-agent node` processes, one per director
//! namespace), a client and backends on one L2 segment.
//!
//! ```text
//!   client 192.0.2.1  ── br0 (switch ns, 192.0.2.254: the controller's link) ──
//!   node-a  eth0 192.0.2.2 / 198.51.100.2      node-b eth0 192.0.2.4 / 198.51.100.4
//!   backends 198.51.100.11..  (replies to the SNAT addresses on-link)
//! ```
//!
//! The client reaches VIPs on-link, so whichever node the controller makes
//! a VIP's L2 announcer answers its ARP (in XDP): the traffic of a VIP goes
//! through exactly that node. Each agent's FullNAT source is its
//! interface's first address (the node's InternalIP), the default.

#![allow(dead_code)] // each test binary uses a part

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ballast_api::{AddressPool, VirtualServer};
use ballast_controller::k8s::leader::LeaseConfig;
use ballast_controller::k8s::run::{Handle, Options, start};
use ballast_controller::link::tls::{AgentIdentity, TlsFiles};
use ballast_controller::link::{AgentReports, Security};
use ballast_controller::metrics::Metrics;
use ballast_controller::plan::PlanOptions;
use ballast_fake_apiserver::FakeApiServer;
use ballast_testbed::agent::{Agent, PinRoot, WorkDir};
use ballast_testbed::pki::{Ca, SERVER_NAME};
use ballast_testbed::{BackendRouting, BackendServer, Testbed, TestbedSpec, in_netns};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::CustomResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use tokio::runtime::Runtime;

pub const BIN: &str = env!("CARGO_BIN_EXE_ballast-agent");
/// The controller's link address, on the switch's bridge.
pub const LINK_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 254);
/// The two replicas' link ports (the switch namespace holds nothing else);
/// agents dial both in turn, as they would replicas without a Service.
pub const LINK_PORTS: [u16; 2] = [9443, 9444];
pub const NODES: [&str; 2] = ["node-a", "node-b"];
pub const BACKEND_PORT: u16 = 8080;
/// How long an agent that went away keeps its node's duties, and how long a
/// new leader waits for agents to reconnect (`--agent-grace`).
pub const AGENT_GRACE: Duration = Duration::from_secs(5);
/// How long a cluster-wide change may take to show on the wire.
pub const CONVERGE: Duration = Duration::from_secs(30);

/// One controller replica: planning, leader election and the link server.
pub struct Controller {
    pub handle: Option<Handle>,
    pub reports: AgentReports,
    link_stop: Option<tokio::sync::oneshot::Sender<()>>,
    link: Option<tokio::task::JoinHandle<()>>,
}

/// A node-mode agent process with its own pin root.
pub struct NodeAgent {
    pub process: Agent,
    pub pins: PinRoot,
    pub node: &'static str,
}

pub struct Cluster {
    pub rt: Runtime,
    pub tb: Testbed,
    pub api: Option<FakeApiServer>,
    pub work: WorkDir,
    pub ca: Ca,
    pub controllers: Vec<Controller>,
    pub agents: Vec<Option<NodeAgent>>,
    pub servers: Vec<BackendServer>,
}

impl Cluster {
    /// The namespaces, backends serving on [`BACKEND_PORT`], the API server
    /// with two Ready nodes, an AddressPool, and Service `web` with an
    /// EndpointSlice naming `endpoints` (backend indices). No controller,
    /// no agent yet.
    pub fn new(prefix: &str, backends: usize, endpoints: &[usize]) -> Cluster {
        ballast_testbed::require_root("namespaces, XDP and agents in node mode");
        let tb = Testbed::build(&TestbedSpec::new(prefix).backends(backends).directors(2))
            .expect("building the testbed");
        tb.attach_test_xdp_pass()
            .expect("xdp_pass on the directors' peers");
        tb.set_backend_mode(BackendRouting::DirectToClient)
            .expect("backends reply on-link");
        tb.ip(
            tb.client_ns(),
            &["route", "replace", ballast_testbed::VIP_NET, "dev", "eth0"],
        )
        .expect("VIPs on-link at the client");
        let link = format!("{LINK_ADDR}/24");
        tb.ip(tb.switch_ns(), &["addr", "add", &link, "dev", "br0"])
            .expect("the link address on the bridge");
        let servers = tb.serve(BACKEND_PORT).expect("backend servers");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let api = rt.block_on(async {
            let s = FakeApiServer::start().await;
            s.install_crd(&VirtualServer::crd());
            s.install_crd(&AddressPool::crd());
            s
        });
        let work = WorkDir::new(&format!("cluster-{prefix}"));
        let ca = Ca::new("ballast cluster test CA");
        write(work.file("ca.crt"), &ca.pem());
        let c = Cluster {
            rt,
            tb,
            api: Some(api),
            work,
            ca,
            controllers: Vec::new(),
            agents: vec![None, None],
            servers,
        };
        for node in NODES {
            c.ready_node(node);
        }
        c.apply(
            json!({"apiVersion": "ballast.dev/v1alpha1", "kind": "AddressPool",
            "metadata": {"name": "public"}, "spec": {"addresses": ["203.0.113.0/24"]}}),
        );
        c.apply(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": BACKEND_PORT}]}}));
        c.set_endpoints(endpoints);
        c
    }

    /// A client of the API server (made inside the runtime, which its
    /// buffer task needs).
    pub fn client(&self) -> kube::Client {
        let _in_runtime = self.rt.enter();
        self.api.as_ref().expect("the API server runs").client()
    }

    fn ready_node(&self, name: &str) {
        let client = self.client();
        self.rt
            .block_on(ballast_fake_apiserver::fixtures::ready_node(&client, name));
    }

    /// Server-side applies `body` as manager "test".
    pub fn apply(&self, body: Value) {
        let client = self.client();
        let name = body["metadata"]["name"].as_str().unwrap().to_string();
        let ns = body["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        let pp = PatchParams::apply("test").force();
        self.rt.block_on(async {
            match body["kind"].as_str().unwrap() {
                "VirtualServer" => Api::<VirtualServer>::namespaced(client, &ns)
                    .patch(&name, &pp, &Patch::Apply(body))
                    .await
                    .map(|_| ()),
                "AddressPool" => Api::<AddressPool>::all(client)
                    .patch(&name, &pp, &Patch::Apply(body))
                    .await
                    .map(|_| ()),
                "Service" => Api::<Service>::namespaced(client, &ns)
                    .patch(&name, &pp, &Patch::Apply(body))
                    .await
                    .map(|_| ()),
                "EndpointSlice" => Api::<EndpointSlice>::namespaced(client, &ns)
                    .patch(&name, &pp, &Patch::Apply(body))
                    .await
                    .map(|_| ()),
                other => panic!("unexpected kind {other}"),
            }
            .unwrap()
        });
    }

    /// Service `web`'s endpoints: backends `indices` (1-based), ready.
    pub fn set_endpoints(&self, indices: &[usize]) {
        let endpoints: Vec<Value> = indices
            .iter()
            .map(|&i| json!({"addresses": [Testbed::backend_addr(i).to_string()], "conditions": {"ready": true}}))
            .collect();
        self.apply(
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "web-1", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": BACKEND_PORT, "protocol": "TCP"}],
            "endpoints": endpoints}),
        );
    }

    /// A FullNAT VirtualServer `name` at `vip`:80 with Service web's endpoints.
    pub fn virtual_server(&self, name: &str, vip: Ipv4Addr) {
        self.apply(json!({"apiVersion": "ballast.dev/v1alpha1", "kind": "VirtualServer",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"addresses": [vip.to_string()], "ports": [{"port": 80, "targetPort": BACKEND_PORT}],
                     "backends": {"serviceRef": {"name": "web", "port": 80}}}}));
    }

    /// A VIP of 203.0.113.0/24 whose L2 announcer is `node` while both
    /// nodes direct it (the controller's own choice function).
    pub fn vip_announced_by(node: &str, skip: &[Ipv4Addr]) -> Ipv4Addr {
        (10..250)
            .map(|h| Ipv4Addr::new(203, 0, 113, h))
            .filter(|v| !skip.contains(v))
            .find(|v| ballast_controller::plan::l2_owner((*v).into(), NODES) == Some(node))
            .expect("some VIP lands on each node")
    }

    /// The controller's certificate files, written once: a replica's link
    /// server re-reads them when they change, and a rewrite under its
    /// feet would be a rotation.
    fn server_files(&self) -> TlsFiles {
        let files = TlsFiles {
            cert: self.work.file("controller.crt"),
            key: self.work.file("controller.key"),
            client_ca: self.work.file("ca.crt"),
        };
        if !files.cert.exists() {
            let leaf = self.ca.server();
            write(files.key.clone(), &leaf.key);
            write(files.cert.clone(), &leaf.cert);
        }
        files
    }

    /// Starts controller replica `identity`: planning and leader election on
    /// the API server, and its link server on the bridge address at
    /// [`LINK_PORTS`]`[slot]`. Returns its index in `controllers`.
    pub fn start_controller(&mut self, identity: &str, slot: usize) -> usize {
        let client = self.client();
        let files = self.server_files();
        let port = LINK_PORTS[slot];
        let options = Options {
            plan: PlanOptions::default(),
            lease: LeaseConfig {
                namespace: "default".into(),
                name: "ballast-controller".into(),
                identity: identity.into(),
                duration: Duration::from_secs(3),
            },
            retry_period: Duration::from_millis(300),
            debounce: Duration::from_millis(20),
            resync: Duration::from_secs(2),
            agent_grace: AGENT_GRACE,
        };
        let sw = self.tb.switch_ns().to_string();
        let std_listener = in_netns(&sw, move || std::net::TcpListener::bind((LINK_ADDR, port)))
            .expect("entering the switch namespace")
            .expect("binding the link address");
        std_listener.set_nonblocking(true).unwrap();
        let reports = AgentReports::new();
        let (link_stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (handle, link) = self.rt.block_on(async {
            ballast_controller::link::tls::install_crypto_provider();
            let handle = start(client, options, Arc::new(Metrics::new()), reports.clone())
                .await
                .expect("starting the controller");
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            let inputs = handle.link_inputs();
            let served = ballast_controller::link::serve(
                listener,
                Security::Mtls(files, AgentIdentity::Node),
                inputs,
                reports.clone(),
                async {
                    let _ = stopped.await;
                },
            );
            let link = tokio::spawn(async move {
                if let Err(e) = served.await {
                    panic!("link server: {e}");
                }
            });
            (handle, link)
        });
        self.controllers.push(Controller {
            handle: Some(handle),
            reports,
            link_stop: Some(link_stop),
            link: Some(link),
        });
        self.controllers.len() - 1
    }

    /// Stops replica `i` (its link server, then its planning and lease).
    #[track_caller]
    pub fn stop_controller(&mut self, i: usize) {
        if let Err(e) = self.try_stop_controller(i) {
            panic!("{e}");
        }
    }

    fn try_stop_controller(&mut self, i: usize) -> Result<(), String> {
        let c = &mut self.controllers[i];
        let (Some(stop), Some(link), Some(handle)) =
            (c.link_stop.take(), c.link.take(), c.handle.take())
        else {
            return Err(format!("controller {i} is not running"));
        };
        let _ = stop.send(());
        self.rt.block_on(async {
            let served = link.await;
            handle.shutdown().await;
            served.map_err(|e| format!("link server task: {e}"))
        })
    }

    /// Starts node `i`'s agent (`ballast-agent node`) in its namespace; its
    /// log goes to `<work>/<node>.log` (appended across restarts).
    pub fn start_agent(&mut self, i: usize) {
        self.start_agent_with(i, &[]);
    }

    /// [`Self::start_agent`] with `extra` flags.
    pub fn start_agent_with(&mut self, i: usize, extra: &[&str]) {
        let leaf = self.ca.agent(NODES[i]);
        self.start_agent_as(i, leaf, extra);
    }

    /// Node `i`'s agent presenting `leaf` as its client certificate.
    pub fn start_agent_as(&mut self, i: usize, leaf: ballast_testbed::pki::Leaf, extra: &[&str]) {
        let node = NODES[i];
        let cert = write(self.work.file(&format!("{node}.crt")), &leaf.cert);
        let key = write(self.work.file(&format!("{node}.key")), &leaf.key);
        let ca = self.work.file("ca.crt");
        let pins = match self.agents[i].take() {
            Some(old) => old.pins,
            None => PinRoot::new(&format!("{}-{node}", self.tb.prefix())),
        };
        let controller = LINK_PORTS
            .map(|p| format!("https://{LINK_ADDR}:{p}"))
            .join(",");
        let args: Vec<String> = [
            "node",
            "--node-name",
            node,
            "--controller",
            &controller,
            "--tls-cert",
            path(&cert),
            "--tls-key",
            path(&key),
            "--tls-ca",
            path(&ca),
            "--tls-server-name",
            SERVER_NAME,
            "--interface",
            "eth0",
            "--heartbeat",
            "300ms",
            "--reconnect-max",
            "500ms",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut cmd =
            ballast_testbed::agent::command(BIN, self.tb.director_ns_at(i + 1), pins.path());
        cmd.args(&args).args(extra);
        let log = self.work.file(&format!("{node}.log"));
        let process = Agent::spawn(cmd, &log, ballast_testbed::agent::Log::Append);
        self.agents[i] = Some(NodeAgent {
            process,
            pins,
            node,
        });
    }

    pub fn agent(&mut self, i: usize) -> &mut Agent {
        &mut self.agents[i].as_mut().expect("agent started").process
    }

    /// Connects from the client to `vip`:80; the backend's greeting.
    pub fn probe(&self, vip: Ipv4Addr) -> anyhow::Result<String> {
        ballast_testbed::tcp_probe(
            self.tb.client_ns(),
            SocketAddrV4::new(vip, 80),
            Duration::from_secs(3),
        )
    }

    /// Polls `probe(vip)` until it is served by one of `backends` (names
    /// `b<i>`), or fails after [`CONVERGE`].
    #[track_caller]
    pub fn wait_served(&self, vip: Ipv4Addr, what: &str) -> String {
        let deadline = Instant::now() + CONVERGE;
        loop {
            match self.probe(vip) {
                Ok(greeting) => return greeting,
                Err(e) if Instant::now() > deadline => {
                    panic!("{what}: {vip}:80 never served: {e:#}\n{}", self.logs())
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// `ballast-agent stats --json` on node `i`.
    pub fn stats(&self, i: usize) -> Value {
        let pins = &self.agents[i].as_ref().expect("agent started").pins;
        let out = ballast_testbed::agent::output(
            BIN,
            self.tb.director_ns_at(i + 1),
            pins.path(),
            &["stats", "--interface", "eth0", "--json"],
        );
        serde_json::from_str(&ballast_testbed::agent::stdout_ok(&out)).expect("stats JSON")
    }

    /// Waits until node `i`'s `stats` names `vip`:80: the agent writes the
    /// inventory `stats` reads in the background, up to
    /// `inventory::writer::INTERVAL` after the apply, so a service can
    /// forward before `stats` lists it.
    pub fn wait_listed(&self, i: usize, vip: Ipv4Addr) {
        let want = format!("{vip}:80/TCP");
        let deadline = Instant::now() + CONVERGE;
        loop {
            let s = self.stats(i);
            let listed = s["services"]
                .as_array()
                .is_some_and(|l| l.iter().any(|svc| svc["vip"] == want.as_str()));
            if listed {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {i}'s stats never listed {want}: {s}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// New flows node `i` has sent to `vip`:80 so far (0: not programmed).
    pub fn new_flows(&self, i: usize, vip: Ipv4Addr) -> u64 {
        let s = self.stats(i);
        let want = format!("{vip}:80/TCP");
        s["services"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|svc| svc["vip"] == want.as_str())
            .map(|svc| svc["counters"]["new_flows"].as_u64().unwrap_or(0))
            .sum()
    }

    /// The backends node `i` programs for `vip`:80, as `addr:port`.
    pub fn programmed_backends(&self, i: usize, vip: Ipv4Addr) -> Vec<String> {
        let s = self.stats(i);
        let want = format!("{vip}:80/TCP");
        let mut out: Vec<String> = s["services"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|svc| svc["vip"] == want.as_str())
            .flat_map(|svc| svc["backends"].as_array().cloned().unwrap_or_default())
            .filter(|b| b["weight"].as_u64() != Some(0))
            .map(|b| b["address"].as_str().unwrap_or_default().to_string())
            .collect();
        out.sort();
        out
    }

    /// The VirtualServer as the API server holds it.
    pub fn virtual_server_object(&self, name: &str) -> Option<Value> {
        self.api.as_ref()?.object(
            "ballast.dev/v1alpha1",
            "virtualservers",
            Some("default"),
            name,
        )
    }

    /// Every agent's log, for failure messages.
    pub fn logs(&self) -> String {
        self.agents
            .iter()
            .flatten()
            .map(|a| format!("--- {} ---\n{}", a.node, a.process.log()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Agents first (they hold the pins' locks), then the controller.
        for a in self.agents.iter_mut().flatten() {
            a.process.kill();
        }
        self.agents.clear();
        for i in 0..self.controllers.len() {
            if self.controllers[i].handle.is_some() {
                // Never panic here: a failing test is already unwinding.
                let _ = self.try_stop_controller(i);
            }
        }
        // Detach XDP before the namespaces go (their deletion would do it
        // too; this keeps the pins' directories removable).
        for i in 1..=self.tb.director_count() {
            let ns = self.tb.director_ns_at(i).to_string();
            let _ = self
                .tb
                .ip(&ns, &["link", "set", "dev", "eth0", "xdp", "off"]);
        }
    }
}

fn write(path: PathBuf, text: &str) -> PathBuf {
    std::fs::write(&path, text).unwrap();
    path
}

fn path(p: &std::path::Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

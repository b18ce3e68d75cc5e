//! Harness for the link server tests: certificates made with rcgen, a
//! server on 127.0.0.1 fed by test-side watch channels (pure planner types),
//! and a tonic client that plays an agent.

#![allow(dead_code)] // each test binary uses a part

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use ballast_controller::fixtures::tcp80_service_plan;
use ballast_controller::k8s::run::{Handle, Options, start};
use ballast_controller::link::server::ServeError;
use ballast_controller::link::tls::TlsFiles;
use ballast_controller::link::{AgentReports, LinkInputs, Security};
use ballast_controller::metrics::Metrics;
use ballast_controller::object_key::{Kind, ObjectKey};
use ballast_controller::plan::{NodePlan, Plan, ServicePlan};
use ballast_proto::v1::node_sync_client::NodeSyncClient;
use ballast_proto::v1::{AgentMessage, ControllerMessage, Hello, agent_message};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::{Status, Streaming};

pub use ballast_testbed::pki::{Ca, Leaf, SERVER_NAME};

/// A fresh directory for one test's files.
pub fn scratch_dir(test: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "ballast-link-{test}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Server files for `ca`'s server certificate, trusting `client_ca` for
/// agents.
pub fn server_files(dir: &Path, ca: &Ca, client_ca: &Ca) -> TlsFiles {
    let leaf = ca.server();
    TlsFiles {
        cert: write(dir, "server.crt", &leaf.cert),
        key: write(dir, "server.key", &leaf.key),
        client_ca: write(dir, "client-ca.crt", &client_ca.pem()),
    }
}

/// A running link server and the channels that drive it.
pub struct Harness {
    pub addr: SocketAddr,
    pub plans: watch::Sender<Option<Arc<Plan>>>,
    pub leader: watch::Sender<bool>,
    pub leader_name: watch::Sender<Option<String>>,
    /// Starts true: these tests are about a leader that knows its agents.
    pub settled: watch::Sender<bool>,
    pub reports: AgentReports,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), ServeError>>,
}

impl Harness {
    /// Serves on 127.0.0.1 with `plan` already planned and leadership as
    /// given.
    pub async fn start(security: Security, plan: Option<Plan>, leading: bool) -> Harness {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (plans, plans_rx) = watch::channel(plan.map(Arc::new));
        let (leader, leader_rx) = watch::channel(leading);
        let (leader_name, leader_name_rx) = watch::channel(None);
        let (settled, settled_rx) = watch::channel(true);
        let reports = AgentReports::new();
        let (stop, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(ballast_controller::link::serve(
            listener,
            security,
            LinkInputs {
                plans: plans_rx,
                leader: leader_rx,
                leader_name: leader_name_rx,
                settled: settled_rx,
            },
            reports.clone(),
            async {
                let _ = stop_rx.await;
            },
        ));
        Harness {
            addr,
            plans,
            leader,
            leader_name,
            settled,
            reports,
            stop: Some(stop),
            task,
        }
    }

    pub fn plan(&self, plan: Plan) {
        self.plans.send_replace(Some(Arc::new(plan)));
    }

    /// Stops the server and checks that it returns cleanly.
    pub async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}

/// The real controller loop on `client` with its link server on
/// 127.0.0.1, sharing one `AgentReports`, as `ballast-controller run`
/// wires them.
pub struct LinkedController {
    pub handle: Handle,
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    link: tokio::task::JoinHandle<Result<(), ServeError>>,
}

impl LinkedController {
    pub async fn start(client: kube::Client, options: Options, security: Security) -> Self {
        let reports = AgentReports::new();
        let handle = start(client, options, Arc::new(Metrics::new()), reports.clone())
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let link = tokio::spawn(ballast_controller::link::serve(
            listener,
            security,
            handle.link_inputs(),
            reports,
            async {
                let _ = stopped.await;
            },
        ));
        LinkedController {
            handle,
            addr,
            stop,
            link,
        }
    }

    /// Stops the link (agents hear UNAVAILABLE) and then the controller.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        self.link.await.unwrap().unwrap();
        self.handle.shutdown().await;
    }
}

/// A channel to the harness, with `agent`'s certificate (or none) and
/// `ca` as the server's trust root.
pub async fn channel(addr: SocketAddr, tls: Option<(&Ca, Option<&Leaf>)>) -> Channel {
    let Some((ca, agent)) = tls else {
        return Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
    };
    // Under TLS 1.3 this succeeds even when the server refuses our
    // certificate; the refusal shows on the first RPC.
    tls_channel(addr, &ca.pem(), agent, SERVER_NAME)
        .await
        .unwrap()
}

/// A TLS channel trusting `ca_pem`, presenting `agent` (or no
/// certificate), expecting the server to be `server_name`; the error is
/// the handshake's when the client refuses the server.
pub async fn tls_channel(
    addr: SocketAddr,
    ca_pem: &str,
    agent: Option<&Leaf>,
    server_name: &str,
) -> Result<Channel, tonic::transport::Error> {
    ballast_controller::link::tls::install_crypto_provider();
    let mut config = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name(server_name);
    if let Some(leaf) = agent {
        config = config.identity(Identity::from_pem(&leaf.cert, &leaf.key));
    }
    Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(config)?
        .connect()
        .await
}

/// One agent stream: what we send, what we receive.
pub struct AgentStream {
    pub tx: mpsc::Sender<AgentMessage>,
    pub rx: Streaming<ControllerMessage>,
}

pub fn hello(node: &str, applied_version: u64, applied_hash: &[u8]) -> Hello {
    Hello {
        node_name: node.to_string(),
        agent_version: "0.1.0-test".to_string(),
        applied_version,
        applied_hash: applied_hash.to_vec(),
    }
}

/// Opens `NodeSync.Sync` and says `hello`; the error is the server's
/// refusal.
pub async fn open(channel: &Channel, hello: Hello) -> Result<AgentStream, Status> {
    let (tx, rx) = mpsc::channel(16);
    send(&tx, agent_message::Kind::Hello(hello)).await;
    let response = NodeSyncClient::new(channel.clone())
        .sync(ReceiverStream::new(rx))
        .await?;
    Ok(AgentStream {
        tx,
        rx: response.into_inner(),
    })
}

pub async fn send(tx: &mpsc::Sender<AgentMessage>, kind: agent_message::Kind) {
    tx.send(AgentMessage { kind: Some(kind) }).await.unwrap();
}

/// The next message, failing the test after 10 s of silence.
pub async fn next(stream: &mut AgentStream) -> Result<ControllerMessage, Status> {
    tokio::time::timeout(std::time::Duration::from_secs(10), stream.rx.message())
        .await
        .expect("no message from the controller within 10 s")
        .map(|m| m.expect("the controller ended the stream without a status"))
}

pub fn key(name: &str) -> ObjectKey {
    ObjectKey::new(Kind::VirtualServer, "default", name)
}

/// A service at `vip`:80/TCP with the given backends (all :8080, weight 1).
pub fn service(vip: &str, backends: &[&str]) -> Arc<ServicePlan> {
    let backends = backends.iter().map(|b| b.parse::<IpAddr>().unwrap());
    Arc::new(tcp80_service_plan(vip.parse().unwrap(), backends))
}

/// A plan where `node` directs the given services and announces their VIPs
/// over L2.
pub fn plan_for(node: &str, services: &[(&str, Arc<ServicePlan>)]) -> Plan {
    let mut np = NodePlan::default();
    for (name, sp) in services {
        np.l2_announce.extend(sp.vips.iter().copied());
        np.services.insert(key(name), sp.clone());
    }
    Plan {
        nodes: [(node.to_string(), np)].into_iter().collect(),
        ..Plan::default()
    }
}

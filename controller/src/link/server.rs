//! The controller's gRPC server for `ballast.v1.NodeSync`: agents dial, the
//! leader streams each its node's state (a resync on Hello, then a delta per
//! plan change) and records their acks, nacks and heartbeats in
//! [`AgentReports`].
//!
//! Inputs are watch channels: the planner's latest [`Plan`] (every replica
//! plans; the planning core stays pure and knows nothing of streams) and
//! leadership. Only the leader serves: a non-leader answers a new stream
//! with UNAVAILABLE naming the leader when known, and when leadership is
//! lost every open stream ends with that status, so agents retry until they
//! reach the new leader.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ballast_proto::v1::node_sync_server::{NodeSync, NodeSyncServer};
use ballast_proto::v1::{AgentMessage, ControllerMessage, Hello, agent_message};
use futures::Stream;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

use super::agents::AgentReports;
use super::hub::{Hub, StreamId};
use super::tls::{AgentIdentity, ReloadingConfig, TlsError, TlsFiles, authorize, peer_agent_claim};
use crate::plan::Plan;

/// How long a new stream may take to say Hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// After shutdown ends every stream, how long to wait for connections to
/// close before returning anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How the link is secured.
#[derive(Clone, Debug)]
pub enum Security {
    /// Mutual TLS with agent certificates from the client CA, identified
    /// as the mode says.
    Mtls(TlsFiles, AgentIdentity),
    /// Plain TCP, anyone may claim any node (`--insecure`; tests and labs).
    Insecure,
}

/// What the server follows.
#[derive(Clone, Debug)]
pub struct LinkInputs {
    /// The planner's latest plan; `None` until the first.
    pub plans: watch::Receiver<Option<Arc<Plan>>>,
    /// Whether this replica leads.
    pub leader: watch::Receiver<bool>,
    /// Who holds the lease, when known (for refusals).
    pub leader_name: watch::Receiver<Option<String>>,
    /// The leader knows which agents are present (`k8s::settle`). Until
    /// it does, streams are accepted and nothing is sent. The planner
    /// publishes the plan made with that knowledge before setting this.
    pub settled: watch::Receiver<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("link TLS: {0}")]
    Tls(#[from] TlsError),
    #[error("link gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// The `NodeSync` service.
pub struct NodeSyncService {
    hub: Arc<Hub>,
    /// Under mTLS, the Hello's node must be one the certificate may speak
    /// for; None: plain TCP, no identity.
    identity: Option<AgentIdentity>,
}

type SyncStream = Pin<Box<dyn Stream<Item = Result<ControllerMessage, Status>> + Send>>;

#[tonic::async_trait]
impl NodeSync for NodeSyncService {
    type SyncStream = SyncStream;

    async fn sync(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<SyncStream>, Status> {
        let certified = match self.identity {
            Some(mode) => {
                let certs = request.peer_certs();
                let claim = peer_agent_claim(certs.as_deref().map(Vec::as_slice))
                    .map_err(|e| Status::permission_denied(e.to_string()))?;
                Some((mode, claim))
            }
            None => None,
        };
        let mut inbound = request.into_inner();
        let hello = first_hello(&mut inbound).await?;
        if let Some((mode, claim)) = certified {
            authorize(mode, &claim, &hello.node_name)
                .map_err(|e| Status::permission_denied(e.to_string()))?;
        }
        let (sid, rx, ended) = self.hub.register(&hello)?;
        tracing::info!(node = %sid.node, agent_version = %hello.agent_version, applied_version = hello.applied_version, "agent connected");
        tokio::spawn(read_agent(self.hub.clone(), sid, inbound, ended));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// The stream's first message, which must be a well-formed Hello.
async fn first_hello(inbound: &mut Streaming<AgentMessage>) -> Result<Hello, Status> {
    let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message())
        .await
        .map_err(|_| Status::deadline_exceeded("no Hello within 10 s"))??;
    let Some(AgentMessage {
        kind: Some(agent_message::Kind::Hello(hello)),
    }) = first
    else {
        return Err(Status::invalid_argument(
            "the first message of a stream must be a Hello",
        ));
    };
    if hello.node_name.is_empty() {
        return Err(Status::invalid_argument("Hello.node_name is empty"));
    }
    if hello.applied_version > 0 && hello.applied_hash.len() != 32 {
        return Err(Status::invalid_argument(format!(
            "Hello.applied_hash has {} bytes; a SHA-256 has 32",
            hello.applied_hash.len()
        )));
    }
    Ok(hello)
}

/// Records what the agent sends until its stream ends, or until the hub
/// ends it (`ended`: replaced, leadership lost, shutdown, fell behind).
async fn read_agent(
    hub: Arc<Hub>,
    sid: StreamId,
    mut inbound: Streaming<AgentMessage>,
    mut ended: tokio::sync::oneshot::Receiver<()>,
) {
    let ended = loop {
        let message = tokio::select! {
            m = inbound.message() => m,
            _ = &mut ended => return,
        };
        match message {
            Ok(Some(AgentMessage { kind: Some(kind) })) => match kind {
                agent_message::Kind::Ack(ack) => hub.ack(&sid, &ack),
                agent_message::Kind::Nack(nack) => hub.nack(&sid, &nack),
                agent_message::Kind::Heartbeat(hb) => hub.heartbeat(&sid, &hb),
                agent_message::Kind::Hello(_) => {
                    break Some(Status::invalid_argument(
                        "Hello is only the first message of a stream",
                    ));
                }
            },
            Ok(Some(AgentMessage { kind: None })) => {
                break Some(Status::invalid_argument("an AgentMessage with no kind"));
            }
            Ok(None) => break None,
            Err(status) => {
                tracing::debug!(node = %sid.node, %status, "agent stream failed");
                break None;
            }
        }
    };
    tracing::info!(node = %sid.node, "agent stream ended");
    hub.remove(&sid, ended);
}

/// Feeds plans and leadership into the hub until the inputs close.
async fn follow(hub: Arc<Hub>, mut inputs: LinkInputs) {
    let leading = *inputs.leader.borrow_and_update();
    hub.set_leadership(leading, inputs.leader_name.borrow_and_update().clone());
    if let Some(plan) = inputs.plans.borrow_and_update().clone() {
        hub.apply_plan(&plan);
    }
    hub.set_settled(*inputs.settled.borrow_and_update());
    loop {
        tokio::select! {
            r = inputs.plans.changed() => {
                if r.is_err() { break; }
                let plan = inputs.plans.borrow_and_update().clone();
                if let Some(plan) = plan {
                    hub.apply_plan(&plan);
                }
            }
            r = inputs.leader.changed() => {
                if r.is_err() { break; }
                let leading = *inputs.leader.borrow_and_update();
                hub.set_leadership(leading, inputs.leader_name.borrow().clone());
            }
            r = inputs.leader_name.changed() => {
                if r.is_err() { break; }
                let name = inputs.leader_name.borrow_and_update().clone();
                hub.set_leadership(*inputs.leader.borrow(), name);
            }
            r = inputs.settled.changed() => {
                if r.is_err() { break; }
                let settled = *inputs.settled.borrow_and_update();
                if settled {
                    // The plan made with presence known was published
                    // before `settled`: apply it first, so the resyncs
                    // compare agents with it and not with the plan made
                    // while presence was unknown.
                    let plan = inputs.plans.borrow_and_update().clone();
                    if let Some(plan) = plan {
                        hub.apply_plan(&plan);
                    }
                }
                hub.set_settled(settled);
            }
        }
    }
}

/// Serves `NodeSync` on `listener` until `shutdown` completes, then ends
/// every stream with UNAVAILABLE (agents keep forwarding and retry) and
/// returns once connections close (or after a short grace period).
pub async fn serve(
    listener: TcpListener,
    security: Security,
    inputs: LinkInputs,
    reports: AgentReports,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    super::tls::install_crypto_provider();
    let hub = Arc::new(Hub::new(reports));
    let follower = tokio::spawn(follow(hub.clone(), inputs));
    let service = NodeSyncServer::new(NodeSyncService {
        hub: hub.clone(),
        identity: match security {
            Security::Mtls(_, mode) => Some(mode),
            Security::Insecure => None,
        },
    });
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<()>();
    let closing = {
        let hub = hub.clone();
        async move {
            shutdown.await;
            hub.close(Status::unavailable("the controller is shutting down"));
            let _ = closed_tx.send(());
        }
    };
    let router = tonic::transport::Server::builder().add_service(service);
    let served = async {
        match security {
            Security::Insecure => {
                warn_insecure(listener.local_addr().ok());
                let incoming = TcpListenerStream::new(listener);
                router.serve_with_incoming_shutdown(incoming, closing).await
            }
            Security::Mtls(files, _) => {
                let config = Arc::new(ReloadingConfig::load(files)?);
                let (tx, rx) = mpsc::channel(64);
                let acceptor = tokio::spawn(accept_tls(listener, config, tx));
                let r = router
                    .serve_with_incoming_shutdown(ReceiverStream::new(rx), closing)
                    .await;
                acceptor.abort();
                r
            }
        }
        .map_err(ServeError::from)
    };
    let grace = async {
        let _ = closed_rx.await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    let result = tokio::select! {
        r = served => r,
        _ = grace => Ok(()),
    };
    follower.abort();
    result
}

/// Logged at every start without TLS, so it cannot go unnoticed.
fn warn_insecure(addr: Option<SocketAddr>) {
    tracing::warn!(
        addr = ?addr,
        "INSECURE: the agent link serves plain TCP without TLS (--insecure): \
         any client can claim any node and read its state. Use --tls-cert, \
         --tls-key and --tls-client-ca outside tests."
    );
}

type TlsStream = tokio_rustls::server::TlsStream<TcpStream>;

/// Accepts TCP connections and hands each, after its TLS handshake (run
/// apart, so a slow client delays no one), to the gRPC server. Each
/// handshake uses the configuration current at its start.
async fn accept_tls(
    listener: TcpListener,
    config: Arc<ReloadingConfig>,
    tx: mpsc::Sender<Result<TlsStream, std::io::Error>>,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: pause, don't spin.
                tracing::warn!(error = %e, "accepting a link connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(config.get());
        let tx = tx.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    let _ = tx.send(Ok(tls)).await;
                }
                Ok(Err(e)) => tracing::info!(%peer, error = %e, "link TLS handshake refused"),
                Err(_) => tracing::info!(%peer, "link TLS handshake timed out"),
            }
        });
    }
}

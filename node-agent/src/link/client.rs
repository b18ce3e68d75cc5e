//! The agent's end of the link: dials the controller, opens one
//! `NodeSync.Sync` stream, says Hello with what it holds, hands each version
//! to the agent core and answers it, and sends a heartbeat every second.
//!
//! The stream is the controller's knowledge that this agent exists, so it is
//! kept open for as long as the process runs: when it ends for any reason
//! (a standby controller answering UNAVAILABLE, a leader change, a network
//! cut, a certificate rotation here) the agent keeps forwarding what it
//! holds and dials again: the next address at once (see [`super::dial`]:
//! every `--controller` entry, resolved at each round, names every
//! replica), and after a round in which none took the stream, a pause with
//! exponential backoff and full jitter so that a thousand agents do not
//! reconnect in step after a controller restart.
use std::path::PathBuf;
use std::time::Duration;

use ballast_proto::v1::{AgentMessage, agent_message, node_sync_client::NodeSyncClient};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tracing::{info, warn};

use super::dial::{self, Entry, Target};
use super::heartbeat;
use super::persist;
use super::session::{Session, Step, Work};
use super::tls::{ClientTls, TlsWatch};
use crate::core::{AgentError, AgentHandle, ApplyReport};

/// The agent's build version, sent in every Hello.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Clone, Debug)]
pub struct LinkOptions {
    /// The Kubernetes Node this agent runs on.
    pub node_name: String,
    /// `https://host:port` (or `http://` with `tls: None`), tried in turn,
    /// each resolved to every address it names: usually one (the
    /// controller's headless link Service); several when the replicas are
    /// named one by one.
    pub controllers: Vec<String>,
    /// None: plain TCP (`--insecure`).
    pub tls: Option<ClientTls>,
    pub heartbeat: Duration,
    /// Where the applied state is kept across restarts; None: nowhere.
    pub state_file: Option<PathBuf>,
    /// Reconnect backoff: first and largest pause.
    pub backoff: (Duration, Duration),
}

/// Exponential backoff with full jitter (a pause drawn uniformly from zero
/// to the current ceiling), reset once a stream carried a message.
struct Backoff {
    first: Duration,
    max: Duration,
    ceiling: Duration,
}

impl Backoff {
    fn new((first, max): (Duration, Duration)) -> Self {
        Backoff {
            first,
            max,
            ceiling: first,
        }
    }

    fn next(&mut self) -> Duration {
        let pause = self.ceiling.mul_f64(fastrand::f64());
        self.ceiling = (self.ceiling * 2).min(self.max);
        pause.max(Duration::from_millis(10))
    }

    fn reset(&mut self) {
        self.ceiling = self.first;
    }
}

/// How a stream ended.
enum Ended {
    /// Dial again (after a pause).
    Retry(String),
    /// The certificates changed: dial again at once.
    Rotated,
    Shutdown,
}

/// Serves the link until `shutdown` completes. Never returns an error: a
/// link problem is logged and retried, forwarding goes on meanwhile.
pub async fn run(
    opts: LinkOptions,
    agent: AgentHandle,
    mut session: Session,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut backoff = Backoff::new(opts.backoff);
    let mut watch = opts.tls.as_ref().map(TlsWatch::new);
    let mut keeper = opts.state_file.clone().map(persist::Keeper::new);
    loop {
        for given in &opts.controllers {
            let targets = match Entry::parse(given) {
                Ok(entry) => entry.resolve(dial::lookup).await,
                Err(e) => Err(e),
            };
            let targets = match targets {
                Ok(t) => t,
                Err(e) => {
                    warn!("controller link: {e}");
                    continue;
                }
            };
            for target in &targets {
                loop {
                    let ended = tokio::select! {
                        ended = stream_once(&opts, target, &agent, &mut session, &mut backoff, watch.as_mut(), keeper.as_mut()) => ended,
                        () = &mut shutdown => Ended::Shutdown,
                    };
                    match ended {
                        Ended::Shutdown => return,
                        Ended::Rotated => {
                            info!("link certificates changed on disk: reconnecting with them");
                        }
                        Ended::Retry(why) => {
                            // A standby refuses, a dead replica does not
                            // answer: the next address may be the leader.
                            warn!(controller = %target.entry, address = %target.address, "controller link: {why}; forwarding continues with applied version {}", session.applied_version());
                            break;
                        }
                    }
                }
            }
        }
        // A round in which no address kept the stream: pause before the next.
        let pause = backoff.next();
        info!(retry_in = ?pause, "no controller address kept the stream; dialling again after a pause");
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = &mut shutdown => return,
        }
    }
}

async fn connect(opts: &LinkOptions, target: &Target) -> Result<Channel, String> {
    // The TLS configuration names the server (the entry's host, or
    // --tls-server-name): the URI's address is only where to connect.
    let mut endpoint = Endpoint::from_shared(target.uri.clone())
        .map_err(|e| format!("--controller {}: {e}", target.entry))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_keepalive(Some(Duration::from_secs(10)))
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5));
    if let Some(tls) = &opts.tls {
        endpoint = endpoint
            .tls_config(tls.load().map_err(|e| e.to_string())?)
            .map_err(|e| format!("TLS configuration: {e}"))?;
    }
    endpoint
        .connect()
        .await
        .map_err(|e| format!("cannot connect: {}", chain(&e)))
}

/// An error with its causes, `a: b: c` (tonic's own text is only the
/// outermost, e.g. "transport error").
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// One stream, from dialling to its end.
async fn stream_once(
    opts: &LinkOptions,
    target: &Target,
    agent: &AgentHandle,
    session: &mut Session,
    backoff: &mut Backoff,
    mut watch: Option<&mut TlsWatch>,
    mut keeper: Option<&mut persist::Keeper>,
) -> Ended {
    if let Some(w) = watch.as_deref_mut() {
        w.mark();
    }
    let channel = match connect(opts, target).await {
        Ok(c) => c,
        Err(why) => return Ended::Retry(why),
    };
    let mut client = NodeSyncClient::new(channel);
    // A few messages in flight are plenty: answers go one per version.
    let (tx, rx) = mpsc::channel::<AgentMessage>(16);
    let hello = session.hello(&opts.node_name, AGENT_VERSION);
    tx.try_send(hello).expect("room for the first message");
    let mut inbound = match client.sync(ReceiverStream::new(rx)).await {
        Ok(response) => response.into_inner(),
        Err(status) => return Ended::Retry(describe(&status)),
    };
    // The leader accepted the Hello (a standby refuses at once).
    info!(controller = %target.entry, address = %target.address, applied_version = session.applied_version(), "controller link up");
    let mut beat = tokio::time::interval(opts.heartbeat);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rotation = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            received = inbound.message() => {
                let msg = match received {
                    Ok(Some(m)) => m,
                    Ok(None) => return Ended::Retry("the controller ended the stream".into()),
                    Err(status) => return Ended::Retry(describe(&status)),
                };
                backoff.reset();
                let answer = handle(agent, session, keeper.as_deref_mut(), msg).await;
                if tx.send(answer).await.is_err() {
                    return Ended::Retry("the stream closed".into());
                }
            }
            _ = beat.tick() => {
                match agent.usage().await {
                    Ok(usage) => {
                        let hb = heartbeat::from_usage(&usage, session.held());
                        // A full queue means the controller is not reading:
                        // skip this beat rather than wait.
                        let _ = tx.try_send(AgentMessage { kind: Some(agent_message::Kind::Heartbeat(hb)) });
                    }
                    Err(e) => warn!("heartbeat: {e:#}"),
                }
            }
            _ = rotation.tick(), if watch.is_some() => {
                if watch.as_deref_mut().is_some_and(TlsWatch::changed) {
                    return Ended::Rotated;
                }
            }
        }
    }
}

/// Applies what one controller message asks and returns the answer.
async fn handle(
    agent: &AgentHandle,
    session: &mut Session,
    keeper: Option<&mut persist::Keeper>,
    msg: ballast_proto::v1::ControllerMessage,
) -> AgentMessage {
    let mut candidate = match session.receive(msg) {
        Step::Answer(a) => return a,
        Step::Apply(c) => c,
    };
    let version = candidate.version;
    match apply(agent, candidate.take_work()).await {
        Ok(report) => {
            for e in &report.errors {
                warn!(version, "{e}");
            }
            let answer = session.applied(*candidate, &report);
            if session.applied_version() == version {
                info!(
                    version,
                    services = report.programmed,
                    "applied the controller's version"
                );
                if let (Some(keeper), Some(held)) = (keeper, session.held())
                    && let Err(e) = keeper.keep(&held.state, session.last_delta())
                {
                    warn!(
                        "keeping the applied state in {}: {e}",
                        keeper.path().display()
                    );
                }
            }
            answer
        }
        Err(e) => {
            warn!(version, "applying the controller's version: {e}");
            session.failed(&candidate, &e.to_string())
        }
    }
}

/// Hands `work` to the running core: a whole version, or a change to the
/// applied one.
pub async fn apply(agent: &AgentHandle, work: Work) -> Result<ApplyReport, AgentError> {
    match work {
        Work::Whole(d) => agent.apply(d).await,
        Work::Change(c) => agent.apply_change(c).await,
    }
}

/// A status as the log shows it; UNAVAILABLE from a standby names the
/// leader in its message.
fn describe(status: &tonic::Status) -> String {
    match std::error::Error::source(status) {
        Some(cause) => format!(
            "{:?}: {}: {}",
            status.code(),
            status.message(),
            chain(cause)
        ),
        None => format!("{:?}: {}", status.code(), status.message()),
    }
}

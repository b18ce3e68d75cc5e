//! Director nodes are nodes with a present agent, end to end: the real
//! controller loop against the fake API server, its link server, and two
//! agents played by gRPC clients. A controller restart, with both agents
//! reconnecting, sends them nothing; an agent that stays away past the
//! grace period loses its VIP to the other; and a restart while it is
//! still away does not hand the VIP back to it while the new leader waits.

mod link_support;
mod support;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ballast_controller::link::Security;
use ballast_controller::object_key::{Kind as ObjectKind, ObjectKey};
use ballast_fake_apiserver::FakeApiServer;
use ballast_proto::v1::{Ack, ControllerMessage, NodeState, agent_message, controller_message};
use ballast_proto::{apply_delta, content_hash, delta_is_empty};
use link_support::{AgentStream, LinkedController, channel, hello, next, open, send};
use support::{apply, eventually, options_with_lease, pool, ready_node, server, static_spec, vs};

const GRACE: Duration = Duration::from_secs(2);

/// A controller with its link (plain TCP: mTLS is link_server's) and a
/// short grace.
async fn controller(s: &FakeApiServer) -> LinkedController {
    let mut options = options_with_lease("a", Duration::from_secs(2), Duration::from_millis(200));
    options.agent_grace = GRACE;
    LinkedController::start(s.client(), options, Security::Insecure).await
}

/// An agent: what it holds, and its stream to the controller.
struct Agent {
    node: &'static str,
    held: NodeState,
    stream: AgentStream,
}

impl Agent {
    /// Connects (retrying while the controller elects itself and plans,
    /// as a real agent does) saying what it holds.
    async fn connect(addr: SocketAddr, node: &'static str, held: NodeState) -> Agent {
        let ch = channel(addr, None).await;
        let hash = if held.version == 0 {
            Vec::new()
        } else {
            content_hash(&held).to_vec()
        };
        let stream = eventually(&format!("the leader serves {node}"), || async {
            open(&ch, hello(node, held.version, &hash)).await.ok()
        })
        .await;
        Agent { node, held, stream }
    }

    /// Receives the next message, applies it and acks it.
    async fn receive(&mut self) -> ControllerMessage {
        let message = next(&mut self.stream).await.unwrap();
        match message.kind.as_ref().unwrap() {
            controller_message::Kind::Snapshot(s) => self.held = s.clone(),
            controller_message::Kind::Delta(d) => apply_delta(&mut self.held, d).unwrap(),
        }
        let ack = Ack {
            version: self.held.version,
            content_hash: content_hash(&self.held).to_vec(),
        };
        send(&self.stream.tx, agent_message::Kind::Ack(ack)).await;
        message
    }

    /// Asserts that for `quiet` the agent is sent nothing but, at most, an
    /// empty delta that only moves its version.
    async fn hears_nothing_for(&mut self, quiet: Duration) {
        let deadline = tokio::time::Instant::now() + quiet;
        while let Ok(m) = tokio::time::timeout_at(deadline, self.stream.rx.message()).await {
            let m = m.unwrap().expect("the stream stays open");
            match m.kind {
                Some(controller_message::Kind::Delta(d)) if delta_is_empty(&d) => {
                    apply_delta(&mut self.held, &d).unwrap();
                }
                other => panic!("{} was sent {other:?}", self.node),
            }
        }
    }

    fn announces(&self, vip: IpAddr) -> bool {
        let bytes = match vip {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        };
        self.held
            .announcements
            .as_ref()
            .is_some_and(|a| a.l2.contains(&bytes))
    }
}

fn web() -> ObjectKey {
    ObjectKey::new(ObjectKind::VirtualServer, "default", "web")
}

#[tokio::test]
async fn a_restart_moves_nothing_and_an_agent_away_past_the_grace_loses_its_vip() {
    let s = server().await;
    let c = s.client();
    ready_node(&c, "node-a").await;
    ready_node(&c, "node-b").await;
    apply(&c, pool(&["203.0.113.0/30"])).await;
    apply(&c, vs("web", static_spec(80))).await;

    // Both agents connect fresh; once both are there the leader settles
    // and each gets the whole state: both direct web, one announces it.
    let first = controller(&s).await;
    let mut a = Agent::connect(first.addr, "node-a", NodeState::default()).await;
    let mut b = Agent::connect(first.addr, "node-b", NodeState::default()).await;
    for agent in [&mut a, &mut b] {
        let m = agent.receive().await;
        assert!(
            matches!(m.kind, Some(controller_message::Kind::Snapshot(_))),
            "{m:?}"
        );
        assert_eq!(agent.held.services.len(), 1, "{}", agent.node);
    }
    let vip = first.handle.plans.borrow().as_ref().unwrap().statuses[&web()].addresses[0];
    assert_eq!(
        u8::from(a.announces(vip)) + u8::from(b.announces(vip)),
        1,
        "exactly one L2 owner"
    );

    // The controller restarts. Its agents keep what they hold, reconnect
    // and say so: nothing is sent (at most an empty delta realigning a
    // version), and the new leader directs with both. The agent that does
    // not announce reconnects first: a leader that read "not reconnected
    // yet" as "gone" would hand it the VIP.
    first.shutdown().await;
    for agent in [&mut a, &mut b] {
        let ended = tokio::time::timeout(Duration::from_secs(10), agent.stream.rx.message())
            .await
            .expect("the stopping controller ends the stream");
        assert!(ended.is_err(), "{}: {ended:?}", agent.node);
    }
    let second = controller(&s).await;
    let (owner, other) = if a.announces(vip) { (a, b) } else { (b, a) };
    let mut other = Agent::connect(second.addr, other.node, other.held).await;
    other.hears_nothing_for(Duration::from_millis(500)).await;
    assert!(!*second.handle.settled.borrow(), "one agent is still away");
    let mut owner = Agent::connect(second.addr, owner.node, owner.held).await;
    let mut settled = second.handle.settled.clone();
    tokio::time::timeout(Duration::from_secs(10), settled.wait_for(|s| *s))
        .await
        .expect("settles once both agents are back")
        .unwrap();
    // Past the grace too, so a wrong reading of presence would have shown.
    owner
        .hears_nothing_for(GRACE + Duration::from_millis(500))
        .await;
    other.hears_nothing_for(Duration::from_millis(100)).await;
    {
        let plan = second.handle.plans.borrow().clone().unwrap();
        let status = &plan.statuses[&web()];
        assert_eq!(status.directors.len(), 2, "{status:?}");
        assert!(status.absent.is_empty(), "{status:?}");
    }

    // The owner's agent goes away. Within the grace nothing moves; after
    // it, the other agent is told to announce the VIP, and web's status
    // names the absent node and why.
    let owner_node = owner.node;
    let dropped = std::time::Instant::now();
    drop(owner.stream.tx);
    let m = other.receive().await;
    assert!(dropped.elapsed() >= GRACE, "moved within the grace");
    let Some(controller_message::Kind::Delta(delta)) = m.kind else {
        panic!("expected a delta, got {m:?}");
    };
    assert!(other.announces(vip), "{delta:?}");
    assert_eq!(delta.l2_added.len(), 1, "{delta:?}");
    assert!(
        delta.upserted.is_empty() && delta.removed.is_empty(),
        "only the announcement moves: {delta:?}"
    );
    let plan = second.handle.plans.borrow().clone().unwrap();
    let status = &plan.statuses[&web()];
    assert_eq!(status.directors.len(), 1, "{status:?}");
    assert_eq!(&*status.directors[0].node, other.node);
    assert_eq!(status.absent.len(), 1, "{status:?}");
    assert_eq!(&*status.absent[0].0, owner_node);
    assert!(
        status.absent[0].1.contains("away since") && status.absent[0].1.contains("grace 2s"),
        "{status:?}"
    );
    assert!(!plan.nodes.contains_key(owner_node));
    second.shutdown().await;

    // Restarted again with the first owner still away: while the new
    // leader waits for agents, it plans as if every Ready node directed,
    // which would give the VIP back to the absent node. The remaining
    // agent is held and told nothing, through the grace and after it.
    let third = controller(&s).await;
    let ended = tokio::time::timeout(Duration::from_secs(10), other.stream.rx.message()).await;
    assert!(ended.expect("the stream ends").is_err());
    let mut other = Agent::connect(third.addr, other.node, other.held).await;
    other
        .hears_nothing_for(GRACE + Duration::from_millis(800))
        .await;
    assert!(
        *third.handle.settled.borrow(),
        "settled when the grace ran out"
    );
    assert!(other.announces(vip));
    let plan = third.handle.plans.borrow().clone().unwrap();
    let status = &plan.statuses[&web()];
    assert_eq!(&*status.absent[0].0, owner_node, "{status:?}");
    assert_eq!(
        status.absent[0].1,
        "no agent has connected to the controller from this node"
    );
    third.shutdown().await;
}

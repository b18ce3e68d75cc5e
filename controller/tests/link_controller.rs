//! The link server wired to the real controller loop: a VirtualServer
//! written through the (fake) API server reaches an agent's stream as a
//! snapshot, and an edit of it as one delta, over mutual TLS.

mod link_support;
mod support;

use std::time::Duration;

use ballast_controller::link::Security;
use ballast_controller::link::tls::AgentIdentity;
use ballast_proto::apply_delta;
use ballast_proto::v1::{ObjectKind, controller_message::Kind};
use link_support::{Ca, LinkedController, channel, hello, next, open, scratch_dir, server_files};
use support::{
    apply, options_with_lease, pool, ready_node, server, static_spec, two_backends_spec, vs,
};

#[tokio::test]
async fn a_virtual_server_written_to_the_api_reaches_the_agents_stream() {
    let s = server().await;
    let c = s.client();
    ready_node(&c, "node-a").await;
    apply(&c, pool(&["203.0.113.0/30"])).await;
    apply(&c, vs("web", static_spec(80))).await;
    let options = options_with_lease("a", Duration::from_secs(2), Duration::from_millis(200));
    let ca = Ca::new("ballast test CA");
    let files = server_files(&scratch_dir("controller"), &ca, &ca);
    let controller = LinkedController::start(
        s.client(),
        options,
        Security::Mtls(files, AgentIdentity::Node),
    )
    .await;
    let addr = controller.addr;

    // The agent retries while the controller elects itself and plans, as
    // a real agent would.
    let agent_cert = ca.agent("node-a");
    let ch = channel(addr, Some((&ca, Some(&agent_cert)))).await;
    let mut agent = support::eventually("the leader serves node-a", || async {
        open(&ch, hello("node-a", 0, &[])).await.ok()
    })
    .await;
    let Some(Kind::Snapshot(mut held)) = next(&mut agent).await.unwrap().kind else {
        panic!("expected a snapshot first");
    };
    assert_eq!(held.services.len(), 1, "{held:?}");
    let web = held.services[0].object.clone().unwrap();
    assert_eq!(
        (web.kind, web.namespace.as_str(), web.name.as_str()),
        (ObjectKind::VirtualServer as i32, "default", "web")
    );
    let backends = &held.services[0].ports[0].backends;
    assert_eq!(backends.len(), 1);
    assert_eq!(backends[0].address, vec![198, 51, 100, 11]);

    // A second backend through the API: one delta that upserts web.
    apply(&c, vs("web", two_backends_spec())).await;
    let Some(Kind::Delta(delta)) = next(&mut agent).await.unwrap().kind else {
        panic!("expected a delta");
    };
    assert_eq!(delta.base_version, held.version);
    assert_eq!(delta.upserted.len(), 1, "{delta:?}");
    apply_delta(&mut held, &delta).unwrap();
    assert_eq!(held.services[0].ports[0].backends.len(), 2);

    controller.shutdown().await;
}

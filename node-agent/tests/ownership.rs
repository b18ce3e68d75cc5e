//! Configuration ownership with a real agent, real XDP and real TCP: an
//! object serving a VIP keeps it when a new file claims it with a name that
//! sorts first; a second document with the serving object's name changes
//! nothing; a restarted agent (no history) decides by name, and a holder
//! that goes hands the address to the refused object.
use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use ballast_testbed::{
    self as testbed, Testbed, TestbedSpec,
    agent::{AGENT_START, Agent, start_standalone, write_config},
    require_root, servers,
};

const BIN: &str = env!("CARGO_BIN_EXE_ballast-agent");
const T: Duration = Duration::from_secs(5);

/// `name` serving VIP:80 with one backend on :8080.
fn virtual_server(name: &str, backend: usize, extra: &str) -> String {
    format!(
        "apiVersion: ballast.dev/v1alpha1\nkind: VirtualServer\n\
         metadata: {{name: {name}, namespace: default}}\n\
         spec:\n  addresses: [{vip}]\n  ports: [{{port: 80, targetPort: 8080}}]\n{extra}  \
         backends: {{static: [{{address: {b}}}]}}\n",
        vip = testbed::VIP,
        b = testbed::backend_addr(backend),
    )
}

/// Removes the pinned data plane and the scratch directory, even when the
/// test fails half-way.
struct Scratch {
    pin_root: PathBuf,
    work: PathBuf,
    interface: String,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = Command::new(BIN)
            .arg("--pin-root")
            .arg(&self.pin_root)
            .args(["cleanup", "--interface", &self.interface])
            .output();
        let _ = std::fs::remove_dir_all(&self.pin_root);
        // The agent's /run state (inventory, lock) is named after the pin
        // root; cleanup above only finds it from the agent's namespace.
        if let Some(name) = self.pin_root.file_name() {
            let _ = std::fs::remove_dir_all(std::path::Path::new("/run").join(name));
        }
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

/// SIGTERM; the agent must exit cleanly.
fn stop(agent: &mut Agent) {
    let status = agent.stop(AGENT_START);
    assert!(status.success(), "agent exit: {status}\n{}", agent.log());
}

/// Names of the backends that answered `n` new connections to the VIP.
fn answered_by(tb: &Testbed, n: usize) -> Vec<String> {
    let vip = SocketAddrV4::new(testbed::VIP, 80);
    servers::tcp_probes(tb.client_ns(), vip, n, 4, T)
        .unwrap()
        .into_iter()
        .map(|r| {
            r.expect("every connection is answered")
                .split(' ')
                .next()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
fn the_serving_object_keeps_its_vip_against_newcomers_and_duplicates() {
    require_root("builds network namespaces and attaches XDP");
    let prefix = format!("blcf{}", std::process::id() % 100_000);
    let tb = Testbed::build(&TestbedSpec::new(&prefix).backends(2)).unwrap();
    let work = std::env::temp_dir().join(format!("ballast-{prefix}"));
    let scratch = Scratch {
        pin_root: PathBuf::from(format!("/sys/fs/bpf/{prefix}")),
        work: work.clone(),
        interface: tb.director_if().to_string(),
    };
    let _ = std::fs::remove_dir_all(&work);
    let conf = work.join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    tb.attach_test_xdp_pass().unwrap();
    let _servers: Vec<_> = tb.serve(8080).unwrap();
    let log = work.join("agent.log");
    let applied = "configuration applied";
    let web_path = conf.join("web.yaml").display().to_string();
    let aaa_path = conf.join("aaa.yaml").display().to_string();

    // web serves VIP:80 -> b1. Its placement hint is warned about once.
    write_config(
        &conf,
        "web.yaml",
        &virtual_server("web", 1, "  nodeSelector: {zone: a}\n"),
    );
    let mut agent = start_standalone(BIN, &tb, &scratch.pin_root, &conf, &[], &log);
    agent.wait_log_count(applied, 1);
    assert!(answered_by(&tb, 12).iter().all(|b| b == "b1"));

    // aaa (sorts first) claims VIP:80 -> b2: refused, web keeps serving.
    write_config(&conf, "aaa.yaml", &virtual_server("aaa", 2, ""));
    agent.wait_log_count(applied, 2);
    let who = answered_by(&tb, 12);
    assert!(who.iter().all(|b| b == "b1"), "taken over: {who:?}");
    let line = agent.line_with("is held by default/web");
    assert!(
        line.contains(&format!(
            "{aaa_path}#1: default/aaa: spec.addresses[0]: 203.0.113.10:80/TCP is held by \
             default/web; default/aaa is not applied"
        )),
        "{line}"
    );
    assert!(line.contains("ERROR"), "{line}");

    // A second document named web (another file, to b2): an error naming
    // both places; the serving version keeps serving.
    write_config(&conf, "web2.yaml", &virtual_server("web", 2, ""));
    agent.wait_log_count(applied, 3);
    let who = answered_by(&tb, 12);
    assert!(who.iter().all(|b| b == "b1"), "duplicate applied: {who:?}");
    let line = agent.line_with("defined more than once");
    assert!(
        line.contains(&format!(
            "default/web: metadata.name: defined more than once, in {web_path}#1 and \
             {}#1; neither is applied; its last valid version stays",
            conf.join("web2.yaml").display()
        )),
        "{line}"
    );
    assert_eq!(
        agent.log().matches("spec.nodeSelector: ignored").count(),
        1,
        "the warning is logged once across reloads:\n{}",
        agent.log()
    );

    // Restart with no history (the duplicate removed first): name order
    // decides, deterministically, so aaa serves and web is refused.
    std::fs::remove_file(conf.join("web2.yaml")).unwrap();
    agent.wait_log_count(applied, 4);
    assert!(answered_by(&tb, 6).iter().all(|b| b == "b1"));
    stop(&mut agent);
    let mut agent = start_standalone(BIN, &tb, &scratch.pin_root, &conf, &[], &log);
    agent.wait_log_count(applied, 5);
    let who = answered_by(&tb, 12);
    assert!(who.iter().all(|b| b == "b2"), "cold start by name: {who:?}");
    let line = agent.line_with("is held by default/aaa");
    assert!(
        line.contains(&format!(
            "{web_path}#1: default/web: spec.addresses[0]: 203.0.113.10:80/TCP is held by \
             default/aaa; default/web is not applied (nothing held it before, so the \
             first by name gets it)"
        )),
        "{line}"
    );

    // The holder goes: the refused object gets the address on that reload.
    std::fs::remove_file(conf.join("aaa.yaml")).unwrap();
    agent.wait_log_count(applied, 6);
    let who = answered_by(&tb, 12);
    assert!(who.iter().all(|b| b == "b1"), "{who:?}");
    stop(&mut agent);
    drop(scratch);
}

/// A SNAT address that can never be a source stops the agent at start,
/// before it touches the system (so no namespace is needed), with a message
/// naming the flag and the address.
#[test]
fn an_impossible_snat_address_refuses_to_start() {
    let cases = [
        ("unspecified", "0.0.0.0", "the unspecified address"),
        ("broadcast", "255.255.255.255", "the broadcast address"),
        ("multicast", "224.0.0.18", "a multicast address"),
    ];
    for (desc, addr, reason) in cases {
        let out = Command::new(BIN)
            .args([
                "--pin-root",
                "/nonexistent/blcf",
                "standalone",
                "--interface",
                "blcf-none0",
                "--snat-address",
                &format!("198.51.100.3,{addr}"),
                "--config",
                "/nonexistent/blcf.yaml",
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{desc}: {stderr}");
        assert!(
            stderr.contains(&format!("--snat-address {addr}: {reason} cannot be")),
            "{desc}: {stderr}"
        );
    }
}

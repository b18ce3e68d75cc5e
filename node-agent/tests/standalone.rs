//! `ballast-agent standalone` as a user runs it: YAML in a directory, an
//! invalid document beside a valid one, reload on change, `stats`, and a
//! SIGKILL + restart in the middle of a transfer that must complete.
use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use ballast_agent::abi;
use ballast_agent::lifecycle::identity::Interface;
use ballast_testbed::{
    self, Testbed, TestbedSpec, netns,
    servers::{self, BackendServer},
};

const BIN: &str = env!("CARGO_BIN_EXE_ballast-agent");
const T: Duration = Duration::from_secs(5);

const WEB: &str = r#"
apiVersion: ballast.dev/v1alpha1
kind: VirtualServer
metadata: {name: web, namespace: default}
spec:
  addresses: [203.0.113.10]
  ports:
    - {name: http, port: 80, protocol: TCP, targetPort: 8080}
  forwarding: FullNAT
  scheduler: Maglev
  clientAddress: TOA
  persistence: {timeoutSeconds: 0}
  backends:
    static:
      - {address: 198.51.100.11, weight: 1}
      - {address: 198.51.100.12, weight: 1}
"#;

const BAD: &str = r#"
apiVersion: ballast.dev/v1alpha1
kind: VirtualServer
metadata: {name: broken, namespace: default}
spec:
  addresses: [203.0.113.11]
  ports:
    - {name: http, port: 80, protocol: TCP, targetPort: 8080}
  forwarding: DR
  backends:
    static:
      - {address: 198.51.100.11, weight: 1}
"#;

struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    fn start(tb: &Testbed, pin_root: &Path, config: &Path, log: &Path) -> Agent {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let mut cmd = netns::command_in_netns(tb.director_ns(), BIN).unwrap();
        let child = cmd
            .arg("--pin-root")
            .arg(pin_root)
            .args([
                "standalone",
                "--interface",
                tb.director_if(),
                "--snat-address",
                "198.51.100.3",
                "--poll",
                "200ms",
                "--config",
            ])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .unwrap();
        Agent {
            child,
            log: log.to_path_buf(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_log(&self, needle: &str, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.log().matches(needle).count() < count {
            assert!(
                Instant::now() < deadline,
                "agent never logged {needle:?} x{count}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn standalone_serves_yaml_survives_sigkill_and_reloads() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root");
        return;
    }
    let prefix = format!("bsa{}", std::process::id() % 1000);
    let tb = Testbed::build(&TestbedSpec::new(&prefix).backends(2)).unwrap();
    let work = std::env::temp_dir().join(format!("ballast-{prefix}"));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(work.join("conf")).unwrap();
    let object = work.join("ballast.bpf.o");
    std::fs::write(&object, abi::BPF_OBJECT).unwrap();
    tb.attach_xdp_pass(&object, "xdp_pass").unwrap();
    let _servers: Vec<_> = (1..=2)
        .map(|i| {
            BackendServer::start(
                tb.backend_ns(i),
                &format!("b{i}"),
                "0.0.0.0:8080".parse().unwrap(),
            )
            .unwrap()
        })
        .collect();

    let conf = work.join("conf");
    std::fs::write(conf.join("web.yaml"), WEB).unwrap();
    std::fs::write(
        conf.join("broken.yaml"),
        BAD.replace("forwarding: DR", "forwarding: DR\n  clientAddress: TOA"),
    )
    .unwrap();
    let pin_root = PathBuf::from(format!("/sys/fs/bpf/ballast-{prefix}"));
    let log = work.join("agent.log");
    let mut agent = Agent::start(&tb, &pin_root, &conf, &log);
    agent.wait_log("configuration applied", 1);

    // The invalid document is named with its field; the valid one forwards.
    let l = agent.log();
    assert!(
        l.contains("broken.yaml") && l.contains("clientAddress"),
        "error names the document and field:\n{l}"
    );
    let vip = SocketAddrV4::new(testbed::VIP, 80);
    let results = servers::tcp_probes(tb.client_ns(), vip, 20, 4, T).unwrap();
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");

    // SIGKILL the agent mid-transfer and start a new one: the pinned data
    // plane keeps forwarding and the new agent adopts it.
    let ns = tb.client_ns().to_string();
    let transfer = std::thread::spawn(move || {
        servers::tcp_transfer(&ns, vip, 300 * 1024, Duration::from_millis(4))
    });
    std::thread::sleep(Duration::from_millis(400));
    agent.kill9();
    std::thread::sleep(Duration::from_millis(300));
    let agent = Agent::start(&tb, &pin_root, &conf, &log);
    agent.wait_log("configuration applied", 2);
    let report = transfer
        .join()
        .unwrap()
        .expect("transfer survives the agent's SIGKILL and restart");
    assert_eq!(report.bytes_received, 300 * 1024);
    assert!(
        agent.log().contains("adopted pinned XDP link"),
        "{}",
        agent.log()
    );

    // Reload on change: drain backend 1; new connections all go to b2.
    std::fs::write(
        conf.join("web.yaml"),
        WEB.replacen("weight: 1}", "weight: 0}", 1),
    )
    .unwrap();
    agent.wait_log("configuration applied", 3);
    let results = servers::tcp_probes(tb.client_ns(), vip, 20, 4, T).unwrap();
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().map(|l| l.starts_with("b2")).unwrap_or(false)),
        "{results:?}"
    );

    // stats, run in the agent's namespace (pins are keyed by the
    // interface's namespace and ifindex), sees the traffic.
    let out = netns::command_in_netns(tb.director_ns(), BIN)
        .unwrap()
        .arg("--pin-root")
        .arg(&pin_root)
        .args(["stats", "--json", "--interface", tb.director_if()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let snap: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let flows = snap["services"][0]["counters"]["new_flows"]
        .as_u64()
        .unwrap();
    assert!(flows >= 41, "stats counted {flows} flows");
    assert_eq!(snap["services"][0]["name"], "default/web:http");

    drop(agent);
    let pin_dir = testbed::in_netns(tb.director_ns(), || {
        Interface::resolve(testbed::HOST_IF).map(|i| i.key)
    })
    .unwrap()
    .unwrap();
    let pin_dir = ballast_agent::dataplane::pin_dir_for(&pin_root, &pin_dir);
    assert!(pin_dir.exists());
    let out = netns::command_in_netns(tb.director_ns(), BIN)
        .unwrap()
        .arg("--pin-root")
        .arg(&pin_root)
        .args(["cleanup", "--interface", tb.director_if()])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(!pin_dir.exists());
    let _ = std::fs::remove_dir_all(&pin_root);
    let _ = std::fs::remove_dir_all(&work);
}

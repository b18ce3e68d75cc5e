//! The agent process's lifecycle, with real agents in network namespaces:
//! one agent per interface (a second one is refused naming the first's PID,
//! `cleanup` refuses while an agent runs), pins keyed by the interface's
//! identity (two namespaces, one interface name, two data planes), signals
//! handled from the first moment (SIGHUP and SIGTERM during start-up), the
//! private bpffs of `ip netns exec` said loudly, and the veth checksum
//! advice.
//!
//! Every namespace is `bllf<x><pid>-*` and every pin root
//! `/sys/fs/bpf/bllf-<pid>-<x>`; Drop guards remove them, on failure too.
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use ballast_agent::lifecycle::identity::Interface;
use ballast_agent::lifecycle::veth::{self, Advice};
use ballast_testbed::{
    self as testbed, Testbed, TestbedSpec,
    agent::{self, AGENT_START, Agent, Log, Netns, PinRoot, WorkDir, standalone_args, stdout_ok},
    netns, require_root,
    servers::{self, BackendServer},
};

const BIN: &str = env!("CARGO_BIN_EXE_ballast-agent");
const T: Duration = Duration::from_secs(5);
const NEEDS_ROOT: &str = "network namespaces, XDP and bpffs pins";

/// `bllf<tag><pid>`: the namespace prefix of one test (fits testbed names).
fn prefix(tag: char) -> String {
    format!("bllf{tag}{}", std::process::id() % 1000)
}

/// A pin root of this binary, `bllf-<pid>-<tag>`.
fn pin_root(tag: char) -> PinRoot {
    PinRoot::new(&format!("bllf-{}-{tag}", std::process::id()))
}

// ---------------------------------------------------------------- the agent

/// How the agent enters the director's namespace.
#[derive(Clone, Copy)]
enum Entry {
    /// setns(2) only, as `nsenter --net` does: the host's /sys and bpffs.
    Setns,
    /// `ip netns exec`: a private mount namespace with /sys remounted.
    IpNetnsExec,
}

/// Waits until the process runs the agent binary (exec done) and has a
/// handler (or disposition other than the default) for `sig`, read from
/// /proc/<pid>/status. Returns the log at that moment.
fn wait_handler(agent: &mut Agent, sig: libc::c_int) -> String {
    let bit = 1u64 << (sig - 1);
    let deadline = Instant::now() + AGENT_START;
    loop {
        assert!(agent.running(), "agent exited:\n{}", agent.log());
        let exe = std::fs::read_link(format!("/proc/{}/exe", agent.pid())).ok();
        let execd = exe.is_some_and(|e| e == Path::new(BIN));
        if execd {
            let status = std::fs::read_to_string(format!("/proc/{}/status", agent.pid())).unwrap();
            let mask = |field: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(field))
                    .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
                    .unwrap_or(0)
            };
            if (mask("SigCgt:") | mask("SigIgn:")) & bit != 0 {
                return agent.log();
            }
        }
        assert!(
            Instant::now() < deadline,
            "agent never handled signal {sig}:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// `ballast-agent --pin-root R <args>` inside network namespace `ns`.
fn agent_cmd_in(ns: &str, pin_root: &Path, args: &[&str]) -> Output {
    agent::output(BIN, ns, pin_root, args)
}

fn virtual_server(name: &str, vip: Ipv4Addr) -> String {
    format!(
        "apiVersion: ballast.dev/v1alpha1\nkind: VirtualServer\n\
         metadata: {{name: {name}, namespace: default}}\nspec:\n  addresses: [{vip}]\n  \
         ports:\n    - {{name: http, port: 80, protocol: TCP, targetPort: 8080}}\n  \
         forwarding: FullNAT\n  scheduler: Maglev\n  backends:\n    static:\n      \
         - {{address: {}, weight: 1}}\n",
        testbed::backend_addr(1)
    )
}

/// A testbed with one backend answering on 8080 as `<name>`, the director's
/// peer given an XDP program (XDP_TX on veth needs one), and a config.
struct Lab {
    tb: Testbed,
    _server: BackendServer,
    work: WorkDir,
}

impl Lab {
    fn new(tag: char, backend_name: &str, vip: Ipv4Addr) -> Lab {
        let p = prefix(tag);
        let tb = Testbed::build(&TestbedSpec::new(&p).backends(1)).unwrap();
        let work = WorkDir::new(&p);
        tb.attach_test_xdp_pass().unwrap();
        let server = BackendServer::start(
            tb.backend_ns(1),
            backend_name,
            "0.0.0.0:8080".parse().unwrap(),
        )
        .unwrap();
        std::fs::write(
            work.conf().join("web.yaml"),
            virtual_server(&format!("web-{tag}"), vip),
        )
        .unwrap();
        Lab {
            tb,
            _server: server,
            work,
        }
    }

    fn director(&self) -> &str {
        self.tb.director_ns()
    }

    /// The director interface's identity, seen from inside its namespace.
    fn interface(&self) -> Interface {
        testbed::in_netns(self.director(), || Interface::resolve(testbed::HOST_IF))
            .unwrap()
            .unwrap()
    }

    fn start(&self, entry: Entry, pins: &PinRoot, log: &str) -> Agent {
        let mut cmd = match entry {
            Entry::Setns => agent::command(BIN, self.director(), pins.path()),
            Entry::IpNetnsExec => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", self.director(), BIN])
                    .env_remove("RUST_BACKTRACE")
                    .env_remove("RUST_LIB_BACKTRACE")
                    .arg("--pin-root")
                    .arg(pins.path());
                c
            }
        };
        cmd.args(standalone_args(testbed::HOST_IF, &self.work.conf(), &[]));
        Agent::spawn(cmd, &self.work.file(log), Log::Fresh)
    }

    /// Connections to `vip`:80 from the client all answered by `backend`.
    fn assert_serves(&self, vip: Ipv4Addr, backend: &str) {
        let results =
            servers::tcp_probes(self.tb.client_ns(), SocketAddrV4::new(vip, 80), 8, 4, T).unwrap();
        for r in &results {
            let line = r
                .as_ref()
                .unwrap_or_else(|e| panic!("{vip} not served: {e:#}"));
            assert!(line.starts_with(&format!("{backend} ")), "{vip}: {line}");
        }
    }

    /// Whether an XDP program is attached to the director's interface.
    fn xdp_attached(&self) -> bool {
        let out = netns::ip_in(
            self.director(),
            &["-d", "link", "show", "dev", testbed::HOST_IF],
        )
        .unwrap();
        String::from_utf8_lossy(&out.stdout).contains("prog/xdp")
    }
}

const VIP_A: Ipv4Addr = testbed::VIP;
const VIP_B: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 20);

// ---------------------------------------------------------------- tests

/// A second agent on the same interface exits at once, non-zero, naming the
/// interface and the first agent's PID, and the first keeps serving;
/// `cleanup` refuses while the first runs, and once it stopped removes the
/// pins (and an older agent's `<pin root>/<interface>` directory, saying so).
#[test]
fn a_second_agent_on_the_same_interface_is_refused_and_cleanup_waits_for_the_first() {
    require_root(NEEDS_ROOT);
    let lab = Lab::new('s', "a1", VIP_A);
    let pins = pin_root('s');
    let iface = lab.interface();
    let pin_dir = iface.pin_dir(pins.path());

    let mut first = lab.start(Entry::Setns, &pins, "first.log");
    first.wait_log("configuration applied");
    lab.assert_serves(VIP_A, "a1");
    assert!(pin_dir.join("link").exists(), "pins keyed by identity");
    // The interface's name is kept beside the inventory, for humans.
    let name_file = std::fs::read_to_string(iface.run_dir(pins.path()).join("interface")).unwrap();
    assert!(name_file.starts_with("eth0\n"), "{name_file}");
    // The veth advice, once: the peer is in the switch's namespace.
    let log = first.log();
    let advice: Vec<&str> = log.lines().filter(|l| l.contains("is a veth")).collect();
    assert_eq!(advice.len(), 1, "{log}");
    assert!(
        advice[0].contains("WARN") && advice[0].contains("ethtool -K <peer> tx off"),
        "{}",
        advice[0]
    );

    let mut second = lab.start(Entry::Setns, &pins, "second.log");
    // At once: long before a data plane could be opened (seconds).
    let st = second.wait_exit(T);
    let log = second.log();
    assert!(!st.success(), "second agent succeeded:\n{log}");
    assert!(
        log.contains("interface eth0") && log.contains(&format!("PID {}", first.pid())),
        "the refusal names the interface and the holder:\n{log}"
    );
    assert!(
        !log.contains("attached XDP")
            && !log.contains("adopted")
            && !log.contains("opening the data plane"),
        "{log}"
    );
    assert!(first.running(), "first agent died:\n{}", first.log());
    lab.assert_serves(VIP_A, "a1");

    // cleanup refuses while the agent runs, and leaves everything in place.
    let out = agent_cmd_in(
        lab.director(),
        pins.path(),
        &["cleanup", "--interface", "eth0"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "cleanup under a running agent succeeded"
    );
    assert!(
        err.contains("interface eth0") && err.contains(&format!("PID {}", first.pid())),
        "{err}"
    );
    assert!(pin_dir.join("link").exists());
    lab.assert_serves(VIP_A, "a1");

    assert!(first.stop(AGENT_START).success(), "{}", first.log());
    assert!(
        first
            .log()
            .contains("the pinned data plane keeps forwarding"),
        "{}",
        first.log()
    );
    lab.assert_serves(VIP_A, "a1");

    // An older agent's directory (name-keyed) goes too, said so.
    let legacy = pins.path().join("eth0");
    std::fs::create_dir(&legacy).unwrap();
    let out = stdout_ok(&agent_cmd_in(
        lab.director(),
        pins.path(),
        &["cleanup", "--interface", "eth0"],
    ));
    assert!(
        out.contains(&format!("removed {} (program detached)", pin_dir.display())),
        "{out}"
    );
    assert!(out.contains("removed legacy pin directory"), "{out}");
    assert!(!pin_dir.exists() && !legacy.exists());
    assert!(!pins.run_dir().exists(), "/run state left");
    let deadline = Instant::now() + T;
    while lab.xdp_attached() {
        assert!(Instant::now() < deadline, "still attached after cleanup");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An upgrade from the layout keyed by interface name: the next agent moves
/// the pins under the interface's key and adopts the link, so a transfer
/// running through the upgrade completes; a program it did not pin makes it
/// refuse with what to do, not a bare EEXIST.
#[test]
fn an_older_agents_name_keyed_pins_are_adopted_and_a_foreign_program_is_named() {
    require_root(NEEDS_ROOT);
    let lab = Lab::new('u', "u1", VIP_A);
    let pins = pin_root('u');
    let pin_dir = lab.interface().pin_dir(pins.path());

    let mut old = lab.start(Entry::Setns, &pins, "old.log");
    old.wait_log("configuration applied");
    assert!(old.stop(AGENT_START).success(), "{}", old.log());
    // As an agent before the identity key left it.
    let legacy = pins.path().join(testbed::HOST_IF);
    std::fs::rename(&pin_dir, &legacy).unwrap();
    lab.assert_serves(VIP_A, "u1");

    let client = lab.tb.client_ns().to_string();
    let transfer = std::thread::spawn(move || {
        servers::tcp_transfer(
            &client,
            SocketAddrV4::new(VIP_A, 80),
            200 * servers::TRANSFER_CHUNK,
            Duration::from_millis(20),
        )
    });
    std::thread::sleep(Duration::from_millis(500));
    let mut new = lab.start(Entry::Setns, &pins, "new.log");
    new.wait_log("configuration applied");
    let log = new.log();
    assert!(
        log.contains("moved the data plane an older agent pinned"),
        "{log}"
    );
    assert!(log.contains("adopted pinned XDP link"), "{log}");
    assert!(pin_dir.join("link").exists() && !legacy.exists());
    let report = transfer
        .join()
        .unwrap()
        .expect("the transfer survives the upgrade");
    assert_eq!(report.bytes_received, report.bytes_sent);
    lab.assert_serves(VIP_A, "u1");
    assert!(new.stop(AGENT_START).success(), "{}", new.log());

    // Someone else's program on the interface: refused, saying whose it may
    // be and how to remove it.
    stdout_ok(&agent_cmd_in(
        lab.director(),
        pins.path(),
        &["cleanup", "--interface", "eth0"],
    ));
    let object = testbed::objects::write_test_programs(&lab.work.file(""), "other.bpf.o").unwrap();
    netns::ip_in(
        lab.director(),
        &[
            "link",
            "set",
            "dev",
            "eth0",
            "xdpgeneric",
            "obj",
            object.to_str().unwrap(),
            "program",
            "xdp_pass",
        ],
    )
    .unwrap();
    let mut refused = lab.start(Entry::Setns, &pins, "refused.log");
    let st = refused.wait_exit(AGENT_START);
    let log = refused.log();
    assert!(!st.success(), "{log}");
    assert!(
        log.contains("already runs an XDP program this agent did not pin")
            && log.contains("ballast-agent cleanup --interface eth0")
            && log.contains("ip link set dev eth0 xdp off"),
        "{log}"
    );
    netns::ip_in(
        lab.director(),
        &["link", "set", "dev", "eth0", "xdpgeneric", "off"],
    )
    .unwrap();
}

/// Two namespaces, one interface name (eth0, likely the same ifindex), one
/// pin root: each agent gets its own data plane and serves its own VIP; the
/// second never adopts the first's link.
#[test]
fn agents_in_two_namespaces_with_the_same_interface_name_keep_their_own_data_planes() {
    require_root(NEEDS_ROOT);
    let a = Lab::new('a', "a1", VIP_A);
    let b = Lab::new('b', "b1", VIP_B);
    let pins = pin_root('n');
    let (ia, ib) = (a.interface(), b.interface());
    assert_eq!(ia.name, ib.name);
    assert_ne!(ia.pin_dir(pins.path()), ib.pin_dir(pins.path()));

    let mut agent_a = a.start(Entry::Setns, &pins, "agent.log");
    agent_a.wait_log("configuration applied");
    let mut agent_b = b.start(Entry::Setns, &pins, "agent.log");
    agent_b.wait_log("configuration applied");
    assert!(
        !agent_b.log().contains("adopted pinned XDP link"),
        "{}",
        agent_b.log()
    );
    a.assert_serves(VIP_A, "a1");
    b.assert_serves(VIP_B, "b1");
    for (lab, iface) in [(&a, &ia), (&b, &ib)] {
        assert!(iface.pin_dir(pins.path()).join("link").exists());
        assert!(lab.xdp_attached());
    }

    // stats, in each namespace, sees that namespace's service only.
    for (lab, name) in [(&a, "default/web-a:http"), (&b, "default/web-b:http")] {
        let out = stdout_ok(&agent_cmd_in(
            lab.director(),
            pins.path(),
            &["stats", "--json", "--interface", "eth0"],
        ));
        let snap: serde_json::Value = serde_json::from_str(&out).unwrap();
        let services = snap["services"].as_array().unwrap();
        assert_eq!(services.len(), 1, "{snap}");
        assert_eq!(services[0]["name"], name, "{snap}");
        assert!(
            services[0]["counters"]["new_flows"].as_u64().unwrap() >= 8,
            "{snap}"
        );
    }

    assert!(agent_a.stop(AGENT_START).success(), "{}", agent_a.log());
    assert!(agent_b.stop(AGENT_START).success(), "{}", agent_b.log());
    for lab in [&a, &b] {
        stdout_ok(&agent_cmd_in(
            lab.director(),
            pins.path(),
            &["cleanup", "--interface", "eth0"],
        ));
    }
    assert!(!pins.run_dir().exists(), "/run state left");
}

/// SIGHUP from the first moment the agent can take a signal, repeatedly
/// through start-up (clock measurement, verifier): the agent survives,
/// applies its configuration, serves, and stops cleanly on SIGTERM.
#[test]
fn sighup_during_start_up_does_not_kill_the_agent() {
    require_root(NEEDS_ROOT);
    let lab = Lab::new('h', "h1", VIP_A);
    let pins = pin_root('h');
    let mut agent = lab.start(Entry::Setns, &pins, "agent.log");
    let log_at_handler = wait_handler(&mut agent, libc::SIGHUP);
    assert!(
        !log_at_handler.contains("attached XDP")
            && !log_at_handler.contains("configuration applied"),
        "SIGHUP was only handled once the data plane was open:\n{log_at_handler}"
    );
    let mut sent = 0;
    while !agent.log().contains("configuration applied") {
        assert!(
            agent.running(),
            "killed by SIGHUP #{sent}:\n{}",
            agent.log()
        );
        agent.signal(libc::SIGHUP);
        sent += 1;
        assert!(sent < 3000, "never applied:\n{}", agent.log());
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(sent >= 5, "only {sent} SIGHUPs before start-up ended");
    assert!(agent.running(), "{}", agent.log());
    lab.assert_serves(VIP_A, "h1");
    // The SIGHUPs are handled as reloads.
    agent.wait_log("SIGHUP: reloading");
    let st = agent.stop(AGENT_START);
    let log = agent.log();
    assert!(st.success(), "{st}:\n{log}");
    assert!(
        log.contains("stopping; the pinned data plane keeps forwarding"),
        "{log}"
    );
    stdout_ok(&agent_cmd_in(
        lab.director(),
        pins.path(),
        &["cleanup", "--interface", "eth0"],
    ));
}

/// SIGTERM during start-up stops the agent cleanly (exit 0, said so) once
/// the data plane is open, without applying a configuration.
#[test]
fn sigterm_during_start_up_stops_cleanly() {
    require_root(NEEDS_ROOT);
    let lab = Lab::new('t', "t1", VIP_A);
    let pins = pin_root('t');
    let mut agent = lab.start(Entry::Setns, &pins, "agent.log");
    let log_at_handler = wait_handler(&mut agent, libc::SIGTERM);
    assert!(!log_at_handler.contains("attached XDP"), "{log_at_handler}");
    agent.signal(libc::SIGTERM);
    let st = agent.wait_exit(AGENT_START);
    let log = agent.log();
    assert!(st.success(), "{st}:\n{log}");
    assert!(log.contains("SIGTERM during start-up"), "{log}");
    assert!(log.contains("stopping;"), "{log}");
    assert!(!log.contains("configuration applied"), "{log}");
    // The lock went with it: a new agent starts.
    let mut again = lab.start(Entry::Setns, &pins, "again.log");
    again.wait_log("configuration applied");
    assert!(again.stop(AGENT_START).success(), "{}", again.log());
    stdout_ok(&agent_cmd_in(
        lab.director(),
        pins.path(),
        &["cleanup", "--interface", "eth0"],
    ));
}

/// Under `ip netns exec` the agent mounts a bpffs only it sees: it says so
/// loudly at start, serves, and at SIGTERM does not claim that forwarding
/// continues, which indeed stops (the XDP program goes with the pins).
#[test]
fn under_ip_netns_exec_the_agent_warns_that_forwarding_dies_with_it() {
    require_root(NEEDS_ROOT);
    let lab = Lab::new('x', "x1", VIP_A);
    let pins = pin_root('x');
    let mut agent = lab.start(Entry::IpNetnsExec, &pins, "agent.log");
    agent.wait_log("configuration applied");
    let log = agent.log();
    let warning = log
        .lines()
        .find(|l| l.contains("STOPS when this agent exits"))
        .unwrap_or_else(|| panic!("no private-bpffs warning:\n{log}"));
    assert!(
        warning.contains("WARN")
            && warning.contains("nsenter --net=")
            && warning.contains("ip netns exec"),
        "{warning}"
    );
    lab.assert_serves(VIP_A, "x1");

    let st = agent.stop(AGENT_START);
    let log = agent.log();
    assert!(st.success(), "{st}:\n{log}");
    assert!(!log.contains("keeps forwarding"), "{log}");
    assert!(log.contains("forwarding stops with this process"), "{log}");
    // ...as it does: the program leaves the interface with the private pins.
    let deadline = Instant::now() + T;
    while lab.xdp_attached() {
        assert!(
            Instant::now() < deadline,
            "XDP still attached after the agent's exit"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Nothing was pinned on the host's bpffs.
    assert!(!lab.interface().pin_dir(pins.path()).exists());
}

/// The veth advice names a peer in the same namespace and stays a warning
/// until the peer's TX checksum offload is off.
#[test]
fn veth_advice_names_a_peer_here_and_sees_its_offload() {
    require_root(NEEDS_ROOT);
    let ns = Netns::new(format!("{}-v", prefix('v')));
    netns::ip_in(
        &ns.0,
        &[
            "link", "add", "bllfv0", "type", "veth", "peer", "name", "bllfv1",
        ],
    )
    .unwrap();
    let ethtool = |args: &[&str]| {
        let mut c = netns::command_in_netns(&ns.0, "ethtool").unwrap();
        let out = c.args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ethtool(&["-K", "bllfv1", "tx", "on"]);
    let check = |dev: &'static str| testbed::in_netns(&ns.0, move || veth::check(dev)).unwrap();
    match check("bllfv0") {
        Some(Advice::Warn(m)) => assert!(m.contains("ethtool -K bllfv1 tx off"), "{m}"),
        other => panic!("{other:?}"),
    }
    ethtool(&["-K", "bllfv1", "tx", "off"]);
    match check("bllfv0") {
        Some(Advice::Info(m)) => assert!(m.contains("bllfv1"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(check("lo"), None);
    let driver = testbed::in_netns(&ns.0, || veth::driver("bllfv0"))
        .unwrap()
        .unwrap();
    assert_eq!(driver, "veth");
}

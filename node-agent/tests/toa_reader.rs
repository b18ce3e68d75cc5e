//! End to end, as root: the TOA reader (`ballast-agent realserver --toa`) on
//! a FullNAT backend. A plain Python server (`socket.accept()`, then
//! `getpeername()`) in the backend namespace reports the peer it was given:
//! the director's SNAT address without the reader, the client's address and
//! port with it; a client sending option 254 itself straight to the backend
//! is not believed; removing the reader restores the SNAT address.
//!
//! cgroup hooks are per cgroup, not per network namespace: the reader is
//! attached to a cgroup of this test's own (the server runs in it), never to
//! the root, so parallel tests and the host are untouched. Pins go under a
//! pin root of this test's own.
use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use aya::programs::{CgroupAttachMode, SockOps};
use ballast_agent::abi;
use ballast_agent::toa_reader::{self, cgroup::cgroup2_root};
use ballast_testbed::lab::{self, Lab};
use ballast_testbed::netns::command_in_netns;
use ballast_testbed::{self as testbed, in_netns, objects, require_root};

const BIN: &str = env!("CARGO_BIN_EXE_ballast-agent");
const NEEDS_ROOT: &str = "network namespaces, XDP and cgroup BPF hooks";
const T: Duration = Duration::from_secs(5);
const PORT: u16 = 8080;
/// What dataplane-ebpf/test/toa_writer.c claims in its option.
const SPOOF: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 66, 66, 66), 6666);

/// Accepts, then answers `accept=<addr> getpeername=<addr>` and closes.
const SERVER: &str = r#"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080))
s.listen(64)
print("listening", flush=True)
while True:
    c, a = s.accept()
    p = c.getpeername()
    c.sendall(f"accept={a[0]}:{a[1]} getpeername={p[0]}:{p[1]}\n".encode())
    c.close()
"#;

/// Connects to argv[1]:argv[2]; prints its own address and the server's line.
const CLIENT: &str = r#"
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
l = c.getsockname()
print(f"{l[0]}:{l[1]}", c.makefile().readline().strip(), flush=True)
"#;

/// A cgroup (v2) of this test's own, removed on drop (after its processes).
struct Cgroup(PathBuf);

impl Cgroup {
    fn create(tag: &str) -> Cgroup {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let root = cgroup2_root(&info).expect("a cgroup2 mount for the reader's hooks");
        let path = root.join(format!("ballast-test-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir(&path);
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        Cgroup(path)
    }

    /// `sh -c` that moves itself into this cgroup, then execs `python3 -c
    /// script args...` in network namespace `ns`: sockets are created in
    /// the cgroup from the start.
    fn python(&self, ns: &str, script: &str, args: &[&str]) -> Command {
        let mut cmd = command_in_netns(ns, "sh").unwrap();
        cmd.arg("-c")
            .arg(format!(
                "echo $$ > {}/cgroup.procs && exec python3 -c \"$0\" \"$@\"",
                self.0.display()
            ))
            .arg(script)
            .args(args)
            .stdout(Stdio::piped());
        cmd
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // Processes killed just before may take a moment to leave it.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.0).is_ok() || !self.0.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The Python server, in `cgroup`, in the backend's namespace.
struct PyServer {
    child: Child,
    _out: BufReader<ChildStdout>,
}

impl PyServer {
    fn start(ns: &str, cgroup: &Cgroup) -> PyServer {
        let mut child = cgroup.python(ns, SERVER, &[]).spawn().expect("python3");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "listening", "the Python server started");
        PyServer { child, _out: out }
    }
}

impl Drop for PyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the server reported: (accept(), getpeername()).
fn parse_seen(line: &str) -> (SocketAddrV4, SocketAddrV4) {
    let field = |name: &str| -> SocketAddrV4 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {line:?}"))
            .parse()
            .unwrap()
    };
    (field("accept="), field("getpeername="))
}

/// One connection from the client namespace to the VIP: (the client's own
/// address, what the server saw).
fn through_director(lab: &Lab) -> (SocketAddrV4, (SocketAddrV4, SocketAddrV4)) {
    let (local, line) = in_netns(lab.tb.client_ns(), || {
        let vip = SocketAddrV4::new(testbed::VIP, 80);
        let mut s = TcpStream::connect_timeout(&vip.into(), T).expect("connect to the VIP");
        s.set_read_timeout(Some(T)).unwrap();
        let mut line = String::new();
        s.read_to_string(&mut line).unwrap();
        let std::net::SocketAddr::V4(local) = s.local_addr().unwrap() else {
            unreachable!("IPv4")
        };
        (local, line)
    })
    .unwrap();
    (local, parse_seen(&line))
}

/// One connection from `cgroup` in the backend's namespace straight to the
/// backend's address: (own address, what the server saw).
fn straight_to_backend(lab: &Lab, cgroup: &Cgroup) -> (SocketAddrV4, (SocketAddrV4, SocketAddrV4)) {
    let backend = testbed::backend_addr(1).to_string();
    let out = cgroup
        .python(lab.tb.backend_ns(1), CLIENT, &[&backend, &PORT.to_string()])
        .output()
        .expect("python3 client");
    assert!(out.status.success(), "client: {out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let (own, seen) = text.trim().split_once(' ').unwrap();
    (own.parse().unwrap(), parse_seen(seen))
}

fn agent(pin_root: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN)
        .arg("--pin-root")
        .arg(pin_root)
        .arg("realserver")
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The pin root, removed on drop (unpinning detaches the reader).
struct PinRoot(PathBuf);
impl Drop for PinRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn fullnat_backend_sees_the_client_through_the_toa_reader() {
    require_root(NEEDS_ROOT);
    let mut lab = Lab::start(&format!("toa{}", std::process::id() % 1000), 1).unwrap();
    let mut svc = lab::service("toa/web:http", abi::MODE_FULLNAT, 6, 80, PORT, &[(1, 1)]);
    svc.flags = abi::SVC_TOA;
    svc.mss_max = 1452;
    lab.apply(vec![svc]).unwrap();
    let pins = PinRoot(PathBuf::from(format!(
        "/sys/fs/bpf/ballast-test-toa-{}",
        std::process::id()
    )));
    let server_cg = Cgroup::create("srv");
    let client_cg = Cgroup::create("cli");
    let cg = server_cg.0.to_str().unwrap();
    let snat = testbed::SNAT_ADDR.to_string();

    // Nothing trusted until named: refused, nothing pinned.
    let (ok, text) = agent(&pins.0, &["--toa", "--cgroup", cg]);
    assert!(!ok && text.contains("no director is trusted yet"), "{text}");
    let (ok, text) = agent(&pins.0, &["--status"]);
    assert!(ok && text.contains("not installed"), "{text}");

    // Without the reader: the SNAT address.
    {
        let _server = PyServer::start(lab.tb.backend_ns(1), &server_cg);
        let (client, (accepted, peer)) = through_director(&lab);
        assert_eq!(*accepted.ip(), testbed::SNAT_ADDR, "client {client}");
        assert_eq!(accepted, peer);
    }

    // With the reader trusting the director: the client, port included,
    // from accept() and getpeername() alike.
    let (ok, text) = agent(&pins.0, &["--toa", "--toa-from", &snat, "--cgroup", cg]);
    assert!(ok && text.contains("TOA reader installed"), "{text}");
    let server = PyServer::start(lab.tb.backend_ns(1), &server_cg);
    let (client, (accepted, peer)) = through_director(&lab);
    assert_eq!(*client.ip(), testbed::CLIENT_ADDR);
    assert_eq!(accepted, client, "accept() returns the client");
    assert_eq!(peer, client, "getpeername() returns the client");

    // A client that sends option 254 itself, straight to the backend, is
    // not believed: the server sees where the connection came from.
    let mut writer = aya::Ebpf::load(objects::TOA_WRITER).unwrap();
    let prog: &mut SockOps = writer
        .program_mut("toa_writer")
        .unwrap()
        .try_into()
        .unwrap();
    prog.load().unwrap();
    prog.attach(
        std::fs::File::open(&client_cg.0).unwrap(),
        CgroupAttachMode::Single,
    )
    .unwrap();
    let (own, (accepted, peer)) = straight_to_backend(&lab, &client_cg);
    assert_eq!(*own.ip(), testbed::backend_addr(1));
    assert_eq!(
        (accepted, peer),
        (own, own),
        "the spoofed option is ignored"
    );

    // Control: trusting that sender too (an update of the installed
    // reader) makes the same option believed, so the option did arrive.
    let also = format!("{snat},{}", testbed::backend_addr(1));
    let (ok, text) = agent(&pins.0, &["--toa", "--toa-from", &also, "--cgroup", cg]);
    assert!(ok && text.contains("already installed"), "{text}");
    let (_, (accepted, peer)) = straight_to_backend(&lab, &client_cg);
    assert_eq!((accepted, peer), (SPOOF, SPOOF), "believed once trusted");
    drop(writer);

    let dir = toa_reader::pin_dir(&pins.0);
    let status = toa_reader::read_status(&dir).unwrap().expect("installed");
    assert_eq!(status.cgroup, cg);
    assert_eq!(
        (status.translated, status.untrusted, status.no_saved_syn),
        (2, 1, 0),
        "{status:?}"
    );
    let (ok, text) = agent(&pins.0, &["--status"]);
    assert!(ok && text.contains("translated:           2"), "{text}");

    // Removed: the SNAT address again, for the same running server.
    let (ok, text) = agent(&pins.0, &["--toa", "--remove"]);
    assert!(ok && text.contains("TOA reader removed"), "{text}");
    let (_, (accepted, peer)) = through_director(&lab);
    assert_eq!(*accepted.ip(), testbed::SNAT_ADDR);
    assert_eq!(accepted, peer);
    drop(server);
    let (ok, text) = agent(&pins.0, &["--status"]);
    assert!(ok && text.contains("not installed"), "{text}");
}

//! What the TOA reader's end-to-end tests share: a director lab with a
//! FullNAT+TOA service, a Python server that reports the peer it was
//! given, clients through the director or straight to the backend, the
//! agent command, the spoofing client's option writer.
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use aya::programs::{CgroupAttachMode, SockOps};
use ballast_agent::abi;
use ballast_testbed::cgroup::{ATTACH_GETPEERNAME4, ATTACH_GETPEERNAME6, ATTACH_SOCK_OPS};
use ballast_testbed::lab::{self, Lab};
use ballast_testbed::{self as testbed, TestCgroup, in_netns, objects};

pub const BIN: &str = env!("CARGO_BIN_EXE_ballast-agent");
pub const NEEDS_ROOT: &str = "network namespaces, XDP and cgroup BPF hooks";
pub const T: Duration = Duration::from_secs(5);
/// The backends' port; the VIP's is 80.
pub const PORT: u16 = 8080;

/// Python: formats a socket address as Rust parses it ([v6]:port).
const FMT: &str = r#"
def fmt(a):
    return f"[{a[0]}]:{a[1]}" if ":" in a[0] else f"{a[0]}:{a[1]}"
"#;

/// Accepts, then answers `accept=<addr> getpeername=<addr>` and closes.
/// argv[1]: `v4` (AF_INET) or `dual` (AF_INET6, IPV6_V6ONLY off: v4
/// clients arrive as ::ffff:a.b.c.d).
const SERVER: &str = r#"
import socket, sys
if sys.argv[1] == "dual":
    s = socket.create_server(("::", 8080), family=socket.AF_INET6, dualstack_ipv6=True, backlog=64)
else:
    s = socket.create_server(("0.0.0.0", 8080), backlog=64)
print("listening", flush=True)
while True:
    c, a = s.accept()
    p = c.getpeername()
    c.sendall(f"accept={fmt(a)} getpeername={fmt(p)}\n".encode())
    c.close()
"#;

/// Connects to argv[1]:argv[2]; prints its own address and the server's line.
const CLIENT: &str = r#"
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
print(fmt(c.getsockname()), c.makefile().readline().strip(), flush=True)
"#;

fn python(cg: &TestCgroup, ns: &str, script: &str, args: &[&str]) -> Command {
    let mut cmd = cg.command_in_netns(ns, "python3").unwrap();
    cmd.arg("-c")
        .arg(format!("{FMT}{script}"))
        .args(args)
        .stdout(Stdio::piped());
    cmd
}

/// A lab (one backend) whose VIP:80 is FullNAT with TOA to backend:8080.
pub fn toa_lab(prefix: &str) -> Lab {
    toa_lab_ports(prefix, &[(80, PORT)])
}

/// A lab (one backend) with a FullNAT+TOA service per (VIP port, backend
/// port).
pub fn toa_lab_ports(prefix: &str, ports: &[(u16, u16)]) -> Lab {
    let mut lab = Lab::start(&format!("{prefix}{}", std::process::id() % 1000), 1).unwrap();
    let services = ports
        .iter()
        .map(|&(vip_port, port)| {
            let name = format!("toa/web:{vip_port}");
            let mut svc = lab::service(&name, abi::MODE_FULLNAT, 6, vip_port, port, &[(1, 1)]);
            svc.flags = abi::SVC_TOA;
            svc.mss_max = 1452;
            svc
        })
        .collect();
    lab.apply(services).unwrap();
    lab
}

#[derive(Clone, Copy)]
pub enum Family {
    V4,
    DualStack,
}

/// The Python server, in `cgroup`, in the backend's namespace.
pub struct PyServer {
    child: Child,
    _out: BufReader<ChildStdout>,
}

impl PyServer {
    pub fn start(ns: &str, cgroup: &TestCgroup, family: Family) -> PyServer {
        let arg = match family {
            Family::V4 => "v4",
            Family::DualStack => "dual",
        };
        let mut child = python(cgroup, ns, SERVER, &[arg]).spawn().expect("python3");
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
pub fn parse_seen(line: &str) -> (SocketAddr, SocketAddr) {
    let field = |name: &str| -> SocketAddr {
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
pub fn through_director(lab: &Lab) -> (SocketAddrV4, (SocketAddr, SocketAddr)) {
    let (local, line) = in_netns(lab.tb.client_ns(), || {
        let vip = SocketAddrV4::new(testbed::VIP, 80);
        let mut s = TcpStream::connect_timeout(&vip.into(), T).expect("connect to the VIP");
        s.set_read_timeout(Some(T)).unwrap();
        let mut line = String::new();
        s.read_to_string(&mut line).unwrap();
        let SocketAddr::V4(local) = s.local_addr().unwrap() else {
            unreachable!("IPv4")
        };
        (local, line)
    })
    .unwrap();
    (local, parse_seen(&line))
}

/// One connection from `cgroup` in the backend's namespace straight to
/// `host`:PORT there: (own address, what the server saw).
pub fn straight_to_backend(
    lab: &Lab,
    cgroup: &TestCgroup,
    host: &str,
) -> (SocketAddr, (SocketAddr, SocketAddr)) {
    let out = python(
        cgroup,
        lab.tb.backend_ns(1),
        CLIENT,
        &[host, &PORT.to_string()],
    )
    .output()
    .expect("python3 client");
    assert!(out.status.success(), "client: {out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let (own, seen) = text.trim().split_once(' ').unwrap();
    (own.parse().unwrap(), parse_seen(seen))
}

/// `ballast-agent --pin-root <pin_root> realserver <args>`: (success,
/// stdout and stderr).
pub fn agent(pin_root: &Path, args: &[&str]) -> (bool, String) {
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

/// A pin root of the test's own, removed on drop (unpinning detaches the
/// reader).
pub struct PinRoot(pub PathBuf);

impl PinRoot {
    pub fn new(tag: &str) -> PinRoot {
        PinRoot(PathBuf::from(format!(
            "/sys/fs/bpf/ballast-test-{tag}-{}",
            std::process::id()
        )))
    }
}

impl Drop for PinRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A client that sends option 254 itself: dataplane-ebpf/test/toa_writer.c
/// on `cgroup`, claiming [`SPOOF`] in every SYN; detached on drop.
pub fn spoofing_writer(cgroup: &TestCgroup) -> aya::Ebpf {
    let mut writer = aya::Ebpf::load(objects::TOA_WRITER).unwrap();
    let prog: &mut SockOps = writer
        .program_mut("toa_writer")
        .unwrap()
        .try_into()
        .unwrap();
    prog.load().unwrap();
    prog.attach(cgroup.open().unwrap(), CgroupAttachMode::Single)
        .unwrap();
    writer
}

/// What toa_writer.c claims in its option.
pub const SPOOF: SocketAddrV4 = SocketAddrV4::new(std::net::Ipv4Addr::new(10, 66, 66, 66), 6666);

/// Programs attached to `cgroup`: (sockops, getpeername4, getpeername6).
pub fn hooks_on(cgroup: &TestCgroup) -> (u32, u32, u32) {
    let n = |t| cgroup.attached(t).unwrap();
    (
        n(ATTACH_SOCK_OPS),
        n(ATTACH_GETPEERNAME4),
        n(ATTACH_GETPEERNAME6),
    )
}

/// `addr` as a dual-stack server sees it: ::ffff:a.b.c.d.
pub fn mapped(addr: SocketAddrV4) -> SocketAddr {
    SocketAddr::new(addr.ip().to_ipv6_mapped().into(), addr.port())
}

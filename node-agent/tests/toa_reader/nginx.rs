//! The TOA reader under nginx from Debian (scripts/setup.sh installs it):
//! its access log's `$remote_addr $remote_port` is the director's SNAT
//! address without the reader and the client with it, on an IPv4 listener
//! (`listen 8080`) and a dual-stack one (`listen [::]:8081 ipv6only=off`).
//! nginx runs with a configuration of the test's own in a temporary
//! directory, master and worker in the test's cgroup.
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use ballast_testbed::lab::Lab;
use ballast_testbed::{self as testbed, TestCgroup, in_netns, require_root};

use crate::support::*;

const V4_PORT: u16 = 8080;
const DUAL_PORT: u16 = 8081;

fn config(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 64; }}
http {{
    log_format peer '$remote_addr $remote_port';
    access_log {d}/access.log peer;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen {V4_PORT};
        listen [::]:{DUAL_PORT} ipv6only=off;
        location / {{ return 200 \"ok\\n\"; }}
    }}
}}
"
    )
}

/// nginx in the foreground, in `cgroup` and the backend's namespace;
/// stopped on drop.
struct Nginx {
    child: Child,
    dir: PathBuf,
}

impl Nginx {
    fn start(ns: &str, cgroup: &TestCgroup, dir: &Path) -> Nginx {
        let _ = std::fs::remove_file(dir.join("nginx.pid"));
        std::fs::write(dir.join("nginx.conf"), config(dir)).unwrap();
        let child = cgroup
            .command_in_netns(ns, "nginx")
            .unwrap()
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdout(Stdio::null())
            .spawn()
            .expect("nginx");
        let nginx = Nginx {
            child,
            dir: dir.to_path_buf(),
        };
        // The pid file is written once the listening sockets are open.
        let deadline = Instant::now() + T;
        while !dir.join("nginx.pid").exists() {
            assert!(
                Instant::now() < deadline,
                "nginx did not start: {}",
                std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        nginx
    }

    /// Waits for the access log's line `n` (1-based): (address, port).
    fn logged(&self, n: usize) -> (IpAddr, u16) {
        let deadline = Instant::now() + T;
        loop {
            let log = std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default();
            if let Some(line) = log.lines().nth(n - 1) {
                let (a, p) = line.split_once(' ').expect("`addr port`");
                return (a.parse().unwrap(), p.parse().unwrap());
            }
            assert!(Instant::now() < deadline, "no line {n} in {log:?}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its worker, then exits (SIGKILL would
        // leave the worker behind, holding the port and the cgroup).
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// One GET from the client namespace to the VIP's `port`: the client's
/// own address.
fn get(lab: &Lab, port: u16) -> SocketAddrV4 {
    in_netns(lab.tb.client_ns(), || {
        let vip = SocketAddrV4::new(testbed::VIP, port);
        let mut s = TcpStream::connect_timeout(&vip.into(), T).expect("connect to the VIP");
        s.set_read_timeout(Some(T)).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: vip\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let SocketAddr::V4(local) = s.local_addr().unwrap() else {
            unreachable!("IPv4")
        };
        local
    })
    .unwrap()
}

fn require_nginx() {
    let found = Command::new("nginx").arg("-v").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "nginx is not installed: scripts/setup.sh installs it (apt-get install nginx)"
    );
}

#[test]
fn nginx_logs_the_client_through_the_toa_reader() {
    require_root(NEEDS_ROOT);
    require_nginx();
    let lab = toa_lab_ports("tng", &[(80, V4_PORT), (81, DUAL_PORT)]);
    let pins = PinRoot::new("tng");
    let cg = TestCgroup::create("ng-srv").unwrap();
    let dir = std::env::temp_dir().join(format!("ballast-test-nginx-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ns = lab.tb.backend_ns(1);
    let snat = IpAddr::V4(testbed::SNAT_ADDR);
    let snat_mapped = IpAddr::V6(testbed::SNAT_ADDR.to_ipv6_mapped());

    // Without the reader: the SNAT address, on both listeners.
    let nginx = Nginx::start(ns, &cg, &dir);
    get(&lab, 80);
    assert_eq!(nginx.logged(1).0, snat);
    get(&lab, 81);
    assert_eq!(nginx.logged(2).0, snat_mapped);
    drop(nginx);

    // With it (nginx restarted: listeners opened before the install keep
    // no SYN): the client's address and port.
    let cg_path = cg.path().to_str().unwrap();
    let trust = testbed::SNAT_ADDR.to_string();
    let (ok, text) = agent(
        &pins.0,
        &["--toa", "--toa-from", &trust, "--cgroup", cg_path],
    );
    assert!(ok && text.contains("TOA reader installed"), "{text}");
    let nginx = Nginx::start(ns, &cg, &dir);
    let client = get(&lab, 80);
    assert_eq!(nginx.logged(3), ((*client.ip()).into(), client.port()));
    let client = get(&lab, 81);
    let mapped = IpAddr::V6(client.ip().to_ipv6_mapped());
    assert_eq!(nginx.logged(4), (mapped, client.port()));
    drop(nginx);
    let _ = std::fs::remove_dir_all(&dir);
}

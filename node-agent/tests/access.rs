//! Who gets in, and what a client hears when nobody can serve it, with real
//! traffic through the director attached in native XDP (as root): source
//! ranges admit and deny real clients (and leave an excluded client's open
//! connection alone), a service without usable backends refuses TCP with a
//! RST and UDP with ICMP port unreachable at once, and the VIP answers ping.
use std::io::{ErrorKind, Read, Write};
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use ballast_agent::abi;
use ballast_testbed::frames::ones_complement_sum;
use ballast_testbed::lab::{self, Lab};
use ballast_testbed::{self as testbed, HOST_IF, require_root};
use socket2::{Domain, Protocol, Socket, Type};

const T: Duration = Duration::from_secs(5);
/// What a denied client waits before the test calls its SYN unanswered.
const DENIED_WAIT: Duration = Duration::from_millis(1500);
/// A second client address, inside the ranges the tests admit.
const ADMITTED: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 200);

fn prefix(tag: &str) -> String {
    format!("bhd{tag}{}", std::process::id() % 1000)
}

fn vip(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(testbed::VIP, port)
}

/// A TCP connection from `src` in the client namespace.
fn connect_from(
    lab: &Lab,
    src: Ipv4Addr,
    to: SocketAddrV4,
    timeout: Duration,
) -> std::io::Result<TcpStream> {
    let sock = testbed::in_netns(lab.tb.client_ns(), || {
        Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))
    })
    .expect("entering the client namespace")?;
    sock.bind(&SocketAddrV4::new(src, 0).into())?;
    sock.connect_timeout(&to.into(), timeout)?;
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(T))?;
    Ok(s)
}

/// The backend's greeting line ("b<i> <peer>").
fn greeting(s: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while s.read(&mut b).expect("greeting") == 1 && b[0] != b'\n' {
        line.push(b[0]);
    }
    String::from_utf8(line).unwrap()
}

fn reason(lab: &Lab, idx: u32) -> u64 {
    lab.director.maps().reason_counters().expect("reasons")[idx as usize]
}

#[test]
fn source_ranges_admit_and_deny_real_clients() {
    require_root("XDP, network namespaces");
    let mut lab = Lab::start(&prefix("s"), 2).unwrap();
    lab.serve(8080).unwrap();
    lab.tb
        .ip(
            lab.tb.client_ns(),
            &["addr", "add", "192.0.2.200/24", "dev", HOST_IF],
        )
        .unwrap();
    let mut web = lab::service(
        "t/web:80",
        abi::MODE_FULLNAT,
        6,
        80,
        8080,
        &[(1, 1), (2, 1)],
    );
    web.source_ranges = vec!["192.0.2.128/25".parse().unwrap()];
    lab.apply(vec![web.clone()]).unwrap();

    // Inside the range: served.
    let mut admitted =
        connect_from(&lab, ADMITTED, vip(80), T).expect("an admitted client connects");
    let line = greeting(&mut admitted);
    assert!(line.starts_with('b'), "{line}");

    // 192.0.2.1 is outside: its SYN is dropped, the connect times out.
    let denied_before = reason(&lab, abi::REASON_SOURCE_DENIED);
    let err = connect_from(&lab, testbed::CLIENT_ADDR, vip(80), DENIED_WAIT)
        .expect_err("a client outside the ranges is not served");
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    assert!(reason(&lab, abi::REASON_SOURCE_DENIED) > denied_before);
    let served: u64 = lab.servers.iter().map(|s| s.connections()).sum();
    assert_eq!(served, 1, "no backend saw the denied client");

    // The edit excludes 192.0.2.200 too: its open connection goes on (as
    // LVS and Cilium do), a new one is denied.
    web.source_ranges = vec!["192.0.2.0/30".parse().unwrap()];
    lab.apply(vec![web]).unwrap();
    admitted.write_all(b"still here\n").unwrap();
    let mut echo = [0u8; 11];
    admitted
        .read_exact(&mut echo)
        .expect("the established connection still carries data");
    assert_eq!(&echo, b"still here\n");
    let err =
        connect_from(&lab, ADMITTED, vip(80), DENIED_WAIT).expect_err("denied after the edit");
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
}

#[test]
fn no_usable_backend_refuses_at_once_and_the_vip_answers_ping() {
    require_root("XDP, network namespaces");
    let mut lab = Lab::start(&prefix("r"), 1).unwrap();
    lab.serve(8080).unwrap();
    let drained = lab::service("t/web:80", abi::MODE_FULLNAT, 6, 80, 8080, &[(1, 0)]);
    let empty = lab::service("t/dns:53", abi::MODE_FULLNAT, 17, 53, 5353, &[]);
    lab.apply(vec![drained, empty]).unwrap();

    // TCP: the RST makes connect fail with ECONNREFUSED, not a timeout.
    let start = Instant::now();
    let err = connect_from(&lab, testbed::CLIENT_ADDR, vip(80), T).expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "refused in {:?}, not after SYN retries",
        start.elapsed()
    );

    // UDP: the port unreachable reaches the connected socket as ECONNREFUSED.
    let udp = testbed::in_netns(lab.tb.client_ns(), || UdpSocket::bind("0.0.0.0:0"))
        .unwrap()
        .unwrap();
    udp.connect(vip(53)).unwrap();
    udp.set_read_timeout(Some(T)).unwrap();
    udp.send(b"query").unwrap();
    let mut buf = [0u8; 64];
    let err = udp.recv(&mut buf).expect_err("no answer but an ICMP error");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    assert_eq!(reason(&lab, abi::REASON_REJECTED), 2);

    // Ping: an echo reply from the VIP.
    let raw = testbed::in_netns(lab.tb.client_ns(), || {
        Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))
    })
    .unwrap()
    .unwrap();
    raw.set_read_timeout(Some(T)).unwrap();
    let id = (std::process::id() & 0xffff) as u16;
    let mut echo = vec![8, 0, 0, 0, (id >> 8) as u8, id as u8, 0, 1];
    echo.extend_from_slice(b"ballast ping");
    let sum = ones_complement_sum(&echo);
    echo[2..4].copy_from_slice(&(!sum).to_be_bytes());
    raw.send_to(&echo, &SocketAddrV4::new(testbed::VIP, 0).into())
        .unwrap();
    let deadline = Instant::now() + T;
    loop {
        assert!(Instant::now() < deadline, "no echo reply from the VIP");
        let mut buf = [MaybeUninit::<u8>::uninit(); 256];
        let (n, _) = raw.recv_from(&mut buf).expect("an ICMP packet");
        // SAFETY: recv_from initialised the first n bytes.
        let pkt: Vec<u8> = buf[..n]
            .iter()
            .map(|b| unsafe { b.assume_init() })
            .collect();
        let icmp = &pkt[(pkt[0] & 0x0f) as usize * 4..];
        let from = Ipv4Addr::new(pkt[12], pkt[13], pkt[14], pkt[15]);
        if icmp[0] == 0 && icmp[4..6] == id.to_be_bytes() {
            assert_eq!(from, testbed::VIP);
            assert_eq!(&icmp[8..], b"ballast ping");
            break;
        }
    }
    assert_eq!(reason(&lab, abi::REASON_ECHO_REPLIED), 1);
}

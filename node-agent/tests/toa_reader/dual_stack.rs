//! The TOA reader on a dual-stack server: an AF_INET6 listener with
//! IPV6_V6ONLY off (Python's `create_server(..., dualstack_ipv6=True)`,
//! nginx's `listen [::]:80 ipv6only=off`) sees an IPv4 client as
//! ::ffff:a.b.c.d through getpeername6, which the IPv4 hook never sees.
//! With the reader, accept() and getpeername() return ::ffff:<client>;
//! a real IPv6 connection is never translated, option or not (the director
//! writes IPv4 TOA only).
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV4};

use ballast_agent::toa_reader;
use ballast_testbed::{self as testbed, TestCgroup, require_root};

use crate::support::*;

#[test]
fn dual_stack_backend_sees_the_v4_mapped_client() {
    require_root(NEEDS_ROOT);
    let lab = toa_lab("tds");
    let pins = PinRoot::new("tds");
    let server_cg = TestCgroup::create("ds-srv").unwrap();
    let client_cg = TestCgroup::create("ds-cli").unwrap();
    let cg = server_cg.path().to_str().unwrap();
    let snat = SocketAddrV4::new(testbed::SNAT_ADDR, 0);
    let snat_str = testbed::SNAT_ADDR.to_string();
    let ns = lab.tb.backend_ns(1);
    // The testbed turns IPv6 off; ::1 is for the real-IPv6 connections.
    lab.tb
        .sysctl(ns, "net.ipv6.conf.lo.disable_ipv6", "0")
        .unwrap();

    // Without the reader: ::ffff:<SNAT address>.
    {
        let _server = PyServer::start(ns, &server_cg, Family::DualStack);
        let (_, (accepted, peer)) = through_director(&lab);
        assert_eq!(accepted.ip(), mapped(snat).ip(), "{accepted}");
        assert_eq!(accepted, peer);
    }

    let install = ["--toa", "--toa-from", &snat_str, "--cgroup", cg];
    let (ok, text) = agent(&pins.0, &install);
    assert!(ok && text.contains("TOA reader installed"), "{text}");
    assert_eq!(hooks_on(&server_cg), (1, 1, 1), "one program per hook");
    // Idempotent: a second install edits nothing and attaches nothing more.
    let (ok, text) = agent(&pins.0, &install);
    assert!(
        ok && text.contains("already installed") && text.contains("unchanged"),
        "{text}"
    );
    assert_eq!(hooks_on(&server_cg), (1, 1, 1), "nothing attached twice");

    // With it: ::ffff:<client>, port included, from accept() and
    // getpeername() alike.
    let server = PyServer::start(ns, &server_cg, Family::DualStack);
    let (client, (accepted, peer)) = through_director(&lab);
    assert_eq!(*client.ip(), testbed::CLIENT_ADDR);
    assert_eq!(accepted, mapped(client), "accept() returns the client");
    assert_eq!(peer, mapped(client), "getpeername() returns the client");

    // A spoofing client straight to the backend's IPv4 address (v4-mapped
    // on this listener) is not believed ...
    let writer = spoofing_writer(&client_cg);
    let backend = testbed::backend_addr(1).to_string();
    let (own, seen) = straight_to_backend(&lab, &client_cg, &backend);
    assert_eq!(seen, (mapped_of(own), mapped_of(own)), "spoof ignored");
    // ... nor over real IPv6, where the option can't be trusted at all.
    let (own6, seen) = straight_to_backend(&lab, &client_cg, "::1");
    assert_eq!(own6.ip(), Ipv6Addr::LOCALHOST);
    assert_eq!(seen, (own6, own6), "IPv6 untouched");

    // Control: once its sender is trusted, the same option is believed on
    // the v4-mapped path; IPv6 stays untouched.
    let also = format!("{snat_str},{backend}");
    let (ok, text) = agent(&pins.0, &["--toa", "--toa-from", &also, "--cgroup", cg]);
    assert!(ok && text.contains("already installed"), "{text}");
    let (_, seen) = straight_to_backend(&lab, &client_cg, &backend);
    assert_eq!(
        seen,
        (mapped(SPOOF), mapped(SPOOF)),
        "believed once trusted"
    );
    let (own6, seen) = straight_to_backend(&lab, &client_cg, "::1");
    assert_eq!(seen, (own6, own6), "IPv6 untouched");
    drop(writer);

    let dir = toa_reader::pin_dir(&pins.0);
    let status = toa_reader::read_status(&dir).unwrap().expect("installed");
    assert_eq!(
        (status.translated, status.untrusted, status.no_saved_syn),
        (2, 1, 0),
        "{status:?}"
    );
    let (ok, text) = agent(&pins.0, &["--status"]);
    assert!(
        ok && text.contains("hooks:                sockops, getpeername4, getpeername6"),
        "{text}"
    );

    // Removed: every hook detached, the SNAT address again.
    let (ok, text) = agent(&pins.0, &["--toa", "--remove"]);
    assert!(ok && text.contains("TOA reader removed"), "{text}");
    assert_eq!(hooks_on(&server_cg), (0, 0, 0), "all detached on return");
    let (_, (accepted, peer)) = through_director(&lab);
    assert_eq!(accepted.ip(), mapped(snat).ip());
    assert_eq!(accepted, peer);
    drop(server);
}

/// A v4 address as the dual-stack server sees it.
fn mapped_of(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V4(a) => mapped(a),
        v6 => v6,
    }
}

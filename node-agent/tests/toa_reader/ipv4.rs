//! The TOA reader on a FullNAT backend, IPv4 server. A plain Python server (`socket.accept()`, then
//! `getpeername()`) in the backend namespace reports the peer it was given:
//! the director's SNAT address without the reader, the client's address and
//! port with it; a client sending option 254 itself straight to the backend
//! is not believed; removing the reader restores the SNAT address.
use std::net::SocketAddr;

use ballast_agent::toa_reader;
use ballast_testbed::{self as testbed, TestCgroup, require_root};

use crate::support::*;

#[test]
fn fullnat_backend_sees_the_client_through_the_toa_reader() {
    require_root(NEEDS_ROOT);
    let lab = toa_lab("toa");
    let pins = PinRoot::new("toa");
    let server_cg = TestCgroup::create("srv").unwrap();
    let client_cg = TestCgroup::create("cli").unwrap();
    let cg = server_cg.path().to_str().unwrap();
    let snat = testbed::SNAT_ADDR.to_string();

    // Nothing trusted until named: refused, nothing pinned.
    let (ok, text) = agent(&pins.0, &["--toa", "--cgroup", cg]);
    assert!(!ok && text.contains("no director is trusted yet"), "{text}");
    let (ok, text) = agent(&pins.0, &["--status"]);
    assert!(ok && text.contains("not installed"), "{text}");

    // Without the reader: the SNAT address.
    {
        let _server = PyServer::start(lab.tb.backend_ns(1), &server_cg, Family::V4);
        let (client, (accepted, peer)) = through_director(&lab);
        assert_eq!(accepted.ip(), testbed::SNAT_ADDR, "client {client}");
        assert_eq!(accepted, peer);
    }

    // With the reader trusting the director: the client, port included,
    // from accept() and getpeername() alike.
    let (ok, text) = agent(&pins.0, &["--toa", "--toa-from", &snat, "--cgroup", cg]);
    assert!(ok && text.contains("TOA reader installed"), "{text}");
    let server = PyServer::start(lab.tb.backend_ns(1), &server_cg, Family::V4);
    let (client, (accepted, peer)) = through_director(&lab);
    assert_eq!(*client.ip(), testbed::CLIENT_ADDR);
    let client = SocketAddr::V4(client);
    assert_eq!(accepted, client, "accept() returns the client");
    assert_eq!(peer, client, "getpeername() returns the client");

    // A client that sends option 254 itself, straight to the backend, is
    // not believed: the server sees where the connection came from.
    let writer = spoofing_writer(&client_cg);
    let backend = testbed::backend_addr(1).to_string();
    let (own, (accepted, peer)) = straight_to_backend(&lab, &client_cg, &backend);
    assert_eq!(own.ip(), testbed::backend_addr(1));
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
    let (_, (accepted, peer)) = straight_to_backend(&lab, &client_cg, &backend);
    let spoof = SocketAddr::V4(SPOOF);
    assert_eq!((accepted, peer), (spoof, spoof), "believed once trusted");
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
    assert_eq!(accepted.ip(), testbed::SNAT_ADDR);
    assert_eq!(accepted, peer);
    drop(server);
    let (ok, text) = agent(&pins.0, &["--status"]);
    assert!(ok && text.contains("not installed"), "{text}");
}

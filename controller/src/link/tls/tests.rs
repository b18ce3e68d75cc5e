//! Table: the SANs of a client certificate in, the node (or why none) out.

use rcgen::{CertificateParams, KeyPair, SanType};

use super::*;

fn cert_with(sans: &[&str]) -> CertificateDer<'static> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = sans
        .iter()
        .map(|s| match s.strip_prefix("dns:") {
            Some(dns) => SanType::DnsName((*dns).try_into().unwrap()),
            None => SanType::URI((*s).try_into().unwrap()),
        })
        .collect();
    let key = KeyPair::generate().unwrap();
    params.self_signed(&key).unwrap().der().clone()
}

#[test]
fn the_agent_node_comes_from_exactly_one_spiffe_uri() {
    let cases: &[(&str, &[&str], Result<&str, IdentityError>)] = &[
        (
            "one agent URI",
            &["spiffe://ballast/agent/node-a"],
            Ok("node-a"),
        ),
        (
            "other SANs beside it are fine",
            &["dns:node-a.example", "spiffe://ballast/agent/node-a"],
            Ok("node-a"),
        ),
        ("no SAN", &[], Err(IdentityError::NotAnAgent)),
        (
            "a DNS name only",
            &["dns:node-a"],
            Err(IdentityError::NotAnAgent),
        ),
        (
            "another SPIFFE path",
            &["spiffe://ballast/controller/x"],
            Err(IdentityError::NotAnAgent),
        ),
        (
            "an empty node",
            &["spiffe://ballast/agent/"],
            Err(IdentityError::NotAnAgent),
        ),
        (
            "a path below a node",
            &["spiffe://ballast/agent/node-a/x"],
            Err(IdentityError::NotAnAgent),
        ),
        (
            "two agents",
            &["spiffe://ballast/agent/a", "spiffe://ballast/agent/b"],
            Err(IdentityError::Ambiguous(vec!["a".into(), "b".into()])),
        ),
    ];
    for (desc, sans, want) in cases {
        let got = agent_node(&cert_with(sans));
        assert_eq!(got.as_deref().map_err(Clone::clone), want.clone(), "{desc}");
    }
}

#[test]
fn no_certificate_or_garbage_is_refused() {
    assert_eq!(peer_agent_node(None), Err(IdentityError::NoCertificate));
    assert_eq!(
        peer_agent_node(Some(&[])),
        Err(IdentityError::NoCertificate)
    );
    let garbage = CertificateDer::from(vec![1, 2, 3]);
    assert!(matches!(
        agent_node(&garbage),
        Err(IdentityError::Unparsable(_))
    ));
}

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

fn node(n: &str) -> AgentClaim {
    AgentClaim::Node(n.into())
}

#[test]
fn the_agent_claim_comes_from_exactly_one_spiffe_uri() {
    let cases: &[(&str, &[&str], Result<AgentClaim, IdentityError>)] = &[
        (
            "one agent URI",
            &["spiffe://ballast/agent/node-a"],
            Ok(node("node-a")),
        ),
        (
            "other SANs beside it are fine",
            &["dns:node-a.example", "spiffe://ballast/agent/node-a"],
            Ok(node("node-a")),
        ),
        (
            "the shared agent URI",
            &["spiffe://ballast/agent"],
            Ok(AgentClaim::Shared),
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
            "a longer trust path is not the shared URI",
            &["spiffe://ballast/agents"],
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
            Err(IdentityError::Ambiguous(vec![
                "spiffe://ballast/agent/a".into(),
                "spiffe://ballast/agent/b".into(),
            ])),
        ),
        (
            "a node and the shared URI",
            &["spiffe://ballast/agent/a", "spiffe://ballast/agent"],
            Err(IdentityError::Ambiguous(vec![
                "spiffe://ballast/agent/a".into(),
                "spiffe://ballast/agent".into(),
            ])),
        ),
    ];
    for (desc, sans, want) in cases {
        assert_eq!(&agent_claim(&cert_with(sans)), want, "{desc}");
    }
}

#[test]
fn each_identity_mode_says_which_claims_speak_for_which_node() {
    use AgentIdentity::{Node, Shared};
    let other = |hello: &str, certified: &str| AuthorizeError::OtherNode {
        hello: hello.into(),
        certified: certified.into(),
    };
    /// desc, mode, what the certificate claims, the Hello's node, verdict.
    type Case = (
        &'static str,
        AgentIdentity,
        AgentClaim,
        &'static str,
        Result<(), AuthorizeError>,
    );
    let cases: &[Case] = &[
        ("node mode, its own node", Node, node("a"), "a", Ok(())),
        (
            "node mode, another node",
            Node,
            node("a"),
            "b",
            Err(other("b", "a")),
        ),
        (
            "node mode refuses the shared URI",
            Node,
            AgentClaim::Shared,
            "a",
            Err(AuthorizeError::SharedRefused),
        ),
        (
            "shared mode, the shared URI for any node",
            Shared,
            AgentClaim::Shared,
            "b",
            Ok(()),
        ),
        (
            "shared mode still takes node certificates",
            Shared,
            node("a"),
            "a",
            Ok(()),
        ),
        (
            "shared mode keeps node certificates to their node",
            Shared,
            node("a"),
            "b",
            Err(other("b", "a")),
        ),
    ];
    for (desc, mode, claim, hello, want) in cases {
        assert_eq!(&authorize(*mode, claim, hello), want, "{desc}");
    }
}

#[test]
fn no_certificate_or_garbage_is_refused() {
    assert_eq!(peer_agent_claim(None), Err(IdentityError::NoCertificate));
    assert_eq!(
        peer_agent_claim(Some(&[])),
        Err(IdentityError::NoCertificate)
    );
    let garbage = CertificateDer::from(vec![1, 2, 3]);
    assert!(matches!(
        agent_claim(&garbage),
        Err(IdentityError::Unparsable(_))
    ));
}

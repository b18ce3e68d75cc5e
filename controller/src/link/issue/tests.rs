//! Issuing and the renewal decision, on an injected clock.

use super::*;
use crate::link::tls::{AgentClaim, agent_claim};

const DAY: Duration = Duration::from_secs(24 * 3600);

/// A whole second, so validity read back (in seconds) is exact.
fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn server_usage() -> Usage {
    Usage::Server(vec![
        "ballast-controller-link.ballast-system.svc".into(),
        "ballast-controller-link.ballast-system.svc.cluster.local".into(),
    ])
}

fn authority() -> Authority {
    Authority::from_pem(&new_ca(t0()).unwrap()).unwrap()
}

#[test]
fn a_leaf_is_kept_until_two_thirds_of_its_lifetime_then_renewed() {
    let ca = authority();
    for usage in [server_usage(), Usage::Agent] {
        let leaf = ca.issue(&usage, t0()).unwrap();
        // Valid from 5 minutes before issue (clock skew) to 90 days after:
        // due when a third of that is left.
        let lifetime = LEAF_LIFETIME + BACKDATE;
        let due = t0() + LEAF_LIFETIME - lifetime / 3;
        assert_eq!(due, t0() + 60 * DAY - Duration::from_secs(100));
        let cases = [
            ("just issued", t0(), true),
            ("a second before due", due - Duration::from_secs(1), true),
            ("due", due, false),
        ];
        for (desc, now, kept) in cases {
            let got = ca.renewal(Some(&leaf), &usage, now);
            if kept {
                assert_eq!(got, Renewal::Keep { renew_at: due }, "{usage:?}: {desc}");
            } else {
                assert_eq!(
                    got,
                    Renewal::Renew(RenewWhy::Due { due: rfc3339(due) }),
                    "{usage:?}: {desc}"
                );
            }
        }
        let expired = ca.renewal(Some(&leaf), &usage, t0() + LEAF_LIFETIME + DAY);
        assert!(
            matches!(&expired, Renewal::Renew(RenewWhy::NotFromCa(e)) if e.contains("Expired")),
            "{expired:?}"
        );
    }
}

#[test]
fn a_leaf_that_is_missing_foreign_mismatched_or_misnamed_is_renewed_at_once() {
    let ca = authority();
    let usage = server_usage();
    let good = ca.issue(&usage, t0()).unwrap();
    let other = authority().issue(&usage, t0()).unwrap();
    let renew = |held: Option<&CertKey>, usage: &Usage| match ca.renewal(held, usage, t0()) {
        Renewal::Renew(why) => why,
        keep => panic!("kept: {keep:?}"),
    };
    assert_eq!(renew(None, &usage), RenewWhy::Missing);
    let garbage = CertKey {
        cert: "not PEM".into(),
        key: good.key.clone(),
    };
    assert!(matches!(
        renew(Some(&garbage), &usage),
        RenewWhy::Unparsable(_)
    ));
    let bad_key = CertKey {
        key: "not PEM".into(),
        ..good.clone()
    };
    assert!(
        matches!(renew(Some(&bad_key), &usage), RenewWhy::Unparsable(e) if e.contains("private key"))
    );
    let swapped = CertKey {
        cert: good.cert.clone(),
        key: other.key.clone(),
    };
    assert_eq!(renew(Some(&swapped), &usage), RenewWhy::KeyMismatch);
    // Another CA of the same name: its signature does not verify.
    let foreign = renew(Some(&other), &usage);
    assert!(matches!(foreign, RenewWhy::NotFromCa(_)), "{foreign:?}");
    // A serving certificate is no agent's: wrong use, wrong names.
    assert!(matches!(
        renew(Some(&good), &Usage::Agent),
        RenewWhy::NotFromCa(_)
    ));
    let renamed = Usage::Server(vec!["other.ballast-system.svc".into()]);
    assert_eq!(
        renew(Some(&good), &renamed),
        RenewWhy::Names {
            have: vec![
                "ballast-controller-link.ballast-system.svc".into(),
                "ballast-controller-link.ballast-system.svc.cluster.local".into(),
            ],
            want: vec!["other.ballast-system.svc".into()],
        }
    );
    // The same names in another order are the same certificate.
    let reordered = Usage::Server(vec![
        "ballast-controller-link.ballast-system.svc.cluster.local".into(),
        "ballast-controller-link.ballast-system.svc".into(),
    ]);
    assert!(matches!(
        ca.renewal(Some(&good), &reordered, t0()),
        Renewal::Keep { .. }
    ));
}

#[test]
fn the_agent_certificate_is_the_shared_agent_identity() {
    let leaf = authority().issue(&Usage::Agent, t0()).unwrap();
    let der = first_der(&leaf.cert).unwrap();
    assert_eq!(agent_claim(&der), Ok(AgentClaim::Shared));
}

#[test]
fn the_ca_lives_ten_years_and_a_broken_one_is_refused_by_what_is_wrong() {
    let ca = new_ca(t0()).unwrap();
    let der = first_der(&ca.cert).unwrap();
    let (_, parsed) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert_eq!(
        epoch_plus(parsed.validity().not_after.timestamp()),
        t0() + CA_LIFETIME
    );
    assert!(parsed.is_ca());
    let other = new_ca(t0()).unwrap();
    let err = |ca: CertKey| Authority::from_pem(&ca).unwrap_err();
    assert!(matches!(
        err(CertKey {
            cert: "garbage".into(),
            ..ca.clone()
        }),
        IssueError::CaCertificate(_)
    ));
    assert!(matches!(
        err(CertKey {
            key: "garbage".into(),
            ..ca.clone()
        }),
        IssueError::CaKey(_)
    ));
    assert!(matches!(
        err(CertKey {
            key: other.key,
            ..ca.clone()
        }),
        IssueError::CaKeyMismatch
    ));
    // Read back, the CA issues leaves that chain to the certificate it was read from.
    let again = Authority::from_pem(&ca).unwrap();
    let leaf = again.issue(&Usage::Agent, t0()).unwrap();
    assert!(matches!(
        authority().renewal(Some(&leaf), &Usage::Agent, t0()),
        Renewal::Renew(RenewWhy::NotFromCa(_))
    ));
    assert!(matches!(
        Authority::from_pem(&ca)
            .unwrap()
            .renewal(Some(&leaf), &Usage::Agent, t0()),
        Renewal::Keep { .. }
    ));
}

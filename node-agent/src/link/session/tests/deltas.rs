//! Deltas on a held state: taken in place (only what they carry converted,
//! the hash moved by their digests) or, with a part that has a problem,
//! as the whole state after them; either way the held state and hash are
//! those of the whole state, and a refused one leaves them as they were.
use super::*;

/// How a delta reaches the core.
#[derive(Debug, PartialEq)]
enum Path {
    /// As a change: only what it carries was converted.
    Change,
    /// As the whole state after it (a part with a problem).
    Whole,
}

fn l2(vip: [u8; 4]) -> v1::Announcements {
    v1::Announcements {
        l2: vec![vip.to_vec()],
        bgp: vec![],
    }
}

/// Three objects, the first VIP announced, every part clean.
fn base() -> v1::NodeState {
    v1::NodeState {
        announcements: Some(l2([203, 0, 113, 10])),
        ..state(
            1,
            vec![
                service("api", [203, 0, 113, 11], [198, 51, 100, 12]),
                service("db", [203, 0, 113, 12], [198, 51, 100, 13]),
                service("web", [203, 0, 113, 10], [198, 51, 100, 11]),
            ],
        )
    }
}

fn ipv6_backend(mut s: v1::Service) -> v1::Service {
    s.ports[0].backends[0].address =
        vec![0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    s
}

type DeltaEdit = fn(&mut v1::Delta);

#[test]
fn deltas_are_taken_in_place_and_the_hash_follows_the_whole_state() {
    // desc, the delta on top of the version before, how it reaches the core.
    let table: Vec<(&str, DeltaEdit, Path)> = vec![
        ("nothing but the version", |_| {}, Path::Change),
        (
            "one backend of one object",
            |d| d.upserted = vec![service("db", [203, 0, 113, 12], [198, 51, 100, 99])],
            Path::Change,
        ),
        (
            "an object added and its VIP announced",
            |d| {
                d.upserted = vec![service("new", [203, 0, 113, 20], [198, 51, 100, 20])];
                d.l2_added = vec![vec![203, 0, 113, 20]];
            },
            Path::Change,
        ),
        (
            "an object removed",
            |d| {
                d.removed = vec![object("api")];
            },
            Path::Change,
        ),
        (
            "settings",
            |d| {
                d.settings = Some(v1::NodeSettings {
                    snat_addresses: vec![vec![198, 51, 100, 3]],
                    ..Default::default()
                })
            },
            Path::Change,
        ),
        (
            "a part this data plane skips (an IPv6 backend)",
            |d| d.upserted = vec![ipv6_backend(service("six", [203, 0, 113, 30], [0; 4]))],
            Path::Whole,
        ),
        (
            "after that, every delta (the skipped part is reported in each answer)",
            |d| d.upserted = vec![service("db", [203, 0, 113, 12], [198, 51, 100, 98])],
            Path::Whole,
        ),
        (
            "the skipped part removed",
            |d| d.removed = vec![object("six")],
            Path::Whole,
        ),
        (
            "clean again: in place",
            |d| d.upserted = vec![service("db", [203, 0, 113, 12], [198, 51, 100, 97])],
            Path::Change,
        ),
    ];
    let mut session = holding(base());
    let mut expected = base();
    for (desc, edit, path) in table {
        let mut d = v1::Delta {
            base_version: expected.version,
            version: expected.version + 1,
            ..Default::default()
        };
        edit(&mut d);
        let c = apply(session.receive(delta(d.clone())));
        let taken = match &c.work {
            Work::Change(_) => Path::Change,
            Work::Whole(_) => Path::Whole,
        };
        assert_eq!(taken, path, "{desc}");
        apply_delta(&mut expected, &d).unwrap();
        session.applied(c, &clean(d.version));
        let held = session.held().unwrap();
        assert_eq!(held.state, expected, "{desc}: the state");
        assert_eq!(held.hash, content_hash(&expected), "{desc}: the hash");
        let names: Vec<&String> = held.objects.keys().collect();
        let want: Vec<String> = expected
            .services
            .iter()
            .map(|s| crate::link::convert::object_name(s.object.as_ref().unwrap()).unwrap())
            .collect();
        assert_eq!(names, want.iter().collect::<Vec<_>>(), "{desc}: names");
    }
}

#[test]
fn a_change_carries_only_what_the_delta_names() {
    let session = holding(base());
    let d = v1::Delta {
        base_version: 1,
        version: 2,
        upserted: vec![service("db", [203, 0, 113, 12], [198, 51, 100, 99])],
        removed: vec![object("api")],
        l2_added: vec![vec![203, 0, 113, 12]],
        ..Default::default()
    };
    let c = apply(session.receive(delta(d)));
    let ch = change(&c);
    let objects: Vec<(&str, usize)> = ch
        .objects
        .iter()
        .map(|(name, services)| (name.as_str(), services.len()))
        .collect();
    assert_eq!(objects, [("default/api", 0), ("default/db", 1)]);
    assert_eq!(ch.settings, None, "settings untouched");
    assert_eq!(
        ch.announce.as_ref().map(|a| a.l2.clone()),
        Some(
            [
                Ipv4Addr::new(203, 0, 113, 10),
                Ipv4Addr::new(203, 0, 113, 12)
            ]
            .into()
        )
    );
}

#[test]
fn a_refused_delta_leaves_the_held_state_and_hash_as_they_were() {
    let mut session = holding(base());
    let before = session.held().unwrap().clone();
    let d = v1::Delta {
        base_version: 1,
        version: 2,
        upserted: vec![service("dup", [203, 0, 113, 10], [198, 51, 100, 12])],
        ..Default::default()
    };
    let c = apply(session.receive(delta(d)));
    let refused = ApplyReport {
        applied_version: 1,
        errors: vec![ApplyError::Service {
            service: ServiceRef {
                object: "default/dup".into(),
                vip: Ipv4Addr::new(203, 0, 113, 10),
                port: 80,
                protocol: Protocol::Tcp,
            },
            problem: ServiceProblem::Duplicate {
                first: "default/web".into(),
            },
        }],
        programmed: 3,
    };
    let n = nack(session.applied(c, &refused).kind.unwrap());
    assert_eq!((n.version, n.applied_version), (2, 1));
    assert_eq!(
        n.errors[0].object,
        Some(object("dup")),
        "named from the delta"
    );
    assert_eq!(session.held(), Some(&before));
    let Some(Out::Hello(h)) = session.hello("node-a", "x").kind else {
        panic!()
    };
    assert_eq!(
        (h.applied_version, h.applied_hash),
        (1, content_hash(&base()).to_vec())
    );
}

#[test]
fn a_delta_removing_an_object_twice_is_refused() {
    let session = holding(base());
    let d = v1::Delta {
        base_version: 1,
        version: 2,
        removed: vec![object("api"), object("api")],
        ..Default::default()
    };
    let n = nack(answer(session.receive(delta(d))));
    assert_eq!(n.applied_version, 1);
    assert!(n.message.contains("does not hold"), "{}", n.message);
}

//! The reload rounds of [`super::resolve`], table by table: last-good
//! fallback, first-come ownership, duplicates, refused addresses, warnings.

use super::*;
use crate::core::Backend;
use ballast_api::{Forwarding, Protocol};

/// Errors or warnings as logged.
fn lines<T: ToString>(reported: &[T]) -> Vec<String> {
    reported.iter().map(|e| e.to_string()).collect()
}

const SNAT: [Ipv4Addr; 1] = [Ipv4Addr::new(198, 51, 100, 3)];

/// A document from YAML, read as `config_files` reads one.
fn from_yaml(source: &str, yaml: &str) -> Document {
    let raw: serde_yaml::Value = serde_yaml::from_str(yaml).unwrap();
    Document {
        source: source.into(),
        parsed: crate::config_files::parse_virtual_server(yaml).map(std::sync::Arc::new),
        ignored_keys: crate::config_files::ignored_keys(&raw),
    }
}

/// `name` serving `vip`:80/TCP to the given backends (a YAML flow list).
fn object(source: &str, name: &str, vip: &str, backends: &str) -> Document {
    from_yaml(
        source,
        &format!(
            "apiVersion: ballast.dev/v1alpha1\nkind: VirtualServer\n\
             metadata: {{name: {name}, namespace: default}}\n\
             spec:\n  addresses: [{vip}]\n  ports: [{{port: 80, protocol: TCP}}]\n  \
             backends: {{static: {backends}}}\n"
        ),
    )
}

fn doc(source: &str, name: &str, vip: &str, forwarding: &str) -> Document {
    from_yaml(
        source,
        &format!(
            "apiVersion: ballast.dev/v1alpha1\nkind: VirtualServer\nmetadata: {{name: {name}, namespace: default}}\n\
             spec:\n  addresses: [{vip}]\n  ports: [{{port: 80, protocol: TCP}}]\n  forwarding: {forwarding}\n  \
             backends: {{static: [{{address: 198.51.100.11}}]}}\n"
        ),
    )
}

/// Every service the last round serves.
fn services(last: &LastGood) -> Vec<Service> {
    last.services().cloned().collect()
}

fn served(last: &LastGood) -> Vec<(&str, String)> {
    last.services()
        .map(|s| (s.object.as_str(), s.backends[0].address.to_string()))
        .collect()
}

#[test]
fn invalid_update_keeps_the_last_valid_version() {
    let mut last = LastGood::default();
    let r = resolve(
        &[doc("a.yaml#1", "web", "203.0.113.10", "DR")],
        &mut last,
        &SNAT,
    );
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(services(&last).len(), 1);

    let r = resolve(
        &[doc("a.yaml#1", "web", "203.0.113.10", "Bogus")],
        &mut last,
        &SNAT,
    );
    assert_eq!(services(&last).len(), 1, "still served");
    assert_eq!(services(&last)[0].forwarding, Forwarding::Dr);
    assert!(
        r.errors[0].to_string().starts_with("a.yaml#1: "),
        "{:?}",
        r.errors
    );

    // A file that does not parse at all keeps what came from it.
    let broken = Document {
        source: "a.yaml#1".into(),
        parsed: Err("bad indentation at line 3".into()),
        ignored_keys: Vec::new(),
    };
    let r = resolve(&[broken], &mut last, &SNAT);
    assert_eq!(services(&last).len(), 1);
    assert!(r.change.is_empty(), "kept as it was: nothing to hand over");

    // Deleted: gone.
    let r = resolve(&[], &mut last, &SNAT);
    assert!(services(&last).is_empty());
    assert_eq!(r.change.objects.len(), 1);
    assert!(
        r.change.objects.values().all(Vec::is_empty),
        "{:?}",
        r.change
    );
}

#[test]
fn cold_start_gives_a_contested_address_to_the_first_name() {
    for order in [[0, 1], [1, 0]] {
        let docs = [
            doc("a.yaml#1", "alpha", "203.0.113.10", "FullNAT"),
            doc("b.yaml#1", "beta", "203.0.113.10", "NAT"),
        ];
        let docs = order.map(|i| docs[i].clone());
        let mut last = LastGood::default();
        let r = resolve(&docs, &mut last, &SNAT);
        assert_eq!(services(&last).len(), 1);
        assert_eq!(services(&last)[0].object, "default/alpha");
        assert_eq!(r.errors.len(), 1);
        assert!(
            r.errors[0]
                .to_string()
                .starts_with("b.yaml#1: default/beta: spec.addresses[0]: ")
                && r.errors[0]
                    .to_string()
                    .contains("203.0.113.10:80/TCP is held by default/alpha"),
            "{:?}",
            r.errors
        );
    }
}

#[test]
fn first_come_the_serving_object_keeps_its_address() {
    let mut last = LastGood::default();
    let web = object(
        "web.yaml#1",
        "web",
        "203.0.113.10",
        "[{address: 198.51.100.11}]",
    );
    let aaa = object(
        "aaa.yaml#1",
        "aaa",
        "203.0.113.10",
        "[{address: 198.51.100.12}]",
    );
    let r = resolve(std::slice::from_ref(&web), &mut last, &SNAT);
    assert_eq!(served(&last), [("default/web", "198.51.100.11".into())]);
    assert_eq!(r.change.objects.keys().collect::<Vec<_>>(), ["default/web"]);

    // aaa sorts first and comes second: refused whole, web keeps serving.
    let r = resolve(&[aaa.clone(), web.clone()], &mut last, &SNAT);
    assert_eq!(served(&last), [("default/web", "198.51.100.11".into())]);
    assert_eq!(
        lines(&r.errors),
        [
            "aaa.yaml#1: default/aaa: spec.addresses[0]: 203.0.113.10:80/TCP is held by \
          default/web; default/aaa is not applied (first come: what an object already \
          serves stays with it)"
        ]
    );
    // Stable across reloads, and web's edits still apply.
    let web2 = object(
        "web.yaml#1",
        "web",
        "203.0.113.10",
        "[{address: 198.51.100.13}]",
    );
    let r = resolve(&[aaa.clone(), web2], &mut last, &SNAT);
    assert_eq!(served(&last), [("default/web", "198.51.100.13".into())]);
    assert_eq!(r.errors.len(), 1);

    // An invalid edit of web keeps web's last valid version, and its key.
    let bad = object(
        "web.yaml#1",
        "web",
        "203.0.113.10",
        "[{address: 127.0.0.1}]",
    );
    let r = resolve(&[aaa.clone(), bad], &mut last, &SNAT);
    assert_eq!(served(&last), [("default/web", "198.51.100.13".into())]);
    assert_eq!(r.errors.len(), 2, "{:?}", r.errors);
    assert!(
        r.errors[0].to_string().contains("loopback")
            && r.errors[0].to_string().contains("keeping its last valid")
    );

    // web goes: aaa gets the address on that reload.
    let r = resolve(std::slice::from_ref(&aaa), &mut last, &SNAT);
    assert_eq!(served(&last), [("default/aaa", "198.51.100.12".into())]);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
}

#[test]
fn duplicate_names_apply_neither_and_keep_what_serves() {
    let web = object(
        "a.yaml#1",
        "web",
        "203.0.113.10",
        "[{address: 198.51.100.11}]",
    );
    let copy = object(
        "b.yaml#2",
        "web",
        "203.0.113.10",
        "[{address: 198.51.100.12}]",
    );
    let same_file = object(
        "a.yaml#2",
        "web",
        "203.0.113.10",
        "[{address: 198.51.100.12}]",
    );

    for dup in [&copy, &same_file] {
        let mut last = LastGood::default();
        resolve(std::slice::from_ref(&web), &mut last, &SNAT);
        let r = resolve(&[web.clone(), dup.clone()], &mut last, &SNAT);
        assert_eq!(served(&last), [("default/web", "198.51.100.11".into())]);
        assert_eq!(
            lines(&r.errors),
            [format!(
                "default/web: metadata.name: defined more than once, in a.yaml#1 and {}; \
                 neither is applied; its last valid version stays",
                dup.source
            )]
        );
        // An edit of either copy changes nothing while both exist.
        let edited = object(
            "a.yaml#1",
            "web",
            "203.0.113.10",
            "[{address: 198.51.100.13}]",
        );
        let r = resolve(&[edited.clone(), dup.clone()], &mut last, &SNAT);
        assert_eq!(served(&last), [("default/web", "198.51.100.11".into())]);
        assert!(r.change.is_empty(), "web keeps serving as it was");
        // The copy removed: the remaining document applies.
        let r = resolve(&[edited], &mut last, &SNAT);
        assert_eq!(served(&last), [("default/web", "198.51.100.13".into())]);
        assert!(r.errors.is_empty());
    }

    // Cold start: ambiguous, neither is served; other objects are.
    let other = object(
        "c.yaml#1",
        "other",
        "203.0.113.20",
        "[{address: 198.51.100.11}]",
    );
    let mut last = LastGood::default();
    let r = resolve(&[web, copy, other], &mut last, &SNAT);
    assert_eq!(served(&last), [("default/other", "198.51.100.11".into())]);
    assert_eq!(
        r.errors,
        [FileError::DefinedTwice {
            object: "default/web".into(),
            documents: vec!["a.yaml#1".into(), "b.yaml#2".into()],
            kept: false,
        }]
    );
    assert_eq!(
        lines(&r.errors),
        [
            "default/web: metadata.name: defined more than once, in a.yaml#1 and b.yaml#2; \
          neither is applied until only one remains"
        ]
    );
}

/// Addresses refused by this configuration or this agent's settings
/// (`resolve`), beside those no backend may ever have (`ballast_api`),
/// each with the field and reason named: (desc, input, expected error).
const REFUSED_ADDRESSES: &[(&str, &str, &str, &str)] = &[
    (
        "backend is loopback",
        "203.0.113.10",
        "[{address: 127.0.0.1}]",
        "default/x: spec.backends.static[0].address: 127.0.0.1 is a loopback address",
    ),
    (
        "backend is link-local",
        "203.0.113.10",
        "[{address: 198.51.100.11}, {address: 169.254.1.1}]",
        "default/x: spec.backends.static[1].address: 169.254.1.1 is a link-local address",
    ),
    (
        "backend is multicast",
        "203.0.113.10",
        "[{address: 224.0.0.1}]",
        "default/x: spec.backends.static[0].address: 224.0.0.1 is a multicast address",
    ),
    (
        "backend is unspecified",
        "203.0.113.10",
        "[{address: 0.0.0.0}]",
        "default/x: spec.backends.static[0].address: 0.0.0.0 is the unspecified address",
    ),
    (
        "backend is broadcast",
        "203.0.113.10",
        "[{address: 255.255.255.255}]",
        "default/x: spec.backends.static[0].address: 255.255.255.255 is the broadcast address",
    ),
    (
        "backend is a VIP of the same object",
        "203.0.113.10",
        "[{address: 203.0.113.10}]",
        "default/x: spec.backends.static[0].address: 203.0.113.10 is also a VIP",
    ),
    (
        "backend is a VIP of another object",
        "203.0.113.10",
        "[{address: 203.0.113.99}]",
        "default/x: spec.backends.static[0].address: 203.0.113.99 is a VIP of default/holder",
    ),
    (
        "VIP is a backend of another object",
        "198.51.100.50",
        "[{address: 198.51.100.11}]",
        "default/x: spec.addresses[0]: 198.51.100.50 is a backend of default/holder",
    ),
    (
        "backend is a SNAT address",
        "203.0.113.10",
        "[{address: 198.51.100.11}, {address: 198.51.100.3}]",
        "default/x: spec.backends.static[1].address: 198.51.100.3 is a SNAT address of this \
         agent (--snat-address)",
    ),
    (
        "VIP is a SNAT address",
        "198.51.100.3",
        "[{address: 198.51.100.11}]",
        "default/x: spec.addresses[0]: 198.51.100.3 is a SNAT address of this agent",
    ),
];

#[test]
fn refused_addresses() {
    // `holder` serves 203.0.113.99 and forwards to 198.51.100.50; it
    // comes first in name order and in time.
    let holder = object(
        "h.yaml#1",
        "holder",
        "203.0.113.99",
        "[{address: 198.51.100.50}]",
    );
    for (desc, vip, backends, expected) in REFUSED_ADDRESSES {
        let mut last = LastGood::default();
        resolve(std::slice::from_ref(&holder), &mut last, &SNAT);
        let x = object("x.yaml#1", "x", vip, backends);
        let r = resolve(&[holder.clone(), x], &mut last, &SNAT);
        assert_eq!(
            served(&last),
            [("default/holder", "198.51.100.50".into())],
            "{desc}"
        );
        assert_eq!(r.errors.len(), 1, "{desc}: {:?}", r.errors);
        assert!(
            r.errors[0]
                .to_string()
                .starts_with(&format!("x.yaml#1: {expected}")),
            "{desc}: {:?}",
            r.errors
        );
    }
}

#[test]
fn bgp_announcement_is_an_error_naming_object_and_field() {
    let yaml = "apiVersion: ballast.dev/v1alpha1\nkind: VirtualServer\n\
                metadata: {name: web}\nspec:\n  addresses: [203.0.113.10]\n  \
                ports: [{port: 80}]\n  announce: {bgp: {}}\n  \
                backends: {static: [{address: 198.51.100.11}]}\n";
    let mut last = LastGood::default();
    let r = resolve(&[from_yaml("w.yaml#1", yaml)], &mut last, &SNAT);
    assert!(services(&last).is_empty());
    assert!(
        r.errors[0]
            .to_string()
            .starts_with("w.yaml#1: default/web: spec.announce.bgp: standalone mode"),
        "{:?}",
        r.errors
    );
}

#[test]
fn warnings_are_logged_once_per_version_of_an_object() {
    let yaml = |extra: &str| {
        format!(
            "apiVersion: ballast.dev/v1alpha1\nkind: VirtualServer\nextra: 1\n\
             metadata: {{name: web, lables: {{app: web}}}}\nspec:\n  \
             addresses: [203.0.113.10]\n  ports: [{{port: 80}}]\n  \
             nodeSelector: {{zone: a}}\n  backends: {{static: [{{address: 198.51.100.11}}]}}\n{extra}"
        )
    };
    let mut last = LastGood::default();
    let r = resolve(&[from_yaml("w.yaml#1", &yaml(""))], &mut last, &SNAT);
    assert_eq!(services(&last).len(), 1, "warnings do not refuse");
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(
        lines(&r.warnings),
        [
            "w.yaml#1: default/web: spec.nodeSelector: ignored in standalone mode: this \
             agent serves the object on its own interface (the selector is a placement \
             hint for the controller)",
            "w.yaml#1: default/web: extra: unknown key, ignored",
            "w.yaml#1: default/web: metadata.lables: unknown key, ignored",
        ]
    );
    // Reloads of the same version (even moved in its file): silent.
    for source in ["w.yaml#1", "w.yaml#2"] {
        let r = resolve(&[from_yaml(source, &yaml(""))], &mut last, &SNAT);
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    }
    // The object changes: its warnings are logged again.
    let changed = yaml("").replace("[{port: 80}]", "[{port: 81}]");
    let r = resolve(&[from_yaml("w.yaml#1", &changed)], &mut last, &SNAT);
    assert_eq!(r.warnings.len(), 3, "{:?}", r.warnings);
    // Gone, then back: logged again.
    resolve(&[], &mut last, &SNAT);
    let r = resolve(&[from_yaml("w.yaml#1", &changed)], &mut last, &SNAT);
    assert_eq!(r.warnings.len(), 3, "{:?}", r.warnings);
}

#[test]
fn a_service_with_nothing_to_forward_to_is_served_with_a_warning() {
    let mut last = LastGood::default();
    // An empty static list is LVS's maintenance state: the service stays
    // defined (its clients refused at once, not timing out).
    let empty = object("e.yaml#1", "empty", "203.0.113.10", "[]");
    let drained = object(
        "d.yaml#1",
        "drained",
        "203.0.113.11",
        "[{address: 198.51.100.11, weight: 0}, {address: 198.51.100.12, weight: 0}]",
    );
    let r = resolve(&[empty.clone(), drained.clone()], &mut last, &SNAT);
    assert_eq!(services(&last).len(), 2);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(
        lines(&r.warnings),
        [
            "d.yaml#1: default/drained: spec.backends.static: every backend has weight 0 \
             (draining): established flows continue, new clients are refused (TCP reset, \
             ICMP port unreachable)",
            "e.yaml#1: default/empty: spec.backends.static: is empty: new clients are \
             refused (TCP reset, ICMP port unreachable) until a backend is listed",
        ]
    );
    let r = resolve(&[empty, drained], &mut last, &SNAT);
    assert!(r.warnings.is_empty(), "once: {:?}", r.warnings);
}

#[test]
fn files_become_one_version_of_the_node_state() {
    let mut last = LastGood::default();
    resolve(
        &[doc("a.yaml#1", "web", "203.0.113.10", "NAT")],
        &mut last,
        &SNAT,
    );
    let settings = Settings {
        snat_addrs: SNAT.to_vec(),
        snat_ports: (20_000, 30_000),
    };
    let vip = Ipv4Addr::new(203, 0, 113, 10);
    let service = Service {
        object: "default/web".into(),
        port_name: String::new(),
        vip,
        port: 80,
        protocol: Protocol::Tcp,
        forwarding: Forwarding::Nat,
        toa: false,
        persistence_timeout_s: 0,
        source_ranges: vec![],
        health_check: None,
        // targetPort defaults to the port.
        backends: vec![Backend {
            address: Ipv4Addr::new(198, 51, 100, 11),
            port: 80,
            weight: 1,
        }],
        l2_priority: None,
    };
    assert_eq!(
        to_node_desired(3, last.services(), &settings, true),
        NodeDesired {
            version: 3,
            settings: settings.clone(),
            services: vec![service.clone()],
            announce: Announcements {
                l2: [vip].into(),
                bgp: Default::default(),
            },
        }
    );
    let quiet = to_node_desired(4, last.services(), &settings, false);
    assert!(quiet.announce.l2.is_empty(), "--no-announce");
    assert_eq!(quiet.services, [service]);
}

#[test]
fn an_unchanged_document_keeps_its_version_without_validating_again() {
    let mut last = LastGood::default();
    let web = doc("a.yaml#1", "web", "203.0.113.10", "NAT");
    resolve(std::slice::from_ref(&web), &mut last, &SNAT);
    let first = last.served["default/web"].clone();
    // The same document (the parse cache hands back the same allocation),
    // now second in its file: the same version, the new source.
    let moved = Document {
        source: "a.yaml#2".into(),
        ..web.clone()
    };
    let r = resolve(&[moved], &mut last, &SNAT);
    assert!(r.change.is_empty());
    assert!(
        Arc::ptr_eq(&first, &last.served["default/web"]),
        "not rebuilt"
    );
    assert_eq!(last.objects["default/web"].source, "a.yaml#2");
    // Equal text parsed again is another allocation: validated again (a
    // new version), equal to what is served, so still no change to hand
    // over and the served version stays.
    let reparsed = doc("a.yaml#1", "web", "203.0.113.10", "NAT");
    let r = resolve(&[reparsed], &mut last, &SNAT);
    assert!(r.change.is_empty());
    assert!(!Arc::ptr_eq(&first, &last.objects["default/web"].version));
    assert!(Arc::ptr_eq(&first, &last.served["default/web"]));
    // Other SNAT addresses: the same document is checked again, against them.
    let snat_is_vip = [Ipv4Addr::new(203, 0, 113, 10)];
    let same = Document {
        source: "a.yaml#1".into(),
        ..web
    };
    resolve(std::slice::from_ref(&same), &mut last, &SNAT);
    let r = resolve(&[same], &mut last, &snat_is_vip);
    assert_eq!(r.errors.len(), 1, "{:?}", r.errors);
    assert!(
        r.errors[0].to_string().contains("is a SNAT address"),
        "{}",
        r.errors[0]
    );
}

#[test]
fn the_same_documents_again_report_the_same_errors_and_change_nothing() {
    let mut last = LastGood::default();
    let broken = Document {
        source: "b.yaml#1".into(),
        parsed: Err("bad indentation at line 3".into()),
        ignored_keys: Vec::new(),
    };
    let docs = [
        doc("a.yaml#1", "alpha", "203.0.113.10", "FullNAT"),
        doc("c.yaml#1", "gamma", "203.0.113.10", "NAT"),
        broken,
    ];
    let first = resolve(&docs, &mut last, &SNAT);
    assert_eq!(first.errors.len(), 2, "{:?}", first.errors);
    assert_eq!(first.change.objects.len(), 1);
    for round in 0..2 {
        let again = resolve(&docs, &mut last, &SNAT);
        assert_eq!(again.errors, first.errors, "round {round}");
        assert!(again.change.is_empty(), "round {round}");
        assert!(again.warnings.is_empty());
    }
    // One document edited: resolved anew, the change is that object's.
    let mut edited = docs.clone();
    edited[0] = object(
        "a.yaml#1",
        "alpha",
        "203.0.113.10",
        "[{address: 198.51.100.12}]",
    );
    let r = resolve(&edited, &mut last, &SNAT);
    assert_eq!(
        r.change.objects.keys().collect::<Vec<_>>(),
        ["default/alpha"]
    );
    assert_eq!(served(&last), [("default/alpha", "198.51.100.12".into())]);
}

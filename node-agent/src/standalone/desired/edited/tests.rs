//! The edited-documents path decides exactly as the full resolve: random
//! configurations over small address pools (so that keys, VIPs and
//! backends collide often), random in-place edits, both paths run from the
//! same state and compared on everything a round yields. The path must
//! also be taken, not just fall back.
use std::collections::BTreeMap;

use super::super::{resolve, resolve_anew};
use super::*;
use crate::config_files::{ignored_keys, parse_virtual_server};
use crate::core::Service;

const SNAT: [Ipv4Addr; 1] = [Ipv4Addr::new(198, 51, 100, 3)];

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

/// Object `o{i}`, a random version: its own VIP, or when `wild` one or
/// two of 24 (so keys and VIPs collide with other objects'), one or two
/// ports of three, one to three backends of twelve, now and then another
/// object's VIP as a backend (the director would forward to itself),
/// weight 0, a SNAT address or a repeated backend (both invalid).
fn text(rng: &mut Rng, i: usize, wild: bool) -> String {
    let vip = |n: usize| format!("203.0.113.{}", 10 + n);
    let mut vips = vec![vip(if wild { rng.below(24) } else { i })];
    if wild && rng.below(2) == 0 {
        vips.push(vip(rng.below(24)));
        vips.dedup();
    }
    let first_port = 80 + rng.below(3);
    let mut ports = vec![format!("{{name: p0, port: {first_port}}}")];
    if rng.below(3) == 0 {
        ports.push(format!("{{name: p1, port: {}}}", first_port + 10));
    }
    let first_backend = rng.below(12);
    let backends: Vec<String> = (0..1 + rng.below(3))
        .map(|k| {
            let address = match rng.below(30) {
                0 => vip(rng.below(24)),
                1 => SNAT[0].to_string(),
                2 => format!("198.51.100.{}", 11 + first_backend),
                _ => format!("198.51.100.{}", 11 + (first_backend + k) % 12),
            };
            let weight = if rng.below(6) == 0 { 0 } else { 1 };
            format!("{{address: {address}, weight: {weight}}}")
        })
        .collect();
    format!(
        "apiVersion: ballast.dev/v1alpha1\nkind: VirtualServer\n\
         metadata: {{name: o{i}, namespace: default}}\n\
         spec:\n  addresses: [{}]\n  ports: [{}]\n  backends: {{static: [{}]}}\n",
        vips.join(", "),
        ports.join(", "),
        backends.join(", ")
    )
}

/// Document `i` read from `yaml` (a new allocation each time, as a parse).
fn parse(i: usize, yaml: &str) -> Document {
    let raw: serde_yaml::Value = serde_yaml::from_str(yaml).unwrap();
    Document {
        source: format!("f{}.yaml#{}", i % 3, i / 3 + 1),
        parsed: parse_virtual_server(yaml).map(Arc::new),
        ignored_keys: ignored_keys(&raw),
    }
}

/// What a round leaves that later rounds and the agent see: the services
/// served, and each object's last valid version with its source.
type State = (
    BTreeMap<String, Vec<Service>>,
    BTreeMap<String, (String, Vec<Service>)>,
);

fn state(last: &LastGood) -> State {
    let served = last
        .served
        .iter()
        .map(|(o, v)| (o.clone(), v.to_vec()))
        .collect();
    let objects = last
        .objects
        .iter()
        .map(|(o, v)| (o.clone(), (v.source.clone(), v.version.to_vec())))
        .collect();
    (served, objects)
}

#[test]
fn edited_documents_resolve_as_the_full_resolve_does() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut taken, mut edits, mut changed, mut warned) = (0, 0, 0, 0);
    for _ in 0..60 {
        let n = 8 + rng.below(12);
        let mut texts: Vec<String> = (0..n).map(|i| text(&mut rng, i, false)).collect();
        let mut docs: Vec<Document> = texts.iter().enumerate().map(|(i, t)| parse(i, t)).collect();
        let mut last = LastGood::default();
        resolve(&docs, &mut last, &SNAT);
        for _ in 0..25 {
            for _ in 0..1 + rng.below(2) {
                let i = rng.below(n);
                // Now and then the same text read again: equal, not the
                // same allocation.
                if rng.below(4) != 0 {
                    let wild = rng.below(3) == 0;
                    texts[i] = text(&mut rng, i, wild);
                }
                docs[i] = parse(i, &texts[i]);
            }
            edits += 1;
            let mut fast = last.clone();
            if let Some(got) = resolve_edited(&docs, &mut fast, &SNAT) {
                taken += 1;
                let mut full = last.clone();
                let want = resolve_anew(&docs, &mut full, &SNAT);
                assert_eq!(got.change, want.change);
                assert_eq!(got.errors, want.errors);
                assert_eq!(got.warnings, want.warnings);
                assert_eq!(state(&fast), state(&full));
                assert_eq!(fast.snat, full.snat);
                changed += usize::from(!got.change.is_empty());
                warned += usize::from(!got.warnings.is_empty());
            }
            // On as a reload goes (the edited path or the full one).
            resolve(&docs, &mut last, &SNAT);
        }
    }
    // Many random edits conflict or are refused (or follow a round that
    // did); enough must not, and change something, and warn.
    assert!(
        taken * 20 >= edits && changed * 2 >= taken && warned >= 3,
        "the edited path was taken {taken} times in {edits} edits ({changed} changed, {warned} warned)"
    );
}

//! Pure: which object gets a contested address. First come: an object that
//! the previous round programmed keeps everything it holds, a newcomer that
//! wants any of it is refused whole (never served in part), and among
//! objects with no history (a cold start, or two newcomers) name order
//! decides, so the outcome never depends on file or reload order.
//!
//! What an object holds: its (VIP, port, protocol) keys, its VIPs (which no
//! other object may use as a backend, or the director would forward to
//! itself) and its backend addresses (which no other object may use as a
//! VIP, for the same reason).
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;

use ballast_api::{FieldError, Protocol, ValidationError};

use super::file_errors::{FileError, Refusal};
use crate::core::Service;

/// One object's services, shared between rounds: an object whose document
/// did not change keeps the same allocation, so carrying it from round to
/// round and comparing it with what was served costs no copy and no walk.
pub type Version = Arc<[Service]>;

/// Whether two versions are the same services (the same allocation, the
/// common case, or equal ones).
pub fn same(a: &Version, b: &[Service]) -> bool {
    (std::ptr::eq(a.as_ptr(), b.as_ptr()) && a.len() == b.len()) || **a == *b
}

/// One object asking for addresses this round.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// `namespace/name`.
    pub object: String,
    /// Where `version` was read (`file#N`), for error messages.
    pub source: String,
    /// What the object asks for now: its new version, or its last valid one
    /// when the new one is invalid.
    pub version: Version,
    /// What the previous round gave it, if anything. Such an object is an
    /// incumbent: what `served` holds is reserved for it, and it falls back
    /// to `served` when `version` wants what another object holds.
    pub served: Option<Version>,
}

#[derive(Debug, Default)]
pub struct Assignment {
    /// object -> the version it is given (its `version`, or for an incumbent
    /// refused an extension, its `served`).
    pub accepted: BTreeMap<String, Version>,
    pub errors: Vec<FileError>,
}

type Key = (Ipv4Addr, u16, Protocol);

/// Who holds what among the versions added so far. Names are borrowed
/// from the candidates, and an address's holders are a range of one set of
/// (address, holder) pairs: a reload of 10k objects built this table from
/// scratch with six name copies and five small sets per object, most of
/// `assign`'s time.
#[derive(Default)]
struct Table<'a> {
    keys: HashMap<Key, &'a str>,
    vips: BTreeSet<(Ipv4Addr, &'a str)>,
    backends: BTreeSet<(Ipv4Addr, &'a str)>,
}

fn key(s: &Service) -> Key {
    (s.vip, s.port, s.protocol)
}

/// The VIPs of a version in `spec.addresses` order (specs are address ×
/// port in that order), so that position `i` is `spec.addresses[i]`.
fn vips(version: &[Service]) -> Vec<Ipv4Addr> {
    let mut out: Vec<Ipv4Addr> = Vec::new();
    for s in version {
        if !out.contains(&s.vip) {
            out.push(s.vip);
        }
    }
    out
}

/// Every spec of a version carries the same `spec.backends.static` list,
/// all of whose entries passed validation, so position `i` is `static[i]`.
fn backends(version: &[Service]) -> impl Iterator<Item = Ipv4Addr> + '_ {
    version
        .first()
        .into_iter()
        .flat_map(|s| s.backends.iter().map(|b| b.address))
}

/// A holder of `address` in `holders` other than `me`.
fn other_than<'a>(
    holders: &BTreeSet<(Ipv4Addr, &'a str)>,
    address: Ipv4Addr,
    me: &str,
) -> Option<&'a str> {
    holders
        .range((address, "")..)
        .take_while(|(a, _)| *a == address)
        .map(|(_, o)| *o)
        .find(|o| *o != me)
}

impl<'a> Table<'a> {
    fn add(&mut self, object: &'a str, version: &[Service]) {
        for s in version {
            self.keys.insert(key(s), object);
        }
        for v in vips(version) {
            self.vips.insert((v, object));
        }
        for b in backends(version) {
            self.backends.insert((b, object));
        }
    }

    fn remove(&mut self, object: &'a str, version: &[Service]) {
        for s in version {
            if self.keys.get(&key(s)).is_some_and(|o| *o == object) {
                self.keys.remove(&key(s));
            }
        }
        for v in vips(version) {
            self.vips.remove(&(v, object));
        }
        for b in backends(version) {
            self.backends.remove(&(b, object));
        }
    }

    /// What `version` of `object` wants that other objects hold, with the
    /// holder; entries `object` holds itself do not count.
    fn conflicts(&self, object: &str, version: &[Service]) -> Vec<(FieldError, String)> {
        let mut out = Vec::new();
        let vip_list = vips(version);
        let field_of = |vip: Ipv4Addr| {
            let i = vip_list.iter().position(|v| *v == vip).unwrap_or(0);
            format!("spec.addresses[{i}]")
        };
        for s in version {
            if let Some(holder) = self.keys.get(&key(s)).filter(|o| **o != object) {
                out.push((
                    FieldError {
                        field: field_of(s.vip),
                        reason: format!("{}:{}/{} is held by {holder}", s.vip, s.port, s.protocol),
                    },
                    holder.to_string(),
                ));
            }
        }
        for v in &vip_list {
            if let Some(user) = other_than(&self.backends, *v, object) {
                out.push((
                    FieldError {
                        field: field_of(*v),
                        reason: format!(
                            "{v} is a backend of {user}: the director would forward that \
                             object's traffic to itself"
                        ),
                    },
                    user.to_string(),
                ));
            }
        }
        for (i, b) in backends(version).enumerate() {
            if let Some(holder) = other_than(&self.vips, b, object) {
                out.push((
                    FieldError {
                        field: format!("spec.backends.static[{i}].address"),
                        reason: format!(
                            "{b} is a VIP of {holder}: the director would forward to itself"
                        ),
                    },
                    holder.to_string(),
                ));
            }
        }
        out
    }
}

fn refusal(c: &Candidate, conflicts: Vec<(FieldError, String)>, outcome: Refusal) -> FileError {
    FileError::Contested {
        document: c.source.clone(),
        error: ValidationError {
            object: c.object.clone(),
            errors: conflicts.into_iter().map(|(e, _)| e).collect(),
        },
        outcome,
    }
}

/// [`assign`] of a round in which every object is an incumbent holding its
/// version, except that the objects in `changed` ask for new ones: whether
/// each, in name order, takes its new version without a conflict (what
/// `assign`'s first pass would decide; then nothing is left for its later
/// passes). False as soon as one conflicts: then `assign` must decide the
/// round, and say why. Costs a table of what `served` holds (no copies),
/// not a candidate per object.
pub fn changes_fit(
    served: &BTreeMap<String, Version>,
    changed: &BTreeMap<String, Version>,
) -> bool {
    let mut table = Table::default();
    for (object, version) in served {
        table.add(object, version);
    }
    for (object, version) in changed {
        if !table.conflicts(object, version).is_empty() {
            return false;
        }
        if let Some(held) = served.get(object) {
            table.remove(object, held);
        }
        table.add(object, version);
    }
    true
}

/// Gives each candidate a version or nothing; see the module docs.
/// `candidates` may come in any order.
pub fn assign(mut candidates: Vec<Candidate>) -> Assignment {
    candidates.sort_by(|a, b| a.object.cmp(&b.object));
    let (incumbents, newcomers): (Vec<Candidate>, Vec<Candidate>) =
        candidates.into_iter().partition(|c| c.served.is_some());
    let incumbent_names: BTreeSet<&str> = incumbents.iter().map(|c| c.object.as_str()).collect();
    let mut out = Assignment::default();
    let mut table = Table::default();

    // What incumbents hold is reserved before any of them extends, so that
    // an extension can only take what nobody held.
    for c in &incumbents {
        table.add(&c.object, c.served.as_deref().unwrap_or_default());
    }
    let mut on_served: Vec<&Candidate> = Vec::new();
    for c in &incumbents {
        let served = c.served.as_deref().unwrap_or_default();
        let changed = !same(&c.version, served);
        if changed && table.conflicts(&c.object, &c.version).is_empty() {
            table.remove(&c.object, served);
            table.add(&c.object, &c.version);
            out.accepted.insert(c.object.clone(), c.version.clone());
        } else {
            if changed {
                on_served.push(c);
            }
            let served = c.served.clone().unwrap_or_else(|| Arc::from([]));
            out.accepted.insert(c.object.clone(), served);
        }
    }
    // An incumbent kept on its served version may now fit: another one's new
    // version can have released what it wanted. Each switch only releases
    // what the switching object held, so this ends.
    loop {
        let before = on_served.len();
        on_served.retain(|c| {
            if !table.conflicts(&c.object, &c.version).is_empty() {
                return true;
            }
            table.remove(&c.object, c.served.as_deref().unwrap_or_default());
            table.add(&c.object, &c.version);
            out.accepted.insert(c.object.clone(), c.version.clone());
            false
        });
        if on_served.len() == before {
            break;
        }
    }
    for c in on_served {
        let conflicts = table.conflicts(&c.object, &c.version);
        out.errors.push(refusal(
            c,
            conflicts,
            Refusal::KeepsApplied {
                object: c.object.clone(),
            },
        ));
    }

    for c in &newcomers {
        let conflicts = table.conflicts(&c.object, &c.version);
        if conflicts.is_empty() {
            table.add(&c.object, &c.version);
            out.accepted.insert(c.object.clone(), c.version.clone());
        } else {
            // Say which rule decided: history, or (without any) name order.
            let first_come = conflicts
                .iter()
                .any(|(_, h)| incumbent_names.contains(h.as_str()));
            out.errors.push(refusal(
                c,
                conflicts,
                Refusal::NotApplied {
                    object: c.object.clone(),
                    first_come,
                },
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The errors as logged.
    fn lines(errors: &[FileError]) -> Vec<String> {
        errors.iter().map(|e| e.to_string()).collect()
    }
    use crate::config_files::parse_virtual_server;

    /// One version: every VIP × every TCP port, to the given backends.
    /// Built through validation (not as a literal) so that it stays valid
    /// whatever fields `Service` grows.
    fn version(
        object: &str,
        vips: &[[u8; 4]],
        ports: &[u16],
        backends: &[[u8; 4]],
    ) -> Vec<Service> {
        let list = |items: Vec<String>| items.join(", ");
        let (namespace, name) = object.split_once('/').unwrap();
        let yaml = format!(
            "apiVersion: ballast.dev/v1alpha1\nkind: VirtualServer\n\
             metadata: {{name: {name}, namespace: {namespace}}}\n\
             spec:\n  addresses: [{}]\n  ports: [{}]\n  backends: {{static: [{}]}}\n",
            list(
                vips.iter()
                    .map(|v| Ipv4Addr::from(*v).to_string())
                    .collect()
            ),
            list(ports.iter().map(|p| format!("{{port: {p}}}")).collect()),
            list(
                backends
                    .iter()
                    .map(|b| format!("{{address: {}}}", Ipv4Addr::from(*b)))
                    .collect()
            ),
        );
        crate::standalone::entries::validate(&parse_virtual_server(&yaml).unwrap()).unwrap()
    }

    fn new(object: &str, v: Vec<Service>) -> Candidate {
        Candidate {
            object: object.into(),
            source: format!("{}.yaml#1", object.rsplit('/').next().unwrap()),
            version: v.into(),
            served: None,
        }
    }

    fn held(object: &str, v: Vec<Service>, served: Vec<Service>) -> Candidate {
        Candidate {
            served: Some(served.into()),
            ..new(object, v)
        }
    }

    const VIP: [u8; 4] = [203, 0, 113, 10];
    const VIP2: [u8; 4] = [203, 0, 113, 11];
    const B1: [u8; 4] = [198, 51, 100, 11];
    const B2: [u8; 4] = [198, 51, 100, 12];

    fn names(a: &Assignment) -> Vec<&str> {
        a.accepted.keys().map(String::as_str).collect()
    }

    #[test]
    fn the_object_serving_keeps_its_key_against_an_earlier_name() {
        let web = version("default/web", &[VIP], &[80], &[B1]);
        let a = assign(vec![
            held("default/web", web.clone(), web.clone()),
            new("default/aaa", version("default/aaa", &[VIP], &[80], &[B2])),
        ]);
        assert_eq!(names(&a), ["default/web"]);
        assert_eq!(a.accepted["default/web"][..], web[..]);
        assert_eq!(
            a.errors,
            [FileError::Contested {
                document: "aaa.yaml#1".into(),
                error: ValidationError {
                    object: "default/aaa".into(),
                    errors: vec![FieldError {
                        field: "spec.addresses[0]".into(),
                        reason: "203.0.113.10:80/TCP is held by default/web".into(),
                    }],
                },
                outcome: Refusal::NotApplied {
                    object: "default/aaa".into(),
                    first_come: true,
                },
            }]
        );
        assert_eq!(
            lines(&a.errors),
            [
                "aaa.yaml#1: default/aaa: spec.addresses[0]: 203.0.113.10:80/TCP is held by \
              default/web; default/aaa is not applied (first come: what an object already \
              serves stays with it)"
            ]
        );
    }

    #[test]
    fn cold_start_goes_by_name_whatever_the_input_order() {
        let aaa = new("default/aaa", version("default/aaa", &[VIP], &[80], &[B2]));
        let web = new("default/web", version("default/web", &[VIP], &[80], &[B1]));
        for input in [
            vec![aaa.clone(), web.clone()],
            vec![web.clone(), aaa.clone()],
        ] {
            let a = assign(input);
            assert_eq!(names(&a), ["default/aaa"]);
            assert_eq!(a.errors.len(), 1);
            assert_eq!(
                lines(&a.errors),
                [
                    "web.yaml#1: default/web: spec.addresses[0]: 203.0.113.10:80/TCP is held by \
                  default/aaa; default/web is not applied (nothing held it before, so the first \
                  by name gets it)"
                ]
            );
        }
    }

    #[test]
    fn a_refused_object_holds_nothing() {
        // b loses 80 to a, so it is refused whole, and c gets :443, which
        // b wanted too, rather than losing it to an object not served.
        let a = assign(vec![
            new("default/a", version("default/a", &[VIP], &[80], &[B1])),
            new("default/b", version("default/b", &[VIP], &[80, 443], &[B1])),
            new("default/c", version("default/c", &[VIP], &[443], &[B2])),
        ]);
        assert_eq!(names(&a), ["default/a", "default/c"]);
        assert_eq!(a.errors.len(), 1, "{:?}", a.errors);
    }

    #[test]
    fn an_incumbent_extension_onto_a_held_key_keeps_the_served_version() {
        // z-api holds :81; a-web (earlier name) grows to want :81 too. The
        // reservation keeps :81 with z-api although a-web is looked at first.
        let web = version("default/a-web", &[VIP], &[80], &[B1]);
        let api = version("default/z-api", &[VIP], &[81], &[B2]);
        let a = assign(vec![
            held(
                "default/a-web",
                version("default/a-web", &[VIP], &[80, 81], &[B1]),
                web.clone(),
            ),
            held("default/z-api", api.clone(), api.clone()),
        ]);
        assert_eq!(a.accepted["default/a-web"][..], web[..]);
        assert_eq!(a.accepted["default/z-api"][..], api[..]);
        assert_eq!(
            lines(&a.errors),
            [
                "a-web.yaml#1: default/a-web: spec.addresses[0]: 203.0.113.10:81/TCP is held by \
              default/z-api; default/a-web keeps the version already applied"
            ]
        );
    }

    #[test]
    fn a_key_released_in_the_same_round_is_taken_by_an_incumbent() {
        // a-api moves from :81 to :82 while z-web extends onto :81.
        let a = assign(vec![
            held(
                "default/a-api",
                version("default/a-api", &[VIP], &[82], &[B2]),
                version("default/a-api", &[VIP], &[81], &[B2]),
            ),
            held(
                "default/z-web",
                version("default/z-web", &[VIP], &[80, 81], &[B1]),
                version("default/z-web", &[VIP], &[80], &[B1]),
            ),
        ]);
        assert!(a.errors.is_empty(), "{:?}", a.errors);
        assert_eq!(a.accepted["default/z-web"].len(), 2);
        // And z-web got it even in the order where it is looked at first.
        let a = assign(vec![
            held(
                "default/a-web",
                version("default/a-web", &[VIP], &[80, 81], &[B1]),
                version("default/a-web", &[VIP], &[80], &[B1]),
            ),
            held(
                "default/z-api",
                version("default/z-api", &[VIP], &[82], &[B2]),
                version("default/z-api", &[VIP], &[81], &[B2]),
            ),
        ]);
        assert!(a.errors.is_empty(), "{:?}", a.errors);
        assert_eq!(a.accepted["default/a-web"].len(), 2);
    }

    #[test]
    fn a_backend_that_is_another_objects_vip_is_refused_either_way() {
        // aaa forwards to VIP2; web serves VIP2. Whoever came first stays.
        let aaa = version("default/aaa", &[VIP], &[80], &[B1, VIP2]);
        let web = version("default/web", &[VIP2], &[80], &[B2]);
        let a = assign(vec![
            held("default/web", web.clone(), web.clone()),
            new("default/aaa", aaa.clone()),
        ]);
        assert_eq!(names(&a), ["default/web"]);
        assert!(
            a.errors[0].to_string().contains(
                "default/aaa: spec.backends.static[1].address: 203.0.113.11 is a VIP of \
                 default/web"
            ),
            "{:?}",
            a.errors
        );
        let a = assign(vec![
            held("default/aaa", aaa.clone(), aaa.clone()),
            new("default/web", web.clone()),
        ]);
        assert_eq!(names(&a), ["default/aaa"]);
        assert!(
            a.errors[0].to_string().contains(
                "default/web: spec.addresses[0]: 203.0.113.11 is a backend of default/aaa"
            ),
            "{:?}",
            a.errors
        );
    }

    #[test]
    fn sharing_a_vip_on_other_ports_or_a_backend_is_fine() {
        let a = assign(vec![
            new("default/a", version("default/a", &[VIP], &[80], &[B1])),
            new("default/b", version("default/b", &[VIP], &[443], &[B1])),
        ]);
        assert!(a.errors.is_empty(), "{:?}", a.errors);
        assert_eq!(a.accepted.len(), 2);
    }

    #[test]
    fn the_second_vip_is_named_by_its_index() {
        let a = assign(vec![
            new("default/a", version("default/a", &[VIP2], &[80], &[B1])),
            new(
                "default/b",
                version("default/b", &[VIP, VIP2], &[80], &[B1]),
            ),
        ]);
        assert!(
            a.errors[0]
                .to_string()
                .contains("default/b: spec.addresses[1]: 203.0.113.11:80/TCP is held"),
            "{:?}",
            a.errors
        );
    }
}

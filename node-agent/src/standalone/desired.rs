//! Pure: from the documents read this time (and what the previous round
//! decided) to the services to program, the errors and the warnings to
//! report. An object whose new version is invalid keeps serving its last
//! valid version: a typo must not take a VIP down. Who gets a contested
//! address is decided by [`super::ownership`] (first come).
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use ballast_api::{FieldError, ValidationError, VirtualServer};

use super::change::{self, ServedChange};
use super::entries;
use super::file_errors::{FileError, FileWarning};
use super::ownership::{self, Candidate, Version};
use crate::config_files::Document;
use crate::core::{Announcements, NodeDesired, Service, Settings};

/// TCP MSS that leaves room for the 8-byte TOA option on a 1500-byte MTU.
pub const DEFAULT_TOA_MSS: u16 = 1500 - 40 - 8;

/// What one round of [`resolve`] leaves for the next.
#[derive(Debug, Default, Clone)]
pub struct LastGood {
    /// object ("namespace/name") -> its last valid version
    objects: BTreeMap<String, Valid>,
    /// object -> the services the last round gave it (what is programmed):
    /// the history first-come ownership is decided by.
    served: BTreeMap<String, Version>,
    /// The SNAT addresses the versions in `objects` were checked against.
    snat: Vec<Ipv4Addr>,
    /// The documents the last round resolved, and the errors it found: a
    /// round with the same documents (same sources, the same parsed
    /// allocations from the parse cache) decides the same, so it is not
    /// resolved again.
    documents: Vec<Document>,
    errors: Vec<FileError>,
    /// Warnings already logged, per object, with the version they were
    /// logged for: logged again only once that object changes.
    warned: BTreeMap<String, Warned>,
    /// Whether this agent runs in a hot-standby group (`--peers`): only
    /// then does `announce.l2.priority` mean something. Fixed for the
    /// process, so cached verdicts stay right.
    standby: bool,
}

/// An object's last valid version and where it came from.
#[derive(Debug, Clone)]
struct Valid {
    /// `file#N`
    source: String,
    /// The document it was made from; None when it is a fallback kept
    /// while the document is broken. The same document (the parse cache
    /// hands back the same allocation for unchanged text) makes the same
    /// version: it is not validated again.
    from: Option<Arc<VirtualServer>>,
    version: Version,
}

#[derive(Debug, Default, Clone)]
struct Warned {
    /// The document last seen for the object (shared with the parse
    /// cache: an unchanged document is the same allocation).
    seen: Option<Arc<VirtualServer>>,
    messages: BTreeSet<String>,
}

/// What one reload of the files yields: what it changes in the services
/// programmed (the services themselves are [`LastGood::services`]), and
/// what to report.
#[derive(Debug, Default)]
pub struct ReloadOutcome {
    pub change: ServedChange,
    pub errors: Vec<FileError>,
    /// Problems that do not stop an object from being served, each reported
    /// once per version of the object.
    pub warnings: Vec<FileWarning>,
}

impl Warned {
    /// The object's document this round is `vs` (its first, when it is
    /// duplicated): another document than the one seen (not an equal one
    /// read again) makes its warnings new.
    fn saw(&mut self, vs: Option<&Arc<VirtualServer>>) {
        let same = match (&self.seen, vs) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
            (a, b) => a.is_none() && b.is_none(),
        };
        if !same {
            self.seen = vs.cloned();
            self.messages.clear();
        }
    }
}

/// Of `warnings` (object, document, warning), those not yet logged for
/// their object's current document; marks them logged.
fn not_yet_logged(
    warned: &mut BTreeMap<String, Warned>,
    warnings: Vec<(String, String, FieldError)>,
) -> Vec<FileWarning> {
    let mut out = Vec::new();
    for (object, document, warning) in warnings {
        let key = format!("{}: {}", warning.field, warning.reason);
        if warned
            .entry(object.clone())
            .or_default()
            .messages
            .insert(key)
        {
            out.push(FileWarning {
                document,
                object,
                warning,
            });
        }
    }
    out
}

impl LastGood {
    /// An empty history for an agent that is (`standby`) or is not in a
    /// hot-standby group.
    pub fn new(standby: bool) -> Self {
        LastGood {
            standby,
            ..Default::default()
        }
    }

    /// Every service the last round serves, by object.
    pub fn services(&self) -> impl Iterator<Item = &Service> {
        self.served.values().flat_map(|v| v.iter())
    }

    /// `vs`'s version when it is the document `obj`'s last valid version
    /// was made from, checked against the same SNAT addresses.
    fn unchanged(&self, obj: &str, vs: &Arc<VirtualServer>, snat: &[Ipv4Addr]) -> Option<&Valid> {
        let valid = self.objects.get(obj)?;
        let from = valid.from.as_ref()?;
        (Arc::ptr_eq(from, vs) && self.snat == snat).then_some(valid)
    }
}

fn file_of(source: &str) -> &str {
    source.rsplit_once('#').map_or(source, |(f, _)| f)
}

/// `namespace/name` as validation names it; `None` without a name (then
/// validation reports `metadata.name`, and the document is nobody's
/// duplicate).
fn object_of(vs: &VirtualServer) -> Option<String> {
    ballast_api::object_key(vs)
}

/// Rules that need this agent's settings: a VIP or a backend that is one of
/// its SNAT addresses would make FullNAT replies and new flows
/// indistinguishable, or forward the traffic back to the director.
fn check_node(specs: &[Service], snat: &[Ipv4Addr], standby: bool) -> Result<(), ValidationError> {
    let mut errors = Vec::new();
    if !standby && specs.iter().any(|s| s.l2_priority.is_some()) {
        errors.push(FieldError {
            field: "spec.announce.l2.priority".into(),
            reason: "this agent runs without --peers, so it announces every VIP it serves; \
                     priority orders the nodes of a hot-standby group (--node-name, --peers)"
                .into(),
        });
    }
    let mut vips: Vec<Ipv4Addr> = Vec::new();
    for s in specs {
        if !vips.contains(&s.vip) {
            vips.push(s.vip);
        }
    }
    for (i, vip) in vips.iter().enumerate() {
        if snat.contains(vip) {
            errors.push(FieldError {
                field: format!("spec.addresses[{i}]"),
                reason: format!(
                    "{vip} is a SNAT address of this agent (--snat-address): a VIP must differ \
                     from the addresses FullNAT flows leave with"
                ),
            });
        }
    }
    for (i, b) in specs
        .first()
        .map_or(&[][..], |s| &s.backends)
        .iter()
        .enumerate()
    {
        if snat.contains(&b.address) {
            errors.push(FieldError {
                field: format!("spec.backends.static[{i}].address"),
                reason: format!(
                    "{} is a SNAT address of this agent (--snat-address): the director would \
                     forward to itself",
                    b.address
                ),
            });
        }
    }
    match (errors.is_empty(), specs.first()) {
        (false, Some(s)) => Err(ValidationError {
            object: s.object.clone(),
            errors,
        }),
        _ => Ok(()),
    }
}

/// Warnings about a document itself: fields with no effect in standalone
/// mode, keys nothing reads.
fn document_warnings(vs: &VirtualServer, doc: &Document) -> Vec<FieldError> {
    let mut out = Vec::new();
    if !vs.spec.node_selector.is_empty() {
        out.push(FieldError {
            field: "spec.nodeSelector".into(),
            reason: "ignored in standalone mode: this agent serves the object on its own \
                     interface (the selector is a placement hint for the controller)"
                .into(),
        });
    }
    for k in &doc.ignored_keys {
        out.push(FieldError {
            field: k.clone(),
            reason: "unknown key, ignored".into(),
        });
    }
    out
}

/// Warnings about the version an object is served with: clients of a
/// service with nothing to forward to are refused.
fn served_warnings(version: &[Service]) -> Vec<FieldError> {
    let Some(first) = version.first() else {
        return Vec::new();
    };
    let refused = "new clients are refused (TCP reset, ICMP port unreachable)";
    if first.backends.is_empty() {
        vec![FieldError {
            field: "spec.backends.static".into(),
            reason: format!("is empty: {refused} until a backend is listed"),
        }]
    } else if first.backends.iter().all(|b| b.weight == 0) {
        vec![FieldError {
            field: "spec.backends.static".into(),
            reason: format!(
                "every backend has weight 0 (draining): established flows continue, {refused}"
            ),
        }]
    } else {
        Vec::new()
    }
}

/// Validates every document, falls back to last-good versions, refuses
/// duplicates, and gives each contested address to the object that holds it
/// (see [`super::ownership`]). `snat` are this agent's SNAT addresses.
pub fn resolve(docs: &[Document], last: &mut LastGood, snat: &[Ipv4Addr]) -> ReloadOutcome {
    if last.snat == snat && same_documents(&last.documents, docs) {
        // Warnings were reported once; errors are reported every round.
        return ReloadOutcome {
            errors: last.errors.clone(),
            ..Default::default()
        };
    }
    if let Some(out) = edited::resolve_edited(docs, last, snat) {
        return out;
    }
    let out = resolve_anew(docs, last, snat);
    last.documents = docs.to_vec();
    last.errors = out.errors.clone();
    out
}

/// Whether two rounds read the same documents (see [`same_document`]).
fn same_documents(a: &[Document], b: &[Document]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same_document(a, b))
}

/// The same source and the same parsed allocation (or the same error).
/// Equal objects parsed apart are not the same here: they are resolved
/// again, at worst.
fn same_document(a: &Document, b: &Document) -> bool {
    a.source == b.source
        && a.ignored_keys == b.ignored_keys
        && match (&a.parsed, &b.parsed) {
            (Ok(a), Ok(b)) => Arc::ptr_eq(a, b),
            (Err(a), Err(b)) => a == b,
            _ => false,
        }
}

fn resolve_anew(docs: &[Document], last: &mut LastGood, snat: &[Ipv4Addr]) -> ReloadOutcome {
    let mut out = ReloadOutcome::default();
    let mut broken_files = Vec::new();
    // object -> its documents this round, in file order
    let mut by_object: BTreeMap<String, Vec<(&Document, &Arc<VirtualServer>)>> = BTreeMap::new();
    for d in docs {
        match &d.parsed {
            Err(e) => {
                out.errors.push(FileError::Unparsable {
                    document: d.source.clone(),
                    message: e.clone(),
                });
                broken_files.push(file_of(&d.source).to_string());
            }
            Ok(vs) => match object_of(vs) {
                Some(obj) => by_object.entry(obj).or_default().push((d, vs)),
                None => {
                    if let Err(error) = entries::validate(vs) {
                        out.errors.push(FileError::Invalid {
                            document: d.source.clone(),
                            error,
                            kept: false,
                        });
                    }
                }
            },
        }
    }

    // object -> the version it asks for this round
    let mut current: BTreeMap<String, Valid> = BTreeMap::new();
    let mut warnings: Vec<(String, String, FieldError)> = Vec::new();
    for (obj, found) in &by_object {
        // Cloned only when needed: most objects are valid.
        let kept = || {
            last.objects.get(obj).map(|v| Valid {
                from: None,
                ..v.clone()
            })
        };
        for (d, vs) in found {
            for w in document_warnings(vs, d) {
                warnings.push((obj.clone(), d.source.clone(), w));
            }
        }
        if let [(d, vs)] = found.as_slice() {
            if let Some(valid) = last.unchanged(obj, vs, snat) {
                let valid = Valid {
                    source: d.source.clone(),
                    from: valid.from.clone(),
                    version: valid.version.clone(),
                };
                current.insert(obj.clone(), valid);
                continue;
            }
            let checked = entries::validate(vs)
                .and_then(|specs| check_node(&specs, snat, last.standby).map(|()| specs));
            match checked {
                Ok(specs) => {
                    let valid = Valid {
                        source: d.source.clone(),
                        from: Some(Arc::clone(vs)),
                        version: specs.into(),
                    };
                    current.insert(obj.clone(), valid);
                }
                Err(error) => {
                    let kept = kept();
                    out.errors.push(FileError::Invalid {
                        document: d.source.clone(),
                        error,
                        kept: kept.is_some(),
                    });
                    if let Some(k) = kept {
                        current.insert(obj.clone(), k);
                    }
                }
            }
        } else {
            // Which one is meant cannot be told: apply neither, so that
            // adding a copy never changes what serves.
            let kept = kept();
            out.errors.push(FileError::DefinedTwice {
                object: obj.clone(),
                documents: found.iter().map(|(d, _)| d.source.clone()).collect(),
                kept: kept.is_some(),
            });
            if let Some(k) = kept {
                current.insert(obj.clone(), k);
            }
        }
    }
    // A document that does not even parse cannot be matched to an object:
    // keep whatever last came from its file.
    for (obj, valid) in &last.objects {
        if broken_files.iter().any(|f| f == file_of(&valid.source)) && !by_object.contains_key(obj)
        {
            current.insert(obj.clone(), valid.clone());
        }
    }

    let candidates = current
        .iter()
        .map(|(obj, valid)| Candidate {
            object: obj.clone(),
            source: valid.source.clone(),
            version: valid.version.clone(),
            served: last.served.get(obj).cloned(),
        })
        .collect();
    let assigned = ownership::assign(candidates);
    out.errors.extend(assigned.errors);
    for (obj, version) in &assigned.accepted {
        let source = current.get(obj).map_or("", |v| v.source.as_str());
        for w in served_warnings(version) {
            warnings.push((obj.clone(), source.to_string(), w));
        }
    }
    out.change = change::between(&last.served, &assigned.accepted);
    out.warnings = warn_once(&mut last.warned, &by_object, &current, warnings);
    last.served = assigned.accepted;
    last.objects = current;
    last.snat = snat.to_vec();
    out
}

/// Keeps the warnings not yet logged for the current version of their
/// object, and forgets objects that are gone.
fn warn_once(
    warned: &mut BTreeMap<String, Warned>,
    by_object: &BTreeMap<String, Vec<(&Document, &Arc<VirtualServer>)>>,
    current: &BTreeMap<String, Valid>,
    warnings: Vec<(String, String, FieldError)>,
) -> Vec<FileWarning> {
    warned.retain(|obj, _| by_object.contains_key(obj) || current.contains_key(obj));
    for (obj, found) in by_object {
        let first = found.first().map(|(_, vs)| *vs);
        warned.entry(obj.clone()).or_default().saw(first);
    }
    not_yet_logged(warned, warnings)
}

/// The services resolved from the files as version `version` of the node's
/// desired state: `settings` from the flags, every VIP announced over L2
/// unless `announce` is off (`--no-announce`: another speaker does).
pub fn to_node_desired<'a>(
    version: u64,
    specs: impl IntoIterator<Item = &'a Service>,
    settings: &Settings,
    announce: bool,
) -> NodeDesired {
    let services: Vec<Service> = specs.into_iter().cloned().collect();
    let l2 = if announce {
        services.iter().map(|s| s.vip).collect()
    } else {
        Default::default()
    };
    NodeDesired {
        version,
        settings: settings.clone(),
        services,
        announce: Announcements {
            l2,
            bgp: Default::default(),
        },
    }
}

mod edited;
#[cfg(test)]
mod tests;

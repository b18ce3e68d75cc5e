//! The agent's side of one node's link state, without I/O: what it holds
//! (the last state it applied, canonical, and that state's content hash),
//! what a controller message asks of it, and what it answers once the agent
//! core has applied (or refused) a version.
//!
//! A version is applied as one transaction by the core. This module decides
//! everything around it:
//! - a delta applies only on the version held (`base_version`), else it is
//!   refused naming both versions, and the controller sends a snapshot;
//! - a snapshot of the version already held, with the same content, is
//!   acknowledged without touching the data plane (a controller that resent
//!   it after a restart must not cause a re-apply);
//! - a version whose fields can't be read (see `convert`) is refused whole;
//! - a version applied in part (parts this data plane can't do, or has no
//!   room for) is held — it is what forwards now — and answered with a Nack
//!   naming the parts, with `applied_version` equal to the version, so the
//!   controller knows it is applied except for those.
//!
//! What a delta costs follows what it carries: it is checked against the
//! held state without a copy of it, its hash is the held one moved by the
//! digests of what it replaces and brings (`ballast_proto::digest`), only
//! the services it upserts are converted, and the core gets it as a
//! [`NodeChange`]; the held state takes it in place once the core applied
//! it. One exception keeps reports exact: when the held state or the delta
//! has any part with a problem (refused or skipped), the whole state after
//! the delta is converted and handed over, as a snapshot is, so that every
//! problem is reported where it is in the state.
use ballast_proto::v1::{
    self, AgentMessage, ControllerMessage, agent_message, controller_message::Kind,
};
use ballast_proto::{
    ContentHash, DigestSum, announcements_after, apply_delta, canonicalize, check_delta,
    content_hash_of, find_service, service_digest,
};

use super::convert::{
    ConvertError, Converted, Defaults, ObjectNames, clean_announced, clean_service, clean_settings,
    node_desired, object_name,
};
use super::wire_errors::{nack_parts, service_errors, version_message};
use crate::core::{Announcements, ApplyReport, NodeChange, NodeDesired, Settings};

/// The state the agent forwards with, as it came over the wire.
#[derive(Clone, Debug, PartialEq)]
pub struct Held {
    /// Canonical (see `ballast_proto::canonicalize`), at its version.
    pub state: v1::NodeState,
    pub hash: ContentHash,
    /// How apply errors name its objects on the wire.
    pub objects: ObjectNames,
    /// The services' digest sum, which `hash` is made of.
    sum: DigestSum,
    /// Its settings and announcements as converted, when no part of it
    /// has a problem: what a delta's fast path builds on.
    clean: Option<(Settings, Announcements)>,
}

impl Held {
    /// `state` (canonical) as held, with the names of its objects; no
    /// delta takes the fast path on it before a version is applied on it.
    pub fn new(state: v1::NodeState, objects: ObjectNames) -> Held {
        let sum = DigestSum::of(&state.services);
        Held {
            hash: hash_of(&state, &sum),
            state,
            objects,
            sum,
            clean: None,
        }
    }

    pub fn version(&self) -> u64 {
        self.state.version
    }
}

fn hash_of(state: &v1::NodeState, sum: &DigestSum) -> ContentHash {
    content_hash_of(state.settings.as_ref(), state.announcements.as_ref(), sum)
}

/// What the core is handed for one version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Work {
    /// The whole state (snapshots, and deltas on or with parts that have
    /// problems).
    Whole(NodeDesired),
    /// A change to the version the core applied (the held one).
    Change(NodeChange),
}

impl Work {
    pub fn version(&self) -> u64 {
        match self {
            Work::Whole(d) => d.version,
            Work::Change(c) => c.version,
        }
    }
}

/// How the held state becomes the candidate's once it is applied.
#[derive(Debug)]
enum Next {
    /// Replaced whole.
    State(Box<Held>),
    /// A delta applied in place.
    Delta {
        delta: Box<v1::Delta>,
        sum: DigestSum,
        hash: ContentHash,
        /// Its settings and announcements as converted, where it changes
        /// them.
        settings: Option<Settings>,
        announce: Option<Announcements>,
        /// Objects it upserts, by name.
        named: Vec<(String, v1::ObjectRef)>,
    },
}

/// A version to hand to the agent core, with what is needed to answer for
/// it afterwards.
#[derive(Debug)]
pub struct Candidate {
    pub version: u64,
    /// What the core applies: taken out with [`Candidate::take_work`].
    pub work: Work,
    next: Next,
    /// Skipped parts, reported in the answer.
    unsupported: Vec<ConvertError>,
}

impl Candidate {
    /// The work for the core, leaving an empty change in its place (the
    /// candidate keeps what the answer needs).
    pub fn take_work(&mut self) -> Work {
        std::mem::replace(&mut self.work, Work::Change(NodeChange::default()))
    }
}

/// What to do with a controller message.
#[derive(Debug)]
pub enum Step {
    /// Apply `Candidate::work`, then answer with [`Session::applied`].
    Apply(Box<Candidate>),
    /// Answer at once; the data plane is not touched.
    Answer(AgentMessage),
}

/// The agent's link state.
#[derive(Debug)]
pub struct Session {
    defaults: Defaults,
    held: Option<Held>,
    /// The delta that took the held state from the one before, when it was
    /// taken in place (None: replaced whole): what the state file appends.
    last_delta: Option<Box<v1::Delta>>,
}

impl Session {
    /// `held`: what a previous run of the agent applied (read back from
    /// disk), if anything; its version and hash go into the Hello so that a
    /// controller holding the same content sends nothing.
    pub fn new(defaults: Defaults, held: Option<Held>) -> Self {
        Session {
            defaults,
            held,
            last_delta: None,
        }
    }

    pub fn held(&self) -> Option<&Held> {
        self.held.as_ref()
    }

    /// The delta that took the held state from the one held before it, if
    /// it was taken in place (see [`super::persist::Keeper`]).
    pub fn last_delta(&self) -> Option<&v1::Delta> {
        self.last_delta.as_deref()
    }

    pub fn applied_version(&self) -> u64 {
        self.held.as_ref().map_or(0, Held::version)
    }

    /// The first message of every stream.
    pub fn hello(&self, node_name: &str, agent_version: &str) -> AgentMessage {
        message(agent_message::Kind::Hello(v1::Hello {
            node_name: node_name.to_string(),
            agent_version: agent_version.to_string(),
            applied_version: self.applied_version(),
            applied_hash: self
                .held
                .as_ref()
                .map(|h| h.hash.to_vec())
                .unwrap_or_default(),
        }))
    }

    /// What `msg` asks for.
    pub fn receive(&self, msg: ControllerMessage) -> Step {
        match msg.kind {
            None => {
                Step::Answer(self.refuse(0, "a controller message with neither snapshot nor delta"))
            }
            Some(Kind::Snapshot(mut state)) => {
                canonicalize(&mut state);
                let sum = DigestSum::of(&state.services);
                let hash = hash_of(&state, &sum);
                if let Some(h) = &self.held
                    && h.version() == state.version
                    && h.hash == hash
                {
                    return Step::Answer(ack(h));
                }
                self.whole(state, sum, hash)
            }
            Some(Kind::Delta(delta)) => {
                let applied = self.applied_version();
                if delta.base_version != applied {
                    return Step::Answer(self.refuse(
                        delta.version,
                        &format!(
                            "delta base version {} is not the applied version {applied}",
                            delta.base_version
                        ),
                    ));
                }
                let empty = v1::NodeState::default();
                let base = self.held.as_ref().map_or(&empty, |h| &h.state);
                if let Err(e) = check_delta(base, &delta) {
                    return Step::Answer(self.refuse(delta.version, &e.to_string()));
                }
                if let Some(step) = self.change(&delta) {
                    return step;
                }
                // A part with a problem: the whole state after the delta.
                let mut state = base.clone();
                apply_delta(&mut state, &delta).expect("checked above");
                let sum = DigestSum::of(&state.services);
                let hash = hash_of(&state, &sum);
                self.whole(state, sum, hash)
            }
        }
    }

    /// A checked delta on a held state with no problem, as a change for
    /// the core; None when the delta has a part with a problem (or nothing
    /// is held with its conversion).
    fn change(&self, delta: &v1::Delta) -> Option<Step> {
        let held = self.held.as_ref()?;
        let (_, announce) = held.clean.as_ref()?;
        let mut change = NodeChange {
            version: delta.version,
            ..Default::default()
        };
        let mut sum = held.sum;
        let mut named = Vec::new();
        for s in &delta.upserted {
            let (name, services) = clean_service(s)?;
            if change.objects.contains_key(&name) {
                // Upserted twice (the last wins): rare enough for the
                // whole-state path.
                return None;
            }
            let object = s.object.clone().expect("checked: upserts name objects");
            if let Some(old) = find_service(&held.state, &object) {
                sum.sub(&service_digest(old));
            }
            sum.add(&service_digest(s));
            named.push((name.clone(), object));
            change.objects.insert(name, services);
        }
        for o in &delta.removed {
            sum.sub(&service_digest(find_service(&held.state, o)?));
            change.objects.insert(object_name(o)?, Vec::new());
        }
        if let Some(s) = &delta.settings {
            change.settings = Some(clean_settings(Some(s), &self.defaults)?);
        }
        let touches_announcements = !(delta.l2_added.is_empty()
            && delta.l2_removed.is_empty()
            && delta.bgp_added.is_empty()
            && delta.bgp_removed.is_empty());
        let after;
        let announcements = if touches_announcements {
            let mut announce = announce.clone();
            for (list, added, removed) in [
                (&mut announce.l2, &delta.l2_added, &delta.l2_removed),
                (&mut announce.bgp, &delta.bgp_added, &delta.bgp_removed),
            ] {
                for a in removed {
                    list.remove(&clean_announced(a)?);
                }
                for a in added {
                    list.insert(clean_announced(a)?);
                }
            }
            change.announce = Some(announce);
            after = announcements_after(&held.state, delta);
            after.as_ref()
        } else {
            held.state.announcements.as_ref()
        };
        let wire_settings = delta.settings.as_ref().or(held.state.settings.as_ref());
        let hash = content_hash_of(wire_settings, announcements, &sum);
        let (settings, announce) = (change.settings.clone(), change.announce.clone());
        Some(Step::Apply(Box::new(Candidate {
            version: delta.version,
            work: Work::Change(change),
            next: Next::Delta {
                delta: Box::new(delta.clone()),
                sum,
                hash,
                settings,
                announce,
                named,
            },
            unsupported: Vec::new(),
        })))
    }

    /// A whole state (canonical) as the candidate.
    fn whole(&self, state: v1::NodeState, sum: DigestSum, hash: ContentHash) -> Step {
        let applied = self.applied_version();
        if state.version <= applied {
            return Step::Answer(self.refuse(
                state.version,
                &format!(
                    "version {} is not above the applied version {applied}",
                    state.version
                ),
            ));
        }
        match node_desired(&state, &self.defaults) {
            Err(errors) => {
                let (errors, whole) = nack_parts(&errors);
                Step::Answer(message(agent_message::Kind::Nack(v1::Nack {
                    version: state.version,
                    applied_version: applied,
                    message: join(["nothing was applied: fields cannot be read", &whole]),
                    errors,
                })))
            }
            Ok(Converted {
                desired,
                objects,
                unsupported,
            }) => {
                let clean = unsupported
                    .is_empty()
                    .then(|| (desired.settings.clone(), desired.announce.clone()));
                Step::Apply(Box::new(Candidate {
                    version: state.version,
                    work: Work::Whole(desired),
                    next: Next::State(Box::new(Held {
                        state,
                        hash,
                        objects,
                        sum,
                        clean,
                    })),
                    unsupported,
                }))
            }
        }
    }

    /// The answer for `c` once the core reported on it; holds `c` when it
    /// was applied (wholly or in part).
    pub fn applied(&mut self, c: Candidate, report: &ApplyReport) -> AgentMessage {
        let version = c.version;
        let (mut errors, skipped) = nack_parts(&c.unsupported);
        if report.refused(version) {
            let objects = match &c.next {
                Next::State(h) => h.objects.clone(),
                Next::Delta { delta, named, .. } => {
                    // Rare: a copy of the names, with the delta's.
                    let mut objects = self
                        .held
                        .as_ref()
                        .map(|h| h.objects.clone())
                        .unwrap_or_default();
                    for o in &delta.removed {
                        objects.remove(&object_name(o).unwrap_or_default());
                    }
                    objects.extend(named.iter().cloned());
                    objects
                }
            };
            errors.extend(service_errors(&report.errors, &objects));
            return message(agent_message::Kind::Nack(v1::Nack {
                version,
                applied_version: report.applied_version,
                errors,
                message: join([version_message(&report.errors).as_str(), &skipped]),
            }));
        }
        let (held, last_delta) = match c.next {
            Next::State(h) => (*h, None),
            Next::Delta {
                delta,
                sum,
                hash,
                named,
                settings,
                announce,
            } => {
                let mut h = self
                    .held
                    .take()
                    .expect("a delta's fast path needs a held state");
                apply_delta(&mut h.state, &delta).expect("checked on arrival");
                for o in &delta.removed {
                    h.objects.remove(&object_name(o).unwrap_or_default());
                }
                h.objects.extend(named);
                h.sum = sum;
                h.hash = hash;
                let clean = h
                    .clean
                    .as_mut()
                    .expect("a fast path needs a clean held state");
                if let Some(s) = settings {
                    clean.0 = s;
                }
                if let Some(a) = announce {
                    clean.1 = a;
                }
                (h, Some(delta))
            }
        };
        self.last_delta = last_delta;
        errors.extend(service_errors(&report.errors, &held.objects));
        let answer = if errors.is_empty() && skipped.is_empty() {
            ack(&held)
        } else {
            message(agent_message::Kind::Nack(v1::Nack {
                version,
                applied_version: version,
                errors,
                message: skipped,
            }))
        };
        self.held = Some(held);
        answer
    }

    /// The core failed while writing (a syscall error): nothing new is held.
    pub fn failed(&self, c: &Candidate, error: &str) -> AgentMessage {
        self.refuse(
            c.version,
            &format!("the data plane could not be written: {error}"),
        )
    }

    fn refuse(&self, version: u64, why: &str) -> AgentMessage {
        message(agent_message::Kind::Nack(v1::Nack {
            version,
            applied_version: self.applied_version(),
            errors: Vec::new(),
            message: why.to_string(),
        }))
    }
}

/// The non-empty parts, joined with "; ".
fn join<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

fn ack(h: &Held) -> AgentMessage {
    message(agent_message::Kind::Ack(v1::Ack {
        version: h.version(),
        content_hash: h.hash.to_vec(),
    }))
}

fn message(kind: agent_message::Kind) -> AgentMessage {
    AgentMessage { kind: Some(kind) }
}

#[cfg(test)]
mod tests;

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
use ballast_proto::v1::{
    self, AgentMessage, ControllerMessage, agent_message, controller_message::Kind,
};
use ballast_proto::{ContentHash, apply_delta, canonicalize, content_hash};

use super::convert::{ConvertError, Converted, Defaults, ObjectNames, node_desired};
use super::wire_errors::{nack_parts, service_errors, version_message};
use crate::core::{ApplyReport, NodeDesired};

/// The state the agent forwards with, as it came over the wire.
#[derive(Clone, Debug, PartialEq)]
pub struct Held {
    /// Canonical (see `ballast_proto::canonicalize`), at its version.
    pub state: v1::NodeState,
    pub hash: ContentHash,
    /// How apply errors name its objects on the wire.
    pub objects: ObjectNames,
}

impl Held {
    pub fn version(&self) -> u64 {
        self.state.version
    }
}

/// A version to hand to the agent core, with what is needed to answer for
/// it afterwards.
#[derive(Debug)]
pub struct Candidate {
    pub desired: NodeDesired,
    state: v1::NodeState,
    objects: ObjectNames,
    /// Skipped parts, reported in the answer.
    unsupported: Vec<ConvertError>,
}

/// What to do with a controller message.
#[derive(Debug)]
pub enum Step {
    /// Apply `Candidate::desired`, then answer with [`Session::applied`].
    Apply(Box<Candidate>),
    /// Answer at once; the data plane is not touched.
    Answer(AgentMessage),
}

/// The agent's link state.
#[derive(Debug)]
pub struct Session {
    defaults: Defaults,
    held: Option<Held>,
}

impl Session {
    /// `held`: what a previous run of the agent applied (read back from
    /// disk), if anything; its version and hash go into the Hello so that a
    /// controller holding the same content sends nothing.
    pub fn new(defaults: Defaults, held: Option<Held>) -> Self {
        Session { defaults, held }
    }

    pub fn held(&self) -> Option<&Held> {
        self.held.as_ref()
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
                if let Some(h) = &self.held
                    && h.version() == state.version
                    && h.hash == content_hash(&state)
                {
                    return Step::Answer(ack(h));
                }
                self.candidate(state)
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
                let mut state = match &self.held {
                    Some(h) => h.state.clone(),
                    // Base 0: the empty state.
                    None => v1::NodeState::default(),
                };
                if let Err(e) = apply_delta(&mut state, &delta) {
                    return Step::Answer(self.refuse(delta.version, &e.to_string()));
                }
                self.candidate(state)
            }
        }
    }

    fn candidate(&self, state: v1::NodeState) -> Step {
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
            }) => Step::Apply(Box::new(Candidate {
                desired,
                state,
                objects,
                unsupported,
            })),
        }
    }

    /// The answer for `c` once the core reported on it; holds `c` when it
    /// was applied (wholly or in part).
    pub fn applied(&mut self, c: Candidate, report: &ApplyReport) -> AgentMessage {
        let version = c.state.version;
        let (mut errors, skipped) = nack_parts(&c.unsupported);
        errors.extend(service_errors(&report.errors, &c.objects));
        if report.refused(version) {
            return message(agent_message::Kind::Nack(v1::Nack {
                version,
                applied_version: report.applied_version,
                errors,
                message: join([version_message(&report.errors).as_str(), &skipped]),
            }));
        }
        let held = Held {
            hash: content_hash(&c.state),
            state: c.state,
            objects: c.objects,
        };
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
            c.state.version,
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

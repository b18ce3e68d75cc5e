//! What validation reports: every problem of one object, each at its field,
//! and the accumulator the rules push them into (shared by every rule file,
//! so none of them depends on another).

use std::fmt;

/// A single problem at one field of an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Path in the object, e.g. `spec.ports[1].targetPort`.
    pub field: String,
    pub reason: String,
}

/// Every problem found in one object; validation never stops at the first one
/// so a user fixes a file in one round trip.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError {
    /// `namespace/name`.
    pub object: String,
    pub errors: Vec<FieldError>,
}

impl ValidationError {
    /// One self-contained line per problem, for logs and status messages.
    pub fn lines(&self) -> impl Iterator<Item = String> + '_ {
        self.errors
            .iter()
            .map(|e| format!("{}: {}: {}", self.object, e.field, e.reason))
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.errors.is_empty() {
            return write!(f, "{}: invalid", self.object);
        }
        for (i, line) in self.lines().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            f.write_str(&line)?;
        }
        Ok(())
    }
}

/// The problems found so far; each rule pushes into it and goes on, so that
/// all of them are reported at once.
#[derive(Default)]
pub(crate) struct Errors(pub(crate) Vec<FieldError>);

impl Errors {
    pub(crate) fn push(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            reason: reason.into(),
        });
    }
}

//! What a reload of the files reports, typed until it is logged: each names
//! the document (`file#N`) and object it is about, and what became of the
//! object (kept at its last valid version, or not applied).
use std::fmt;

use ballast_api::{FieldError, ValidationError};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    /// The document is not a VirtualServer (YAML or schema error, as the
    /// parser words it); whatever last came from its file stays.
    #[error("{document}: {message}")]
    Unparsable { document: String, message: String },
    /// The object breaks a rule; `kept`: its last valid version stays.
    #[error("{document}: {error}{}", if *kept { " (keeping its last valid version)" } else { "" })]
    Invalid {
        document: String,
        error: ValidationError,
        kept: bool,
    },
    /// Two documents define the object; neither is applied.
    #[error(
        "{object}: metadata.name: defined more than once, in {}; {}",
        documents.join(" and "),
        if *kept { "neither is applied; its last valid version stays" }
        else { "neither is applied until only one remains" }
    )]
    DefinedTwice {
        object: String,
        documents: Vec<String>,
        kept: bool,
    },
    /// The object wants what another object holds (first come).
    #[error("{document}: {error}; {outcome}")]
    Contested {
        document: String,
        error: ValidationError,
        outcome: Refusal,
    },
}

/// What became of an object refused an address another one holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// It was served before and keeps that version.
    KeepsApplied { object: String },
    /// It is not served. `first_come`: an object that held the address
    /// before keeps it; otherwise the first by name got it.
    NotApplied { object: String, first_come: bool },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::KeepsApplied { object } => {
                write!(f, "{object} keeps the version already applied")
            }
            Refusal::NotApplied { object, first_come } => {
                let why = if *first_come {
                    "first come: what an object already serves stays with it"
                } else {
                    "nothing held it before, so the first by name gets it"
                };
                write!(f, "{object} is not applied ({why})")
            }
        }
    }
}

/// A problem that does not stop an object from being served, reported once
/// per version of the object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{document}: {object}: {}: {}", warning.field, warning.reason)]
pub struct FileWarning {
    pub document: String,
    pub object: String,
    pub warning: FieldError,
}

//! Identity of the objects the controller plans for.

use std::fmt;
use std::sync::Arc;

/// Which resource a frontend comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    VirtualServer,
    Service,
}

/// `Kind namespace/name`: what a status, condition or event is about.
// `Arc<str>`: keys are cloned into every node plan and index, and at 10k
// objects × N nodes string copies dominated planning time.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub kind: Kind,
    pub namespace: Arc<str>,
    pub name: Arc<str>,
}

impl ObjectKey {
    pub fn new(kind: Kind, namespace: &str, name: &str) -> Self {
        ObjectKey {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::VirtualServer => "VirtualServer",
            Kind::Service => "Service",
        };
        write!(f, "{kind} {}/{}", self.namespace, self.name)
    }
}

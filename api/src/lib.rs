//! Ballast resource types shared by the node agent and the controller, plus
//! the validation that turns a `VirtualServer` into data-plane service entries.

pub mod validate;
pub mod virtual_server;

pub use validate::{
    API_VERSION, BackendSpec, FieldError, Forwarding, KIND, Mode, Protocol, ServiceSpec,
    ValidationError, check_conflicts, parse_yaml, validate, validate_standalone, validate_with,
};
pub use virtual_server::{
    Backends, ClientAddressMode, ForwardingMode, Persistence, PortProtocol, ServiceRef,
    StaticBackend, VirtualServer, VirtualServerPort, VirtualServerSpec, VirtualServerStatus,
};

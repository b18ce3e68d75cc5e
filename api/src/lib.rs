//! Ballast resource types shared by the node agent and the controller, plus
//! the validation that turns a `VirtualServer` into data-plane service entries.

pub mod address_pool;
mod checks;
pub mod health;
mod schema;
pub mod validate;
pub mod virtual_server;

pub use address_pool::{AddressPool, AddressPoolSpec, AddressPoolStatus};
pub use health::{HealthCheckSpec, Probe};
pub use validate::{
    API_VERSION, BackendSpec, CheckedBackend, CheckedPort, CheckedSpec, FieldError, Forwarding,
    KIND, Mode, Protocol, ServiceSpec, ValidationError, check, check_conflicts, parse_yaml,
    validate, validate_standalone, validate_with,
};
pub use virtual_server::{
    Announce, BackendCounts, Backends, BgpAnnounce, ClientAddressMode, ForwardingMode, HealthCheck,
    HttpHealthCheck, L2Announce, NodeProgramStatus, Persistence, PortProtocol, ServiceRef,
    StaticBackend, TcpHealthCheck, VirtualServer, VirtualServerPort, VirtualServerSpec,
    VirtualServerStatus,
};

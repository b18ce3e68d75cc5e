//! Ballast resource types shared by the node agent and the controller, plus
//! the validation both apply to a `VirtualServer`.

pub mod address_pool;
pub mod health;
mod schema;
pub mod validate;
pub mod virtual_server;

pub use address_pool::{AddressPool, AddressPoolSpec, AddressPoolStatus};
pub use health::{HealthCheckSpec, Probe};
pub use validate::{
    CheckedBackend, CheckedPort, CheckedSpec, Families, FieldError, Forwarding, Protocol,
    ValidationContext, ValidationError, check, object_key,
};
pub use virtual_server::{
    API_VERSION, Announce, BackendCounts, Backends, BgpAnnounce, ClientAddressMode,
    DEFAULT_L2_PRIORITY, ForwardingMode, HealthCheck, HttpHealthCheck, KIND, L2Announce,
    NodeProgramStatus, Persistence, PortProtocol, ServiceRef, StaticBackend, TcpHealthCheck,
    UdpHealthCheck, VirtualServer, VirtualServerPort, VirtualServerSpec, VirtualServerStatus,
};

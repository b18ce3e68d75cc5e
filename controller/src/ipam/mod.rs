//! Address management: which VIPs each frontend gets, from which pools, and
//! who may share an address.

mod allocate;
mod pool;

pub use allocate::{AddressProblem, Allocation, Allocations, allocate};
pub use pool::{IpRange, Pool};

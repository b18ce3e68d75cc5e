//! The controller's Kubernetes side: reflectors, leader election, status
//! writes, events, the loop that ties them to the pure planner, and the
//! link's certificates when the controller issues them (`tls_bootstrap`).

pub mod crd_check;
pub mod leader;
pub mod programmed;
pub mod run;
pub mod settle;
pub mod status;
pub mod status_passes;
pub mod stores;
pub mod tls_bootstrap;
pub mod unchanged;
pub mod writer;

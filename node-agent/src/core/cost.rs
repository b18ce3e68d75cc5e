//! What one [`super::Agent::apply`] cost, phase by phase, and what it
//! wrote: the scale benchmark prints it, and tests check through it that
//! a version that changes nothing writes nothing.
use std::time::Duration;

use crate::dataplane;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyPhases {
    /// Whole-version validation.
    pub validate: Duration,
    /// Lowering to the data plane's services and checks, and the health
    /// checker's targets.
    pub lower: Duration,
    /// Health verdicts applied (DOWN backends at weight 0).
    pub health: Duration,
    /// Planning and map writes.
    pub dataplane: dataplane::ApplyCost,
    /// Building the inventory, and writing it when it changed.
    pub inventory: Duration,
    pub inventory_written: bool,
}

impl ApplyPhases {
    pub fn total(&self) -> Duration {
        let d = &self.dataplane;
        self.validate + self.lower + self.health + d.plan + d.neighbours + d.writes + self.inventory
    }
}

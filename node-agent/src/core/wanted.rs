//! Pure: the applied version as the data plane takes it, per data-plane
//! key: each service lowered (see [`super::lower`]), its health check, its
//! name, and, for a checked service with a DOWN backend, what is programmed
//! instead (that backend at weight 0, see `health`). Kept per key so that a
//! version, or a health verdict, costs what it changes: a [`WantedChange`]
//! names the keys it touches and what each becomes, the plan reads the
//! state through it ([`View`]) and plans those keys only, and it is
//! committed once the maps hold it (dropped if writing them failed).
use std::collections::{BTreeMap, BTreeSet};

use ballast_api::HealthCheckSpec;

use super::held::{HeldDesired, NodeChange};
use super::lower;
use super::report::ServiceRef;
use crate::abi::{self, SvcKey};
use crate::dataplane::{DesiredByKey, DesiredService};
use crate::health::{self, ServiceChecks, Target, Verdicts};

/// What one key is wanted as.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    lowered: DesiredService,
    check: Option<HealthCheckSpec>,
    name: ServiceRef,
    /// Health applied, when that changes it.
    down: Option<DesiredService>,
}

#[derive(Debug, Default)]
pub struct Wanted {
    lowered: BTreeMap<SvcKey, DesiredService>,
    checks: ServiceChecks,
    names: BTreeMap<SvcKey, ServiceRef>,
    down: BTreeMap<SvcKey, DesiredService>,
}

/// The keys one version (or one health verdict) touches, and what each
/// becomes (None: no longer wanted).
#[derive(Debug, Default)]
pub struct WantedChange {
    entries: BTreeMap<SvcKey, Option<Entry>>,
}

impl WantedChange {
    pub fn keys(&self) -> BTreeSet<SvcKey> {
        self.entries.keys().copied().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Names of the services that have backends for new flows as
    /// configured but none once health is applied (all DOWN), for a warning.
    pub fn without_backends(&self) -> Vec<&str> {
        self.entries
            .values()
            .flatten()
            .filter(|e| {
                e.lowered.backends.iter().any(|b| b.weight > 0)
                    && e.down
                        .as_ref()
                        .is_some_and(|d| d.backends.iter().all(|b| b.weight == 0))
            })
            .map(|e| e.lowered.name.as_str())
            .collect()
    }
}

fn svc_key(s: &super::Service) -> SvcKey {
    SvcKey {
        vip: abi::be_addr(s.vip),
        port: abi::be_port(s.port),
        proto: lower::protocol_number(s.protocol),
        pad: 0,
    }
}

/// The data-plane key of a health-check key.
fn key_of(&(vip, port, proto): &health::ServiceKey) -> SvcKey {
    SvcKey {
        vip: abi::be_addr(vip),
        port: abi::be_port(port),
        proto,
        pad: 0,
    }
}

fn health_key(k: &SvcKey) -> health::ServiceKey {
    (abi::addr_of_be(k.vip), u16::from_be(k.port), k.proto)
}

/// Every key of a VIP (keys order by VIP first).
fn vip_range(vip: std::net::Ipv4Addr) -> std::ops::RangeInclusive<SvcKey> {
    let vip = abi::be_addr(vip);
    SvcKey {
        vip,
        port: 0,
        proto: 0,
        pad: 0,
    }..=SvcKey {
        vip,
        port: u16::MAX,
        proto: u8::MAX,
        pad: u8::MAX,
    }
}

impl Wanted {
    /// What the keys `c` touches become: the services of the objects it
    /// names (old keys out, new keys in) and, when the announcements
    /// change, the services of every VIP whose announcement flips. Called
    /// on the state before `c` is committed to `held`.
    pub fn change(
        &self,
        held: &HeldDesired,
        c: &NodeChange,
        toa_mss: u16,
        verdicts: &Verdicts,
    ) -> WantedChange {
        let l2 = &c.announce.as_ref().unwrap_or(held.announce()).l2;
        let mut entries = BTreeMap::new();
        for name in c.objects.keys() {
            for s in held.object(name) {
                entries.insert(svc_key(s), None);
            }
        }
        for s in c.objects.values().flatten() {
            let lowered = lower::lower_service(s, l2.contains(&s.vip), toa_mss);
            let e = entry(lowered, s.health_check.clone(), s.id(), verdicts);
            entries.insert(svc_key(s), Some(e));
        }
        if c.announce.is_some() {
            let flipped = held.announce().l2.symmetric_difference(l2);
            for &vip in flipped {
                for (k, d) in self.lowered.range(vip_range(vip)) {
                    if entries.contains_key(k) {
                        continue;
                    }
                    let lowered = DesiredService {
                        announce: l2.contains(&vip),
                        ..d.clone()
                    };
                    let check = self.checks.get(&health_key(k)).cloned();
                    let e = entry(lowered, check, self.names[k].clone(), verdicts);
                    entries.insert(*k, Some(e));
                }
            }
        }
        WantedChange { entries }
    }

    /// What new health verdicts change: the checked services whose
    /// programmed backends' weights differ from what `verdicts` asks.
    pub fn health_change(&self, verdicts: &Verdicts) -> WantedChange {
        let mut entries = BTreeMap::new();
        for (hk, check) in &self.checks {
            let k = key_of(hk);
            let Some(lowered) = self.lowered.get(&k) else {
                continue;
            };
            let down = health::apply_health_one(lowered, check, verdicts);
            if down.as_ref() != self.down.get(&k) {
                let e = Entry {
                    lowered: lowered.clone(),
                    check: Some(check.clone()),
                    name: self.names[&k].clone(),
                    down,
                };
                entries.insert(k, Some(e));
            }
        }
        WantedChange { entries }
    }

    /// Whether `c` changes what is health checked.
    pub fn checks_change(&self, c: &WantedChange) -> bool {
        c.entries.iter().any(|(k, e)| {
            let before = self
                .checks
                .get(&health_key(k))
                .map(|check| (check, &self.lowered[k].backends));
            let after = e
                .as_ref()
                .and_then(|e| e.check.as_ref().map(|check| (check, &e.lowered.backends)));
            before != after
        })
    }

    pub fn commit(&mut self, c: WantedChange) {
        for (k, e) in c.entries {
            let hk = health_key(&k);
            match e {
                None => {
                    self.lowered.remove(&k);
                    self.checks.remove(&hk);
                    self.names.remove(&k);
                    self.down.remove(&k);
                }
                Some(e) => {
                    match e.check {
                        Some(check) => self.checks.insert(hk, check),
                        None => self.checks.remove(&hk),
                    };
                    match e.down {
                        Some(d) => self.down.insert(k, d),
                        None => self.down.remove(&k),
                    };
                    self.names.insert(k, e.name);
                    self.lowered.insert(k, e.lowered);
                }
            }
        }
    }

    /// The state with `c` over it, as the plan reads it.
    pub fn view<'a>(&'a self, c: &'a WantedChange) -> View<'a> {
        View { base: self, c }
    }

    /// Every service, lowered, as configured (by key).
    pub fn lowered(&self) -> impl Iterator<Item = &DesiredService> {
        self.lowered.values()
    }

    pub fn len(&self) -> usize {
        self.lowered.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lowered.is_empty()
    }

    pub fn checks(&self) -> &ServiceChecks {
        &self.checks
    }

    pub fn names(&self) -> &BTreeMap<SvcKey, ServiceRef> {
        &self.names
    }

    /// Every (backend, check) to probe; a backend shared by several
    /// services with the same check appears once.
    pub fn targets(&self) -> BTreeSet<Target> {
        let mut out = BTreeSet::new();
        for (hk, check) in &self.checks {
            for b in self
                .lowered
                .get(&key_of(hk))
                .map_or(&[][..], |d| &d.backends)
            {
                out.insert(health::target_of(b.addr, b.port, check));
            }
        }
        out
    }
}

fn entry(
    lowered: DesiredService,
    check: Option<HealthCheckSpec>,
    name: ServiceRef,
    verdicts: &Verdicts,
) -> Entry {
    let down = check
        .as_ref()
        .and_then(|c| health::apply_health_one(&lowered, c, verdicts));
    Entry {
        lowered,
        check,
        name,
        down,
    }
}

/// [`Wanted`] with a change over it: what the plan programs.
pub struct View<'a> {
    base: &'a Wanted,
    c: &'a WantedChange,
}

impl DesiredByKey for View<'_> {
    fn get(&self, key: &SvcKey) -> Option<&DesiredService> {
        match self.c.entries.get(key) {
            Some(e) => e.as_ref().map(|e| e.down.as_ref().unwrap_or(&e.lowered)),
            None => self
                .base
                .down
                .get(key)
                .or_else(|| self.base.lowered.get(key)),
        }
    }
}

#[cfg(test)]
mod tests;

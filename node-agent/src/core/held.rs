//! Pure: the applied [`NodeDesired`], held per object, and a version as a
//! [`NodeChange`] to it, so that what a version costs follows what it
//! changes: one endpoint change among 10k services validates, lowers and
//! plans one service, not 10k.
//!
//! Validation stays whole-version in meaning: [`HeldDesired::problems`]
//! finds a problem in a change exactly when [`validate`] would find one in
//! the state the change leads to. It can look at the change alone because
//! the held state was valid when applied: only what the change touches can
//! have become wrong (its own services, keys it takes that another object
//! holds, announced VIPs it leaves without a service), except when the
//! settings change, which every service is checked against again.
//!
//! [`validate`]: super::validate
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::Ipv4Addr;

use ballast_api::Protocol;

use super::desired::{
    Announcements, NodeDesired, Service, Settings, check_service, check_settings,
};
use super::report::{AnnounceProblem, ApplyError, ServiceProblem};
use crate::abi;

/// One version as a change to the version applied before it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeChange {
    pub version: u64,
    /// The new settings; None: as applied.
    pub settings: Option<Settings>,
    /// Each object named here has exactly these services from this version
    /// on (none: it is gone); every other object keeps its own. Each
    /// service's `object` is its key here.
    pub objects: BTreeMap<String, Vec<Service>>,
    /// The new announcements; None: as applied.
    pub announce: Option<Announcements>,
}

/// (VIP, port, protocol): what one service is, as the data plane keys it.
pub type ServiceKey = (Ipv4Addr, u16, Protocol);

fn key(s: &Service) -> ServiceKey {
    (s.vip, s.port, s.protocol)
}

/// The applied desired state, with the indexes that let a change be
/// checked and applied without a pass over every service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeldDesired {
    /// None before the first version.
    settings: Option<Settings>,
    objects: BTreeMap<String, Vec<Service>>,
    announce: Announcements,
    /// Which object holds each key (one each: the state is valid).
    owners: BTreeMap<ServiceKey, String>,
    /// Services per VIP.
    served: BTreeMap<Ipv4Addr, usize>,
    count: usize,
}

impl HeldDesired {
    /// The settings applied; the defaults before the first version.
    pub fn settings(&self) -> Settings {
        self.settings.clone().unwrap_or_default()
    }

    pub fn announce(&self) -> &Announcements {
        &self.announce
    }

    /// An object's services (none: not held).
    pub fn object(&self, name: &str) -> &[Service] {
        self.objects.get(name).map_or(&[], Vec::as_slice)
    }

    /// Every service, by object, each object's in its order.
    pub fn services(&self) -> impl Iterator<Item = &Service> {
        self.objects.values().flatten()
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The change that takes this state to `d`: only the objects whose
    /// services differ (in value or order), only the settings and
    /// announcements if they differ. Costs a comparison per service, no
    /// copy of an unchanged one.
    pub fn diff(&self, d: &NodeDesired) -> NodeChange {
        NodeChange {
            version: d.version,
            settings: (self.settings.as_ref() != Some(&d.settings)).then(|| d.settings.clone()),
            objects: self
                .changed_in_order(d)
                .unwrap_or_else(|| self.changed_gathered(d)),
            announce: (self.announce != d.announce).then(|| d.announce.clone()),
        }
    }

    /// The objects whose services differ, when `d` lists its objects in
    /// increasing name order (as the standalone source hands versions
    /// over; the link's canonical order often is, not always): `d`'s runs
    /// and the held objects are walked side by side, with no lookup and no
    /// set of names — at 100k services the comparison went from ~60 to
    /// ~25 ms. `None` when the order does not hold.
    fn changed_in_order(&self, d: &NodeDesired) -> Option<BTreeMap<String, Vec<Service>>> {
        let mut out = BTreeMap::new();
        let mut held = self.objects.iter().peekable();
        let mut last: Option<&str> = None;
        for run in d.services.chunk_by(|a, b| a.object == b.object) {
            let name = run[0].object.as_str();
            if last.is_some_and(|l| l >= name) {
                return None;
            }
            last = Some(name);
            // Held objects this version skipped over are gone.
            while let Some((gone, _)) = held.next_if(|(h, _)| h.as_str() < name) {
                out.insert(gone.clone(), Vec::new());
            }
            let same = held
                .next_if(|(h, _)| h.as_str() == name)
                .is_some_and(|(_, services)| services.as_slice() == run);
            if !same {
                out.insert(name.to_string(), run.to_vec());
            }
        }
        for (gone, _) in held {
            out.insert(gone.clone(), Vec::new());
        }
        Some(out)
    }

    /// [`Self::changed_in_order`] for a version in any order.
    fn changed_gathered(&self, d: &NodeDesired) -> BTreeMap<String, Vec<Service>> {
        // Sources list an object's services together: each run of one
        // object is compared with what is held as it is, without building
        // a map of the version (that alone cost more than the rest of a
        // one-change reload at 10k services).
        let mut seen: HashSet<&str> = HashSet::with_capacity(self.objects.len());
        let mut objects = BTreeMap::new();
        let mut scattered = false;
        for run in d.services.chunk_by(|a, b| a.object == b.object) {
            let name = run[0].object.as_str();
            if !seen.insert(name) {
                scattered = true;
                break;
            }
            if self.object(name) != run {
                objects.insert(name.to_string(), run.to_vec());
            }
        }
        if scattered {
            // An object listed in several places: gathered first.
            let mut wanted: BTreeMap<&str, Vec<Service>> = BTreeMap::new();
            for s in &d.services {
                wanted.entry(s.object.as_str()).or_default().push(s.clone());
            }
            seen = wanted.keys().copied().collect();
            objects = wanted
                .into_iter()
                .filter(|(name, services)| self.object(name) != services.as_slice())
                .map(|(name, services)| (name.to_string(), services))
                .collect();
        }
        for name in self.objects.keys() {
            if !seen.contains(name.as_str()) {
                objects.insert(name.clone(), Vec::new());
            }
        }
        objects
    }

    /// Services per VIP that `c` adds (positive) or removes (negative).
    fn served_change(&self, c: &NodeChange) -> BTreeMap<Ipv4Addr, isize> {
        let mut out: BTreeMap<Ipv4Addr, isize> = BTreeMap::new();
        for (name, services) in &c.objects {
            for s in self.object(name) {
                *out.entry(s.vip).or_default() -= 1;
            }
            for s in services {
                *out.entry(s.vip).or_default() += 1;
            }
        }
        out
    }

    /// Every problem of the state `c` leads to, in [`validate`]'s order
    /// (settings, services, announcements), found from what `c` touches:
    /// empty exactly when `validate` of that state is. A service taking a
    /// key an unchanged object holds is the duplicate (the one held came
    /// first). The version is the caller's to check.
    ///
    /// [`validate`]: super::validate
    pub fn problems(&self, c: &NodeChange) -> Vec<ApplyError> {
        let settings_changed = c.settings.is_some() && c.settings != self.settings;
        let settings = c.settings.clone().unwrap_or_else(|| self.settings());
        let mut out = if settings_changed {
            check_settings(&settings)
        } else {
            Vec::new()
        };
        let before: usize = c.objects.keys().map(|n| self.object(n).len()).sum();
        let after: usize = c.objects.values().map(Vec::len).sum();
        let count = self.count - before + after;
        if count > abi::MAX_SERVICES as usize {
            out.push(ApplyError::TooManyServices {
                count,
                max: abi::MAX_SERVICES as usize,
            });
        }
        // Keys the change's own services take, for duplicates among them.
        let mut taken: BTreeMap<ServiceKey, &str> = BTreeMap::new();
        if settings_changed {
            // Every service, held ones first (as held, they hold their
            // keys: only the changed ones can be duplicates).
            for (name, services) in &self.objects {
                if !c.objects.contains_key(name) {
                    for s in services {
                        out.extend(check_service(s, &settings).into_iter().map(|problem| {
                            ApplyError::Service {
                                service: s.id(),
                                problem,
                            }
                        }));
                    }
                }
            }
        }
        for s in c.objects.values().flatten() {
            let mut problems = check_service(s, &settings);
            let k = key(s);
            let holder = self
                .owners
                .get(&k)
                .filter(|o| !c.objects.contains_key(o.as_str()))
                .map(String::as_str)
                .or_else(|| taken.get(&k).copied());
            match holder {
                Some(first) => problems.push(ServiceProblem::Duplicate {
                    first: first.to_string(),
                }),
                None => {
                    taken.insert(k, s.object.as_str());
                }
            }
            out.extend(problems.into_iter().map(|problem| ApplyError::Service {
                service: s.id(),
                problem,
            }));
        }
        let served = self.served_change(c);
        let served_after = |vip: &Ipv4Addr| {
            self.served.get(vip).copied().unwrap_or(0) as isize
                + served.get(vip).copied().unwrap_or(0)
                > 0
        };
        let announce = c.announce.as_ref().unwrap_or(&self.announce);
        let not_served: BTreeSet<Ipv4Addr> = if c.announce.is_some() {
            announce
                .l2
                .iter()
                .filter(|v| !served_after(v))
                .copied()
                .collect()
        } else {
            served
                .keys()
                .filter(|v| announce.l2.contains(v) && !served_after(v))
                .copied()
                .collect()
        };
        out.extend(not_served.into_iter().map(|vip| ApplyError::Announce {
            vip,
            problem: AnnounceProblem::NotServed,
        }));
        out.extend(announce.bgp.iter().map(|&vip| ApplyError::Announce {
            vip,
            problem: AnnounceProblem::BgpUnsupported,
        }));
        out
    }

    /// Applies `c` (a change [`Self::problems`] found nothing wrong with).
    pub fn commit(&mut self, c: NodeChange) {
        for name in c.objects.keys() {
            for s in self.objects.remove(name).unwrap_or_default() {
                self.owners.remove(&key(&s));
                if let Some(n) = self.served.get_mut(&s.vip) {
                    *n -= 1;
                    if *n == 0 {
                        self.served.remove(&s.vip);
                    }
                }
                self.count -= 1;
            }
        }
        for (name, services) in c.objects {
            if services.is_empty() {
                continue;
            }
            for s in &services {
                self.owners.insert(key(s), name.clone());
                *self.served.entry(s.vip).or_default() += 1;
            }
            self.count += services.len();
            self.objects.insert(name, services);
        }
        if let Some(s) = c.settings {
            self.settings = Some(s);
        }
        if let Some(a) = c.announce {
            self.announce = a;
        }
    }

    /// The whole state at `version`: services by object.
    pub fn to_desired(&self, version: u64) -> NodeDesired {
        NodeDesired {
            version,
            settings: self.settings(),
            services: self.services().cloned().collect(),
            announce: self.announce.clone(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;

//! The allocator: a pure function of the frontends (with the addresses their
//! status says they hold), the pools and the namespaces' labels.
//!
//! Stability is the point. Addresses recorded in status are kept first, in
//! object age order, so a restarted controller or a new leader rebuilds
//! exactly the allocation the previous one wrote; only then are new
//! addresses handed out, lowest free address first.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;

use ballast_api::Protocol;

use super::pool::Pool;
use crate::frontend::{AddressRequest, Family, Frontend};
use crate::object_key::ObjectKey;
use crate::selector::Labels;

/// Why a frontend did not get (all) the addresses it wants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddressProblem {
    /// A requested address is outside every pool that admits the namespace.
    NotInPool {
        ip: IpAddr,
    },
    /// Held by an object this one may not share with (no common sharing key).
    InUse {
        ip: IpAddr,
        holder: ObjectKey,
    },
    /// Shareable, but the port is already served on that address.
    PortInUse {
        ip: IpAddr,
        port: u16,
        protocol: Protocol,
        holder: ObjectKey,
    },
    PoolNotFound {
        pool: String,
    },
    PoolNotAllowed {
        pool: String,
        namespace: String,
    },
    /// Every candidate address of the eligible pools is taken.
    Exhausted {
        family: Option<Family>,
        pools: Vec<String>,
    },
    /// No eligible pool has addresses of this family.
    NoPool {
        family: Option<Family>,
    },
}

impl AddressProblem {
    /// A machine-readable condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            AddressProblem::NotInPool { .. } => "AddressNotInPool",
            AddressProblem::InUse { .. } => "AddressInUse",
            AddressProblem::PortInUse { .. } => "PortConflict",
            AddressProblem::PoolNotFound { .. } => "PoolNotFound",
            AddressProblem::PoolNotAllowed { .. } => "PoolNotAllowed",
            AddressProblem::Exhausted { .. } => "PoolExhausted",
            AddressProblem::NoPool { .. } => "NoPool",
        }
    }
}

fn family_word(f: &Option<Family>) -> &'static str {
    match f {
        Some(Family::V4) => "IPv4 ",
        Some(Family::V6) => "IPv6 ",
        None => "",
    }
}

impl fmt::Display for AddressProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddressProblem::NotInPool { ip } => write!(
                f,
                "{ip} is not in any AddressPool that admits this namespace"
            ),
            AddressProblem::InUse { ip, holder } => write!(
                f,
                "{ip} is in use by {holder} (objects share an address only with the same \
                 ballast.dev/sharing-key annotation, or in a pool with shareByDefault)"
            ),
            AddressProblem::PortInUse {
                ip,
                port,
                protocol,
                holder,
            } => write!(f, "{ip} port {port}/{protocol} is held by {holder}"),
            AddressProblem::PoolNotFound { pool } => write!(f, "AddressPool {pool} does not exist"),
            AddressProblem::PoolNotAllowed { pool, namespace } => write!(
                f,
                "AddressPool {pool} does not admit namespace {namespace} (namespaceSelector)"
            ),
            AddressProblem::Exhausted { family, pools } => write!(
                f,
                "no free {}address in AddressPool{} {}",
                family_word(family),
                if pools.len() == 1 { "" } else { "s" },
                pools.join(", ")
            ),
            AddressProblem::NoPool { family } => write!(
                f,
                "no AddressPool with autoAssign and {}addresses admits this namespace",
                family_word(family)
            ),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allocation {
    /// In request order (Specific) or family order (pools).
    pub addresses: Vec<IpAddr>,
    pub problems: Vec<AddressProblem>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allocations {
    /// Indexed like the `frontends` argument of [`allocate`].
    pub per_frontend: Vec<Allocation>,
    /// Pool name → (distinct addresses in use from it, total it holds).
    pub usage: BTreeMap<String, (u64, u128)>,
}

enum Holder {
    /// `frontends[i]`.
    Frontend(usize),
    /// Recorded in the status of an object that is currently invalid: kept
    /// for it so that fixing a typo does not find its VIP given away.
    Reserved(ObjectKey),
}

/// Who holds what, and the rules for joining an address.
struct Ledger<'a> {
    frontends: &'a [&'a Frontend],
    pools: &'a [Pool],
    taken: HashMap<IpAddr, Vec<Holder>>,
    /// sharing key → addresses held under it, for pool requests that should
    /// land on their group's address.
    by_key: HashMap<&'a str, Vec<IpAddr>>,
}

impl<'a> Ledger<'a> {
    fn shares_by_default(&self, ip: IpAddr) -> bool {
        self.pools
            .iter()
            .find(|p| p.contains(ip))
            .is_some_and(|p| p.share_by_default)
    }

    /// Whether frontend `i` may take `ip` on top of its current holders.
    fn can_join(&self, i: usize, ip: IpAddr) -> Result<(), AddressProblem> {
        let Some(holders) = self.taken.get(&ip) else {
            return Ok(());
        };
        let me = self.frontends[i];
        let pool_shares = self.shares_by_default(ip);
        for h in holders {
            let other = match h {
                Holder::Frontend(index) => self.frontends[*index],
                Holder::Reserved(key) => {
                    return Err(AddressProblem::InUse {
                        ip,
                        holder: key.clone(),
                    });
                }
            };
            let same_key = me.sharing_key.is_some() && me.sharing_key == other.sharing_key;
            if !(same_key || pool_shares) {
                return Err(AddressProblem::InUse {
                    ip,
                    holder: other.key.clone(),
                });
            }
            for p in &me.ports {
                if other
                    .ports
                    .iter()
                    .any(|q| q.port == p.port && q.protocol == p.protocol)
                {
                    return Err(AddressProblem::PortInUse {
                        ip,
                        port: p.port,
                        protocol: p.protocol,
                        holder: other.key.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    fn take(&mut self, i: usize, ip: IpAddr) {
        self.taken.entry(ip).or_default().push(Holder::Frontend(i));
        if let Some(k) = self.frontends[i].sharing_key.as_deref() {
            let list = self.by_key.entry(k).or_default();
            if !list.contains(&ip) {
                list.push(ip);
            }
        }
    }
}

/// Pools a pool request may draw from, or why there are none.
fn eligible_pools<'p>(
    f: &Frontend,
    pool: &Option<String>,
    pools: &'p [Pool],
    ns_labels: &Labels,
) -> Result<Vec<&'p Pool>, AddressProblem> {
    match pool {
        Some(name) => {
            let p = pools
                .iter()
                .find(|p| &p.name == name)
                .ok_or_else(|| AddressProblem::PoolNotFound { pool: name.clone() })?;
            if !p.admits_namespace(ns_labels) {
                return Err(AddressProblem::PoolNotAllowed {
                    pool: name.clone(),
                    namespace: f.key.namespace.to_string(),
                });
            }
            Ok(vec![p])
        }
        None => Ok(pools
            .iter()
            .filter(|p| p.auto_assign && p.admits_namespace(ns_labels))
            .collect()),
    }
}

/// Allocates addresses for `frontends`. `pools` must be sorted by name (the
/// order auto-assignment tries them in); `namespaces` maps a namespace to its
/// labels; `reserved` are the recorded addresses of invalid objects, which
/// nobody else may take while they are being fixed.
pub fn allocate(
    frontends: &[&Frontend],
    reserved: &[(ObjectKey, Vec<IpAddr>)],
    pools: &[Pool],
    namespaces: &BTreeMap<String, Labels>,
) -> Allocations {
    let empty = Labels::new();
    let labels = |f: &Frontend| namespaces.get(&*f.key.namespace).unwrap_or(&empty);
    let mut ledger = Ledger {
        frontends,
        pools,
        taken: HashMap::new(),
        by_key: HashMap::new(),
    };
    let mut out: Vec<Allocation> = vec![Allocation::default(); frontends.len()];
    for (key, ips) in reserved {
        for ip in ips {
            if pools.iter().any(|p| p.contains(*ip)) {
                ledger
                    .taken
                    .entry(*ip)
                    .or_default()
                    .push(Holder::Reserved(key.clone()));
            }
        }
    }

    // Age order, and holders of a recorded address ahead of newcomers.
    let mut order: Vec<usize> = (0..frontends.len()).collect();
    order.sort_by(|&a, &b| {
        let (fa, fb) = (frontends[a], frontends[b]);
        (fa.previous.is_empty(), &fa.created, &fa.key).cmp(&(
            fb.previous.is_empty(),
            &fb.created,
            &fb.key,
        ))
    });

    // Pass 1: specific requests (all or nothing) and recorded pool addresses.
    for &i in &order {
        let f = frontends[i];
        match &f.request {
            AddressRequest::Specific(ips) => {
                let mut problems = Vec::new();
                for &ip in ips {
                    let in_pool = pools
                        .iter()
                        .any(|p| p.contains(ip) && p.admits_namespace(labels(f)));
                    if !in_pool {
                        problems.push(AddressProblem::NotInPool { ip });
                    } else if let Err(p) = ledger.can_join(i, ip) {
                        problems.push(p);
                    }
                }
                if problems.is_empty() {
                    for &ip in ips {
                        ledger.take(i, ip);
                    }
                    out[i].addresses = ips.clone();
                } else {
                    out[i].problems = problems;
                }
            }
            AddressRequest::Pool { pool, families } => {
                let Ok(eligible) = eligible_pools(f, pool, pools, labels(f)) else {
                    continue; // reported in pass 2
                };
                for &ip in &f.previous {
                    let fam = Family::of(ip);
                    let wanted = if families.is_empty() {
                        out[i].addresses.is_empty()
                    } else {
                        families.contains(&fam)
                            && !out[i].addresses.iter().any(|a| Family::of(*a) == fam)
                    };
                    if wanted
                        && eligible.iter().any(|p| p.contains(ip))
                        && ledger.can_join(i, ip).is_ok()
                    {
                        ledger.take(i, ip);
                        out[i].addresses.push(ip);
                    }
                }
            }
        }
    }

    // Pass 2: fresh addresses for pool requests, oldest object first.
    let mut cursors: HashMap<(String, Family), Box<dyn Iterator<Item = IpAddr> + '_>> =
        HashMap::new();
    order.sort_by(|&a, &b| {
        (&frontends[a].created, &frontends[a].key).cmp(&(&frontends[b].created, &frontends[b].key))
    });
    for &i in &order {
        let f = frontends[i];
        let AddressRequest::Pool { pool, families } = &f.request else {
            continue;
        };
        let eligible = match eligible_pools(f, pool, pools, labels(f)) {
            Ok(e) => e,
            Err(p) => {
                out[i].problems.push(p);
                continue;
            }
        };
        // `None` = any family, IPv4 preferred.
        let wanted: Vec<Option<Family>> = if families.is_empty() {
            if out[i].addresses.is_empty() {
                vec![None]
            } else {
                vec![]
            }
        } else {
            families
                .iter()
                .filter(|fam| !out[i].addresses.iter().any(|a| Family::of(*a) == **fam))
                .map(|f| Some(*f))
                .collect()
        };
        for want in wanted {
            let fams: Vec<Family> = match want {
                Some(f) => vec![f],
                None => vec![Family::V4, Family::V6],
            };
            let with_family: Vec<&Pool> = eligible
                .iter()
                .copied()
                .filter(|p| fams.iter().any(|f| p.has_family(*f == Family::V4)))
                .collect();
            if with_family.is_empty() {
                out[i]
                    .problems
                    .push(AddressProblem::NoPool { family: want });
                continue;
            }
            match pick(&mut ledger, &mut cursors, i, &with_family, &fams) {
                Some(ip) => {
                    ledger.take(i, ip);
                    out[i].addresses.push(ip);
                }
                None => out[i].problems.push(AddressProblem::Exhausted {
                    family: want,
                    pools: with_family.iter().map(|p| p.name.clone()).collect(),
                }),
            }
        }
    }

    let usage = pools
        .iter()
        .map(|p| {
            let used = ledger.taken.keys().filter(|ip| p.contains(**ip)).count() as u64;
            (p.name.clone(), (used, p.total()))
        })
        .collect();
    Allocations {
        per_frontend: out,
        usage,
    }
}

/// The address for one pool request: its sharing group's address when one
/// fits, else the lowest never-used candidate.
fn pick<'p>(
    ledger: &mut Ledger<'_>,
    cursors: &mut HashMap<(String, Family), Box<dyn Iterator<Item = IpAddr> + 'p>>,
    i: usize,
    pools: &[&'p Pool],
    families: &[Family],
) -> Option<IpAddr> {
    if let Some(key) = ledger.frontends[i].sharing_key.as_deref()
        && let Some(group) = ledger.by_key.get(key)
    {
        for &ip in group {
            if families.contains(&Family::of(ip))
                && pools.iter().any(|p| p.contains(ip))
                && ledger.can_join(i, ip).is_ok()
            {
                return Some(ip);
            }
        }
    }
    for &fam in families {
        for p in pools {
            // Cursors only move forward: within one run an address that was
            // taken stays taken, so nothing behind a cursor frees up.
            let cursor = cursors
                .entry((p.name.clone(), fam))
                .or_insert_with(|| Box::new(p.candidates(fam == Family::V4)));
            for ip in cursor.by_ref() {
                if !ledger.taken.contains_key(&ip) {
                    return Some(ip);
                }
            }
        }
    }
    None
}

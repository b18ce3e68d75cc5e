//! The rules both ends of the link share about node states: the canonical
//! order of their lists and how a delta applies. The controller builds
//! states in canonical order; the agent keeps the state it holds canonical
//! by applying deltas here, so both hold the same lists in the same order
//! (the content hash is in `digest`).

use std::cmp::Ordering;

use std::collections::BTreeSet;

use crate::v1::{Announcements, Delta, NodeSettings, NodeState, ObjectKind, ObjectRef, Service};

/// Canonical order of addresses: IPv4 (4 bytes) before IPv6 (16 bytes), then
/// by bytes, which is numeric order within a family (and `IpAddr`'s order).
pub fn address_order(a: &[u8], b: &[u8]) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Canonical order of objects: kind (by its wire value), namespace, name.
pub fn object_order(a: &ObjectRef, b: &ObjectRef) -> Ordering {
    (a.kind, &a.namespace, &a.name).cmp(&(b.kind, &b.namespace, &b.name))
}

/// The object a service belongs to; a service without one sorts first (and
/// is refused by the receiver's validation).
fn service_object(s: &Service) -> Option<&ObjectRef> {
    s.object.as_ref()
}

fn service_order(a: &Service, b: &Service) -> Ordering {
    match (service_object(a), service_object(b)) {
        (Some(a), Some(b)) => object_order(a, b),
        (a, b) => a.is_some().cmp(&b.is_some()),
    }
}

/// Puts a received snapshot in canonical form (services by object,
/// announcements by address, empty settings and announcements absent), so
/// that its hash and later deltas match the sender's. Duplicates are kept
/// for the receiver's validation to refuse.
pub fn canonicalize(state: &mut NodeState) {
    state.services.sort_by(service_order);
    if let Some(a) = &mut state.announcements {
        a.l2.sort_by(|x, y| address_order(x, y));
        a.bgp.sort_by(|x, y| address_order(x, y));
    }
    drop_empty(state);
}

/// An empty sub-message means the same as an absent one; canonical form
/// has it absent, so that both hash alike.
fn drop_empty(state: &mut NodeState) {
    if state
        .settings
        .as_ref()
        .is_some_and(|s| *s == NodeSettings::default())
    {
        state.settings = None;
    }
    if state
        .announcements
        .as_ref()
        .is_some_and(|a| a.l2.is_empty() && a.bgp.is_empty())
    {
        state.announcements = None;
    }
}

/// Whether a delta changes nothing but the version.
pub fn delta_is_empty(d: &Delta) -> bool {
    d.settings.is_none()
        && d.upserted.is_empty()
        && d.removed.is_empty()
        && d.l2_added.is_empty()
        && d.l2_removed.is_empty()
        && d.bgp_added.is_empty()
        && d.bgp_removed.is_empty()
}

/// Why a delta does not apply to a state. Any of these means the two ends
/// disagree about the base state, and the agent asks for a full one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeltaError {
    #[error("delta applies on version {base}, but the state is at version {held}")]
    WrongBase { base: u64, held: u64 },
    #[error("delta version {version} does not follow its base version {base}")]
    NotNewer { version: u64, base: u64 },
    #[error("delta field {field}: an entry has no object")]
    MissingObject { field: &'static str },
    #[error("delta removes {object}, which the state does not hold")]
    RemovesAbsent { object: String },
    #[error("delta both upserts and removes {object}")]
    UpsertedAndRemoved { object: String },
    #[error("delta field {field}: {address} is already there")]
    AddsPresent {
        field: &'static str,
        address: String,
    },
    #[error("delta field {field}: {address} is not there")]
    RemovesAbsentAddress {
        field: &'static str,
        address: String,
    },
}

/// `VirtualServer ns/name`, as the controller names objects.
fn object_name(o: &ObjectRef) -> String {
    let kind = match ObjectKind::try_from(o.kind) {
        Ok(ObjectKind::VirtualServer) => "VirtualServer".to_string(),
        Ok(ObjectKind::Service) => "Service".to_string(),
        _ => format!("object of kind {}", o.kind),
    };
    format!("{kind} {}/{}", o.namespace, o.name)
}

fn address_name(a: &[u8]) -> String {
    match a.len() {
        4 => std::net::Ipv4Addr::from(<[u8; 4]>::try_from(a).expect("4 bytes")).to_string(),
        16 => std::net::Ipv6Addr::from(<[u8; 16]>::try_from(a).expect("16 bytes")).to_string(),
        _ => format!("{a:02x?}"),
    }
}

/// Applies `delta` to `state`, all or nothing: every precondition (base
/// version, presence of what is removed, absence of what is added) is
/// checked before anything changes ([`check_delta`]). `state` must be
/// canonical; it stays so.
pub fn apply_delta(state: &mut NodeState, delta: &Delta) -> Result<(), DeltaError> {
    check_delta(state, delta)?;
    for removed in &delta.removed {
        let i = find_index(&state.services, removed).expect("checked above");
        state.services.remove(i);
    }
    for service in &delta.upserted {
        let object = service.object.as_ref().expect("checked above");
        match find_index(&state.services, object) {
            Ok(i) => state.services[i] = service.clone(),
            Err(i) => state.services.insert(i, service.clone()),
        }
    }
    let announcements = state.announcements.get_or_insert_with(Default::default);
    apply_set_change(&mut announcements.l2, &delta.l2_added, &delta.l2_removed);
    apply_set_change(&mut announcements.bgp, &delta.bgp_added, &delta.bgp_removed);
    if let Some(settings) = &delta.settings {
        state.settings = Some(settings.clone());
    }
    drop_empty(state);
    state.version = delta.version;
    Ok(())
}

/// Whether `delta` applies to `state` (canonical), without changing it:
/// what [`apply_delta`] checks first. A receiver that applies a version
/// only once it is accepted checks it on arrival with this.
pub fn check_delta(state: &NodeState, delta: &Delta) -> Result<(), DeltaError> {
    if delta.base_version != state.version {
        return Err(DeltaError::WrongBase {
            base: delta.base_version,
            held: state.version,
        });
    }
    if delta.version <= delta.base_version {
        return Err(DeltaError::NotNewer {
            version: delta.version,
            base: delta.base_version,
        });
    }
    let mut upserted = BTreeSet::new();
    for service in &delta.upserted {
        let o = service_object(service).ok_or(DeltaError::MissingObject { field: "upserted" })?;
        upserted.insert((o.kind, o.namespace.as_str(), o.name.as_str()));
    }
    let mut removing = BTreeSet::new();
    for removed in &delta.removed {
        // Listed twice: the second removes what is no longer there.
        let first = removing.insert((
            removed.kind,
            removed.namespace.as_str(),
            removed.name.as_str(),
        ));
        if !first || find_index(&state.services, removed).is_err() {
            return Err(DeltaError::RemovesAbsent {
                object: object_name(removed),
            });
        }
        if upserted.contains(&(
            removed.kind,
            removed.namespace.as_str(),
            removed.name.as_str(),
        )) {
            return Err(DeltaError::UpsertedAndRemoved {
                object: object_name(removed),
            });
        }
    }
    let empty = Announcements::default();
    let held = state.announcements.as_ref().unwrap_or(&empty);
    check_set_change(&held.l2, &delta.l2_added, &delta.l2_removed, "l2")?;
    check_set_change(&held.bgp, &delta.bgp_added, &delta.bgp_removed, "bgp")
}

/// The service of object `o` in `state` (canonical), if it has one.
pub fn find_service<'a>(state: &'a NodeState, o: &ObjectRef) -> Option<&'a Service> {
    find_index(&state.services, o)
        .ok()
        .map(|i| &state.services[i])
}

/// The announcements `state` has once `delta` (checked) is applied, in
/// canonical form (empty ones absent): what the content hash after the
/// delta reads, without applying it.
pub fn announcements_after(state: &NodeState, delta: &Delta) -> Option<Announcements> {
    let mut a = state.announcements.clone().unwrap_or_default();
    apply_set_change(&mut a.l2, &delta.l2_added, &delta.l2_removed);
    apply_set_change(&mut a.bgp, &delta.bgp_added, &delta.bgp_removed);
    (!(a.l2.is_empty() && a.bgp.is_empty())).then_some(a)
}

/// Where `o`'s service is (or would go) in a canonical list.
fn find_index(services: &[Service], o: &ObjectRef) -> Result<usize, usize> {
    services.binary_search_by(|s| match service_object(s) {
        Some(so) => object_order(so, o),
        None => Ordering::Less,
    })
}

fn check_set_change(
    held: &[Vec<u8>],
    added: &[Vec<u8>],
    removed: &[Vec<u8>],
    list: &'static str,
) -> Result<(), DeltaError> {
    let has = |a: &[u8]| held.binary_search_by(|h| address_order(h, a)).is_ok();
    for a in added {
        if has(a) {
            return Err(DeltaError::AddsPresent {
                field: list,
                address: address_name(a),
            });
        }
    }
    for a in removed {
        if !has(a) {
            return Err(DeltaError::RemovesAbsentAddress {
                field: list,
                address: address_name(a),
            });
        }
    }
    Ok(())
}

fn apply_set_change(held: &mut Vec<Vec<u8>>, added: &[Vec<u8>], removed: &[Vec<u8>]) {
    for a in removed {
        if let Ok(i) = held.binary_search_by(|h| address_order(h, a)) {
            held.remove(i);
        }
    }
    for a in added {
        if let Err(i) = held.binary_search_by(|h| address_order(h, a)) {
            held.insert(i, a.clone());
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;

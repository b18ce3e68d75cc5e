//! Pure: what the agent refuses, put back on the wire for a Nack: problems
//! with services as `ServiceError`s naming the wire object, VIP, port and
//! protocol; problems with the version as a whole as the Nack's `message`.
//!
//! Fields are best effort: an apply error knows a service by (object, VIP,
//! port, protocol), not by where its port or backend sat in the wire
//! object, so a field needing such an index is left empty (the VIP, port
//! and reason still say where).
use std::net::IpAddr;

use ballast_api::Protocol;
use ballast_proto::v1;

use super::convert::{ConvertError, ErrorKind, ObjectNames};
use crate::core::{AnnounceProblem, ApplyError, ServiceProblem, ServiceRef};

/// An apply report's errors as the wire's `ServiceError`s (for a Nack), in
/// the report's order. Errors about no service are left to
/// [`version_message`].
pub fn service_errors(errors: &[ApplyError], objects: &ObjectNames) -> Vec<v1::ServiceError> {
    errors
        .iter()
        .filter_map(|e| match e {
            ApplyError::Service { service, problem } => {
                let kind = match problem {
                    ServiceProblem::Duplicate { .. } => v1::ServiceErrorKind::Conflict,
                    _ => v1::ServiceErrorKind::Invalid,
                };
                let field = problem_field(problem);
                Some(of_service(
                    service,
                    kind,
                    field,
                    problem.to_string(),
                    objects,
                ))
            }
            ApplyError::Capacity { service, source } => Some(of_service(
                service,
                v1::ServiceErrorKind::Capacity,
                String::new(),
                source.to_string(),
                objects,
            )),
            ApplyError::Announce { vip, problem } => {
                let (kind, list) = match problem {
                    AnnounceProblem::BgpUnsupported => (v1::ServiceErrorKind::Unsupported, "bgp"),
                    AnnounceProblem::NotServed => (v1::ServiceErrorKind::Invalid, "l2"),
                };
                Some(v1::ServiceError {
                    object: None,
                    vip: vip.octets().to_vec(),
                    port: 0,
                    protocol: v1::Protocol::Unspecified as i32,
                    kind: kind as i32,
                    field: format!("announcements.{list}"),
                    reason: problem.to_string(),
                })
            }
            ApplyError::StaleVersion { .. }
            | ApplyError::Settings(_)
            | ApplyError::TooManyServices { .. } => None,
        })
        .collect()
}

/// The Nack `message` for errors that are about no service (stale version,
/// settings, too many services), joined with "; "; empty when there are
/// none.
pub fn version_message(errors: &[ApplyError]) -> String {
    let whole = errors.iter().filter(|e| {
        matches!(
            e,
            ApplyError::StaleVersion { .. }
                | ApplyError::Settings(_)
                | ApplyError::TooManyServices { .. }
        )
    });
    join(whole)
}

/// A conversion's errors as a Nack's parts: those about an object or a VIP
/// as `ServiceError`s, the rest (version, settings, a service that names no
/// object) as the message, joined with "; ".
pub fn nack_parts(errors: &[ConvertError]) -> (Vec<v1::ServiceError>, String) {
    let (services, whole): (Vec<_>, Vec<_>) = errors
        .iter()
        .partition(|e| e.object.is_some() || e.vip.is_some());
    (
        services.into_iter().map(ConvertError::to_wire).collect(),
        join(whole),
    )
}

fn join<T: ToString>(items: impl IntoIterator<Item = T>) -> String {
    items
        .into_iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

impl ConvertError {
    /// As the wire reports it. The field is relative to the object's
    /// service when the error names an object (`ports[0].port`, as
    /// `ServiceError.field` documents), else the path from the state.
    pub fn to_wire(&self) -> v1::ServiceError {
        let field = match &self.object {
            Some(_) => in_service(&self.field),
            None => &self.field,
        };
        v1::ServiceError {
            object: self.object.clone(),
            vip: self.vip.map(ip_bytes).unwrap_or_default(),
            port: u32::from(self.port),
            protocol: self.protocol.map_or(v1::Protocol::Unspecified, protocol) as i32,
            kind: match self.kind {
                ErrorKind::Invalid => v1::ServiceErrorKind::Invalid,
                ErrorKind::Unsupported => v1::ServiceErrorKind::Unsupported,
            } as i32,
            field: field.to_string(),
            reason: self.reason.clone(),
        }
    }
}

/// `services[3].ports[0].port` -> `ports[0].port`.
fn in_service(field: &str) -> &str {
    field
        .strip_prefix("services[")
        .and_then(|rest| rest.split_once("]."))
        .map_or(field, |(_, inner)| inner)
}

/// The wire field of a service problem, when it is known without the
/// wire object's port and backend order.
fn problem_field(problem: &ServiceProblem) -> String {
    match problem {
        ServiceProblem::BadVip(_) | ServiceProblem::VipIsSnatAddress => "vips".into(),
        ServiceProblem::ToaNeedsTcp | ServiceProblem::ToaNeedsFullNat(_) => "toa".into(),
        ServiceProblem::NoSnatAddress => "forwarding".into(),
        ServiceProblem::SourceRangeHostBits { index, .. } => format!("source_ranges[{index}]"),
        ServiceProblem::HealthCheck(_) => "health_check".into(),
        // ports[?]: the port's index in the wire object is not known here.
        ServiceProblem::PortZero
        | ServiceProblem::TooManyBackends { .. }
        | ServiceProblem::BadBackend { .. }
        | ServiceProblem::Duplicate { .. } => String::new(),
    }
}

/// A `ServiceError` at one data-plane service. An object missing from
/// `objects` (not from this conversion) goes unnamed but for the reason.
fn of_service(
    service: &ServiceRef,
    kind: v1::ServiceErrorKind,
    field: String,
    reason: String,
    objects: &ObjectNames,
) -> v1::ServiceError {
    let object = objects.get(&service.object).cloned();
    let reason = match object {
        Some(_) => reason,
        None => format!("{}: {reason}", service.object),
    };
    v1::ServiceError {
        object,
        vip: service.vip.octets().to_vec(),
        port: u32::from(service.port),
        protocol: protocol(service.protocol) as i32,
        kind: kind as i32,
        field,
        reason,
    }
}

fn protocol(p: Protocol) -> v1::Protocol {
    match p {
        Protocol::Tcp => v1::Protocol::Tcp,
        Protocol::Udp => v1::Protocol::Udp,
    }
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

#[cfg(test)]
mod tests;

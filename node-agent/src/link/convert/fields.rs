//! The wire's scalar fields read into typed values (each refusal a reason
//! string for a [`ConvertError`]), and where problems are collected.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ballast_api::{Forwarding, Protocol};
use ballast_proto::v1;

use super::{ConvertError, ErrorKind};

/// Where in the state a problem is: what a [`ConvertError`] names besides
/// its field.
#[derive(Clone, Debug, Default)]
pub(super) struct Site {
    pub object: Option<v1::ObjectRef>,
    pub vip: Option<IpAddr>,
    pub port: u16,
    pub protocol: Option<Protocol>,
}

impl Site {
    pub fn object(object: Option<&v1::ObjectRef>) -> Self {
        Site {
            object: object.cloned(),
            ..Site::default()
        }
    }

    pub fn at_vip(&self, vip: IpAddr) -> Self {
        Site {
            vip: Some(vip),
            ..self.clone()
        }
    }

    pub fn at_port(&self, port: u16, protocol: Protocol) -> Self {
        Site {
            port,
            protocol: Some(protocol),
            ..self.clone()
        }
    }

    fn error(&self, kind: ErrorKind, field: String, reason: String) -> ConvertError {
        ConvertError {
            object: self.object.clone(),
            vip: self.vip,
            port: self.port,
            protocol: self.protocol,
            kind,
            field,
            reason,
        }
    }
}

/// Every problem found so far, in wire order.
#[derive(Default)]
pub(super) struct Problems {
    pub invalid: Vec<ConvertError>,
    pub unsupported: Vec<ConvertError>,
}

impl Problems {
    pub fn invalid(&mut self, site: &Site, field: String, reason: impl Into<String>) {
        let e = site.error(ErrorKind::Invalid, field, reason.into());
        self.invalid.push(e);
    }

    /// The value a field reads as, or `None` with its refusal recorded.
    pub fn read<T>(&mut self, site: &Site, field: String, value: Result<T, String>) -> Option<T> {
        value
            .inspect_err(|reason| self.invalid(site, field, reason))
            .ok()
    }

    pub fn unsupported(&mut self, site: &Site, field: String, reason: impl Into<String>) {
        let e = site.error(ErrorKind::Unsupported, field, reason.into());
        self.unsupported.push(e);
    }
}

/// Network-order bytes: 4 for IPv4, 16 for IPv6.
pub(super) fn address(raw: &[u8]) -> Result<IpAddr, String> {
    if let Ok(v4) = <[u8; 4]>::try_from(raw) {
        Ok(IpAddr::V4(Ipv4Addr::from(v4)))
    } else if let Ok(v6) = <[u8; 16]>::try_from(raw) {
        Ok(IpAddr::V6(Ipv6Addr::from(v6)))
    } else {
        Err(format!("{} bytes (4 for IPv4, 16 for IPv6)", raw.len()))
    }
}

/// A port number, 1-65535.
pub(super) fn port(n: u32) -> Result<u16, String> {
    match u16::try_from(n) {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(format!("{n}: ports are 1-65535")),
    }
}

/// How an enum value that is not one of the enum's is described.
pub(super) fn enum_value(v: i32) -> String {
    if v == 0 {
        "UNSPECIFIED".to_string()
    } else {
        format!("unknown value {v}")
    }
}

pub(super) fn protocol(v: i32) -> Result<Protocol, String> {
    match v1::Protocol::try_from(v) {
        Ok(v1::Protocol::Tcp) => Ok(Protocol::Tcp),
        Ok(v1::Protocol::Udp) => Ok(Protocol::Udp),
        _ => Err(format!("{}: TCP or UDP", enum_value(v))),
    }
}

pub(super) fn forwarding(v: i32) -> Result<Forwarding, String> {
    match v1::Forwarding::try_from(v) {
        Ok(v1::Forwarding::FullNat) => Ok(Forwarding::FullNat),
        Ok(v1::Forwarding::Dr) => Ok(Forwarding::Dr),
        Ok(v1::Forwarding::Nat) => Ok(Forwarding::Nat),
        _ => Err(format!("{}: FULL_NAT, DR or NAT", enum_value(v))),
    }
}

//! Address rules: what is never a unicast endpoint, what is never a backend,
//! and `spec.addresses` (the VIPs).

use std::collections::HashMap;
use std::net::IpAddr;

use super::error::Errors;
use super::{Families, ValidationContext};
use crate::virtual_server::VirtualServerSpec;

/// Rejects addresses that can never be a unicast endpoint; programming them
/// would black-hole traffic without any visible error.
pub(crate) fn unicast_problem(ip: IpAddr) -> Option<String> {
    if ip.is_unspecified() {
        Some(format!("{ip} is the unspecified address"))
    } else if ip.is_multicast() {
        Some(format!("{ip} is a multicast address"))
    } else if matches!(ip, IpAddr::V4(v4) if v4.is_broadcast()) {
        Some(format!("{ip} is the broadcast address"))
    } else {
        None
    }
}

/// Addresses that are never a backend, in either mode: besides what is never
/// a unicast endpoint (unspecified, multicast, broadcast), loopback would
/// deliver to the director itself, and link-local is not routable, so the
/// director could not reach it beyond one link. IPv4-mapped IPv6 addresses
/// are judged as the IPv4 address they carry.
pub(crate) fn backend_address(ip: IpAddr) -> Option<String> {
    let canonical = ip.to_canonical();
    if let Some(p) = unicast_problem(ip).or_else(|| unicast_problem(canonical)) {
        return Some(p);
    }
    let link_local = match canonical {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_unicast_link_local(),
    };
    if canonical.is_loopback() {
        Some(format!(
            "{ip} is a loopback address: traffic would be delivered to the director itself"
        ))
    } else if link_local {
        Some(format!(
            "{ip} is a link-local address: not routable, and ambiguous without an interface"
        ))
    } else {
        None
    }
}

/// Addresses that are never a VIP: besides what is never a unicast endpoint,
/// loopback, which traffic from the network never reaches (the kernel drops
/// it as martian). IPv4-mapped IPv6 addresses are judged as the IPv4 address
/// they carry.
pub(crate) fn vip_address(ip: IpAddr) -> Option<String> {
    let canonical = ip.to_canonical();
    if let Some(p) = unicast_problem(ip).or_else(|| unicast_problem(canonical)) {
        return Some(p);
    }
    if canonical.is_loopback() {
        return Some(format!(
            "{ip} is a loopback address: traffic from the network never reaches it"
        ));
    }
    None
}

/// `spec.addresses`: parsed, without duplicates, each a unicast address of a
/// family the caller serves. Only the controller can do without (it
/// allocates from a pool).
pub(crate) fn check_addresses(
    spec: &VirtualServerSpec,
    ctx: ValidationContext,
    families: Families,
    errs: &mut Errors,
) -> Vec<IpAddr> {
    if spec.addresses.is_empty() && ctx == ValidationContext::Standalone {
        errs.push("spec.addresses", "at least one address is required");
    }
    let mut seen: HashMap<IpAddr, usize> = HashMap::new();
    let mut vips = Vec::new();
    for (i, a) in spec.addresses.iter().enumerate() {
        let field = format!("spec.addresses[{i}]");
        let ip = match a.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => {
                errs.push(field, format!("{a:?} is not an IP address"));
                continue;
            }
        };
        // Compared as parsed addresses so that different spellings of the
        // same IPv6 address are caught too.
        if let Some(j) = seen.get(&ip) {
            errs.push(field, format!("duplicate of spec.addresses[{j}] ({ip})"));
            continue;
        }
        seen.insert(ip, i);
        if let Some(reason) = families.refuses(ip) {
            errs.push(field, reason);
        } else if let Some(p) = vip_address(ip) {
            errs.push(field, p);
        } else {
            vips.push(ip);
        }
    }
    vips
}

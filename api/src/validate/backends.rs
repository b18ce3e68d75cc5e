//! `spec.backends`: exactly one source (a static list or a Service), and
//! each static backend an address the director can forward to.

use std::collections::HashMap;
use std::net::IpAddr;

use super::addresses::backend_address;
use super::error::Errors;
use super::types::CheckedBackend;
use super::{Families, ValidationContext};
use crate::virtual_server::VirtualServerSpec;

/// Upper bound for a backend weight; keeps weight sums far from overflowing
/// the Maglev credit arithmetic and matches the 16-bit weight of IPVS tools
/// people port configurations from.
pub const MAX_WEIGHT: i64 = 65_535;

/// `vips` are the object's own addresses, which no backend may be.
pub(crate) fn check_backends(
    spec: &VirtualServerSpec,
    ctx: ValidationContext,
    families: Families,
    vips: &[IpAddr],
    errs: &mut Errors,
) -> Vec<CheckedBackend> {
    let b = &spec.backends;
    match (&b.static_backends, &b.service_ref) {
        (Some(_), Some(_)) => errs.push(
            "spec.backends",
            "static and serviceRef are mutually exclusive; set exactly one",
        ),
        (None, None) => errs.push("spec.backends", "one of static or serviceRef is required"),
        (None, Some(r)) => match ctx {
            ValidationContext::Standalone => errs.push(
                "spec.backends.serviceRef",
                "serviceRef is not supported in standalone mode; list the backends under \
                 spec.backends.static",
            ),
            ValidationContext::Controller => {
                if r.name.is_empty() {
                    errs.push("spec.backends.serviceRef.name", "required");
                }
            }
        },
        (Some(_), None) => {}
    }

    let mut out = Vec::new();
    let mut seen: HashMap<IpAddr, usize> = HashMap::new();
    // Checked even when combined with serviceRef, so all problems surface at once.
    for (i, be) in b.static_backends.iter().flatten().enumerate() {
        let base = format!("spec.backends.static[{i}]");
        let mut address = None;
        match be.address.parse::<IpAddr>() {
            Err(_) => errs.push(
                format!("{base}.address"),
                format!("{:?} is not {}", be.address, families.expected()),
            ),
            Ok(ip) => {
                if let Some(j) = seen.get(&ip) {
                    errs.push(
                        format!("{base}.address"),
                        format!("duplicate of spec.backends.static[{j}] ({ip})"),
                    );
                } else {
                    seen.insert(ip, i);
                    if let Some(reason) = families.refuses(ip) {
                        errs.push(format!("{base}.address"), reason);
                    } else if let Some(p) = backend_address(ip) {
                        errs.push(format!("{base}.address"), p);
                    } else if vips.contains(&ip) {
                        // The balancer would forward the packet to itself.
                        errs.push(
                            format!("{base}.address"),
                            format!("{ip} is also a VIP of this VirtualServer"),
                        );
                    } else {
                        address = Some(ip);
                    }
                }
            }
        }
        let weight = u32::try_from(be.weight)
            .ok()
            .filter(|w| i64::from(*w) <= MAX_WEIGHT);
        if weight.is_none() {
            errs.push(
                format!("{base}.weight"),
                format!("weight {} is out of range 0..={MAX_WEIGHT}", be.weight),
            );
        }
        if let (Some(address), Some(weight)) = (address, weight) {
            out.push(CheckedBackend { address, weight });
        }
    }
    out
}

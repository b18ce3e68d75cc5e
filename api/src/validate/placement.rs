//! Where the object runs and how its VIPs are found and announced:
//! `nodeSelector`, `addressPool`, `announce`; rules that depend on the
//! [`ValidationContext`].

use std::collections::BTreeMap;

use super::ValidationContext;
use super::error::Errors;
use crate::virtual_server::VirtualServerSpec;

/// Kubernetes label syntax: an optional DNS-subdomain prefix and a name of at
/// most 63 characters; values likewise (may be empty).
pub(crate) fn node_selector(selector: &BTreeMap<String, String>, errs: &mut Errors) {
    for (key, value) in selector {
        let field = format!("spec.nodeSelector[{key}]");
        let (prefix, name) = match key.rsplit_once('/') {
            Some((p, n)) => (Some(p), n),
            None => (None, key.as_str()),
        };
        if let Some(p) = prefix
            && (p.is_empty() || p.len() > 253 || !p.split('.').all(is_dns_label))
        {
            errs.push(&field, format!("key prefix {p:?} is not a DNS subdomain"));
        }
        if !is_label_name(name) {
            errs.push(
                &field,
                format!("key name {name:?} is not a valid label name (alphanumerics, '-', '_', '.', at most 63, starting and ending alphanumeric)"),
            );
        }
        if !value.is_empty() && !is_label_name(value) {
            errs.push(
                &field,
                format!("value {value:?} is not a valid label value"),
            );
        }
    }
}

pub(crate) fn address_pool(spec: &VirtualServerSpec, ctx: ValidationContext, errs: &mut Errors) {
    let Some(pool) = &spec.address_pool else {
        return;
    };
    if ctx == ValidationContext::Standalone {
        errs.push(
            "spec.addressPool",
            "address pools are allocated by the controller; in standalone mode list the VIPs under spec.addresses",
        );
    } else if !spec.addresses.is_empty() {
        errs.push(
            "spec.addressPool",
            "set either addresses or addressPool, not both (a pool is only used to allocate when addresses is empty)",
        );
    } else if pool.is_empty() || !pool.split('.').all(is_dns_label) {
        errs.push(
            "spec.addressPool",
            format!("{pool:?} is not a valid AddressPool name"),
        );
    }
}

/// Announcement methods the context cannot perform. Standalone has no BGP
/// speaker: accepting `bgp` would leave the VIPs unreachable from beyond the
/// local segment while the user believes they are routed.
pub(crate) fn announce(spec: &VirtualServerSpec, ctx: ValidationContext, errs: &mut Errors) {
    let priority = spec
        .announce
        .as_ref()
        .and_then(|a| a.l2.as_ref())
        .and_then(|l2| l2.priority);
    match priority {
        Some(0 | 255) => errs.push(
            "spec.announce.l2.priority",
            "must be between 1 and 254 (as a VRRP priority)",
        ),
        Some(_) if ctx == ValidationContext::Controller => errs.push(
            "spec.announce.l2.priority",
            "in a cluster the controller orders each VIP's director nodes itself (spread over \
             the nodes by rendezvous hash); priority orders a standalone hot-standby group \
             (ballast-agent standalone --node-name --peers)",
        ),
        _ => {}
    }
    if ctx == ValidationContext::Standalone
        && spec.announce.as_ref().is_some_and(|a| a.bgp.is_some())
    {
        errs.push(
            "spec.announce.bgp",
            "standalone mode has no BGP speaker, so the VIPs would not be advertised to \
             routers; remove it (standalone answers ARP on its interface, as announce.l2 does) \
             or run under the controller",
        );
    }
}

fn is_label_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

//! Pure: from the documents read this time (and the last valid version of
//! each object) to the services to program and the errors to report. An
//! object whose new version is invalid keeps serving its last valid version:
//! a typo must not take a VIP down.
use std::collections::BTreeMap;

use ballast_api::validate::{self, Forwarding, Protocol, ServiceSpec};

use crate::abi;
use crate::config_files::Document;
use crate::dataplane::{DesiredBackend, DesiredService};

/// TCP MSS that leaves room for the 8-byte TOA option on a 1500-byte MTU.
pub const DEFAULT_TOA_MSS: u16 = 1500 - 40 - 8;

#[derive(Debug, Default, Clone)]
pub struct LastGood {
    /// object ("namespace/name") -> (file it came from, its services)
    objects: BTreeMap<String, (String, Vec<ServiceSpec>)>,
}

#[derive(Debug, Default)]
pub struct Resolved {
    pub services: Vec<ServiceSpec>,
    pub errors: Vec<String>,
}

fn file_of(source: &str) -> &str {
    source.rsplit_once('#').map_or(source, |(f, _)| f)
}

/// Validates every document, falls back to last-good versions, and drops
/// (with an error) services whose (VIP, port, protocol) another object holds.
pub fn resolve(docs: &[Document], last: &mut LastGood) -> Resolved {
    let mut out = Resolved::default();
    let mut current: BTreeMap<String, (String, Vec<ServiceSpec>)> = BTreeMap::new();
    let mut broken_files = Vec::new();

    for d in docs {
        match &d.parsed {
            Err(e) => {
                out.errors.push(format!("{}: {e}", d.source));
                broken_files.push(file_of(&d.source).to_string());
            }
            Ok(vs) => {
                let obj = format!(
                    "{}/{}",
                    vs.metadata.namespace.as_deref().unwrap_or("default"),
                    vs.metadata.name.as_deref().unwrap_or("")
                );
                match validate::validate_standalone(vs) {
                    Ok(specs) => {
                        current.insert(obj, (file_of(&d.source).to_string(), specs));
                    }
                    Err(e) => {
                        let kept = last.objects.get(&obj).cloned();
                        let note = if kept.is_some() {
                            " (keeping its last valid version)"
                        } else {
                            ""
                        };
                        out.errors.push(format!("{}: {e}{note}", d.source));
                        if let Some(k) = kept {
                            current.insert(obj, k);
                        }
                    }
                }
            }
        }
    }
    // A document that does not even parse cannot be matched to an object:
    // keep whatever last came from its file.
    for (obj, entry) in &last.objects {
        if broken_files.contains(&entry.0) && !current.contains_key(obj) {
            current.insert(obj.clone(), entry.clone());
        }
    }

    // The first object (in name order) keeps a contested (VIP, port,
    // protocol); a later one is refused whole rather than served in part.
    let all: Vec<ServiceSpec> = current
        .values()
        .flat_map(|(_, s)| s.iter().cloned())
        .collect();
    let conflicts = validate::check_conflicts(&all);
    let refused: std::collections::BTreeSet<&str> =
        conflicts.iter().map(|e| e.object.as_str()).collect();
    out.errors.extend(conflicts.iter().map(|e| e.to_string()));
    out.services = all
        .iter()
        .filter(|s| !refused.contains(s.object.as_str()))
        .cloned()
        .collect();
    last.objects = current;
    out
}

/// Maps validated specs to data plane services.
pub fn to_desired(specs: &[ServiceSpec], announce: bool, toa_mss: u16) -> Vec<DesiredService> {
    specs
        .iter()
        .map(|s| DesiredService {
            name: format!(
                "{}:{}",
                s.object,
                if s.port_name.is_empty() {
                    s.port.to_string()
                } else {
                    s.port_name.clone()
                }
            ),
            vip: s.vip,
            port: s.port,
            proto: match s.protocol {
                Protocol::Tcp => 6,
                Protocol::Udp => 17,
            },
            mode: match s.forwarding {
                Forwarding::FullNat => abi::MODE_FULLNAT,
                Forwarding::Dr => abi::MODE_DR,
                Forwarding::Nat => abi::MODE_NAT,
            },
            flags: if s.toa { abi::SVC_TOA } else { 0 },
            mss_max: if s.toa { toa_mss } else { 0 },
            persist_timeout_s: s.persistence_timeout_s,
            announce,
            backends: s
                .backends
                .iter()
                .map(|b| DesiredBackend {
                    addr: b.address,
                    port: s.target_port,
                    weight: b.weight,
                })
                .collect(),
        })
        .collect()
}

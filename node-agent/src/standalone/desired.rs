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
            source_ranges: s.source_ranges.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(source: &str, name: &str, vip: &str, forwarding: &str) -> Document {
        let yaml = format!(
            "apiVersion: ballast.dev/v1alpha1\nkind: VirtualServer\nmetadata: {{name: {name}, namespace: default}}\n\
             spec:\n  addresses: [{vip}]\n  ports: [{{port: 80, protocol: TCP}}]\n  forwarding: {forwarding}\n  \
             backends: {{static: [{{address: 198.51.100.11}}]}}\n"
        );
        Document {
            source: source.into(),
            parsed: ballast_api::parse_yaml(&yaml),
        }
    }

    #[test]
    fn invalid_update_keeps_the_last_valid_version() {
        let mut last = LastGood::default();
        let r = resolve(&[doc("a.yaml#1", "web", "203.0.113.10", "DR")], &mut last);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!(r.services.len(), 1);

        let r = resolve(
            &[doc("a.yaml#1", "web", "203.0.113.10", "Bogus")],
            &mut last,
        );
        assert_eq!(r.services.len(), 1, "still served");
        assert_eq!(r.services[0].forwarding, Forwarding::Dr);
        assert!(r.errors[0].starts_with("a.yaml#1: "), "{:?}", r.errors);

        // A file that does not parse at all keeps what came from it.
        let broken = Document {
            source: "a.yaml#1".into(),
            parsed: Err("bad indentation at line 3".into()),
        };
        let r = resolve(&[broken], &mut last);
        assert_eq!(r.services.len(), 1);

        // Deleted: gone.
        let r = resolve(&[], &mut last);
        assert!(r.services.is_empty());
    }

    #[test]
    fn a_contested_address_goes_to_the_first_object() {
        let mut last = LastGood::default();
        let r = resolve(
            &[
                doc("a.yaml#1", "alpha", "203.0.113.10", "FullNAT"),
                doc("b.yaml#1", "beta", "203.0.113.10", "NAT"),
            ],
            &mut last,
        );
        assert_eq!(r.services.len(), 1);
        assert_eq!(r.services[0].object, "default/alpha");
        assert_eq!(r.errors.len(), 1);
        assert!(
            r.errors[0].contains("default/beta") && r.errors[0].contains("default/alpha"),
            "{:?}",
            r.errors
        );
    }

    #[test]
    fn to_desired_maps_modes_and_toa() {
        let mut last = LastGood::default();
        let r = resolve(&[doc("a.yaml#1", "web", "203.0.113.10", "NAT")], &mut last);
        let d = to_desired(&r.services, true, DEFAULT_TOA_MSS);
        assert_eq!(d[0].mode, abi::MODE_NAT);
        assert_eq!(d[0].name, "default/web:80");
        assert_eq!(d[0].mss_max, 0, "no clamp without TOA");
        assert_eq!(d[0].backends[0].port, 80, "targetPort defaults to port");
    }
}

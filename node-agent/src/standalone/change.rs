//! Pure: what one reload changes in what the files serve, as the agent
//! core takes a change ([`crate::core::NodeChange`]): the objects whose
//! services differ from the last round's, and how many services each VIP
//! gained or lost (L2 announcements follow the set of served VIPs). The
//! source hands this over instead of the whole version, so the core
//! validates, lowers and plans only what a reload touches.
use std::collections::BTreeMap;
use std::iter::Peekable;
use std::net::Ipv4Addr;

use super::ownership::{Version, same};
use crate::core::Service;

/// One reload's change to the services served.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServedChange {
    /// Each object named has exactly these services from now on (none:
    /// no longer served).
    pub objects: BTreeMap<String, Vec<Service>>,
    /// Services each VIP gained (positive) or lost; VIPs that did not move
    /// are absent.
    pub vips: BTreeMap<Ipv4Addr, isize>,
}

impl ServedChange {
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }
}

/// The change from `before` to `after` (object -> services, by name). Both
/// are walked side by side: one comparison per object, copies only of the
/// objects that changed.
pub fn between(
    before: &BTreeMap<String, Version>,
    after: &BTreeMap<String, Version>,
) -> ServedChange {
    let mut out = ServedChange::default();
    let mut old = before.iter().peekable();
    for (name, services) in after {
        take_gone(&mut old, Some(name), &mut out);
        let held = old.next_if(|(o, _)| *o == name).map(|(_, s)| &s[..]);
        if !held.is_some_and(|h| same(services, h)) {
            out.moved(held.unwrap_or_default(), services);
            out.objects.insert(name.clone(), services.to_vec());
        }
    }
    take_gone(&mut old, None, &mut out);
    out
}

/// Objects of `old` before `until` (all of them for `None`) are gone.
fn take_gone<'a>(
    old: &mut Peekable<impl Iterator<Item = (&'a String, &'a Version)>>,
    until: Option<&String>,
    out: &mut ServedChange,
) {
    while let Some((gone, services)) = old.next_if(|(o, _)| until.is_none_or(|u| *o < u)) {
        out.moved(services, &[]);
        out.objects.insert(gone.clone(), Vec::new());
    }
}

impl ServedChange {
    /// `object` goes from serving `from` to serving `to` (none: gone).
    pub fn record(&mut self, object: &str, from: &[Service], to: &[Service]) {
        self.moved(from, to);
        self.objects.insert(object.to_string(), to.to_vec());
    }

    fn moved(&mut self, from: &[Service], to: &[Service]) {
        for s in from {
            *self.vips.entry(s.vip).or_default() -= 1;
        }
        for s in to {
            *self.vips.entry(s.vip).or_default() += 1;
        }
        self.vips.retain(|_, n| *n != 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Backend;
    use ballast_api::{Forwarding, Protocol};

    fn svc(object: &str, vip: [u8; 4], port: u16, backend: [u8; 4]) -> Service {
        Service::new(
            object,
            (Ipv4Addr::from(vip), port, Protocol::Tcp),
            Forwarding::FullNat,
            [Backend {
                address: Ipv4Addr::from(backend),
                port: 80,
                weight: 1,
            }],
        )
    }

    fn state(services: &[Service]) -> BTreeMap<String, Version> {
        let mut out: BTreeMap<String, Vec<Service>> = BTreeMap::new();
        for s in services {
            out.entry(s.object.clone()).or_default().push(s.clone());
        }
        out.into_iter().map(|(o, v)| (o, v.into())).collect()
    }

    /// desc, served before, served after, objects changed, VIP (last
    /// octet) moves.
    type Case = (
        &'static str,
        Vec<Service>,
        Vec<Service>,
        Vec<&'static str>,
        Vec<(u8, isize)>,
    );

    const V1: [u8; 4] = [203, 0, 113, 10];
    const V2: [u8; 4] = [203, 0, 113, 11];
    const B1: [u8; 4] = [198, 51, 100, 11];
    const B2: [u8; 4] = [198, 51, 100, 12];

    #[test]
    fn table() {
        let a80 = svc("ns/a", V1, 80, B1);
        let a443 = svc("ns/a", V1, 443, B1);
        let b = svc("ns/b", V2, 80, B1);
        let c = svc("ns/c", V1, 8080, B1);
        let cases: Vec<Case> = vec![
            ("nothing held, nothing read", vec![], vec![], vec![], vec![]),
            (
                "no change: nothing, whatever the size",
                vec![a80.clone(), a443.clone(), b.clone(), c.clone()],
                vec![a80.clone(), a443.clone(), b.clone(), c.clone()],
                vec![],
                vec![],
            ),
            (
                "first round: every object, every VIP",
                vec![],
                vec![a80.clone(), b.clone()],
                vec!["ns/a", "ns/b"],
                vec![(10, 1), (11, 1)],
            ),
            (
                "one backend changed: that object alone; its VIP keeps its count",
                vec![a80.clone(), b.clone(), c.clone()],
                vec![a80.clone(), svc("ns/b", V2, 80, B2), c.clone()],
                vec!["ns/b"],
                vec![],
            ),
            (
                "an object gone in the middle, one added at the end",
                vec![a80.clone(), b.clone()],
                vec![a80.clone(), c.clone()],
                vec!["ns/b", "ns/c"],
                vec![(10, 1), (11, -1)],
            ),
            (
                "the last objects gone",
                vec![a80.clone(), b.clone(), c.clone()],
                vec![a80.clone()],
                vec!["ns/b", "ns/c"],
                vec![(10, -1), (11, -1)],
            ),
            (
                "an object's second port: the object, one more service on its VIP",
                vec![a80.clone(), b.clone()],
                vec![a80.clone(), a443.clone(), b.clone()],
                vec!["ns/a"],
                vec![(10, 1)],
            ),
            (
                "order within an object is a change",
                vec![a80.clone(), a443.clone()],
                vec![a443.clone(), a80.clone()],
                vec!["ns/a"],
                vec![],
            ),
        ];
        for (desc, before, after, want_objects, want_vips) in cases {
            let (before, after) = (state(&before), state(&after));
            let got = between(&before, &after);
            let names: Vec<&str> = got.objects.keys().map(String::as_str).collect();
            assert_eq!(names, want_objects, "{desc}");
            for (name, services) in &got.objects {
                let want = after.get(name).map_or(&[][..], |v| &v[..]);
                assert_eq!(&services[..], want, "{desc}: {name}");
            }
            let vips: Vec<(u8, isize)> =
                got.vips.iter().map(|(v, n)| (v.octets()[3], *n)).collect();
            assert_eq!(vips, want_vips, "{desc}");
            assert_eq!(got.is_empty(), want_objects.is_empty(), "{desc}");
        }
    }
}

//! [`plan_keys`]: a plan of the touched keys only writes what the whole
//! plan of the same desired state writes, and reads nothing but those keys
//! (and, for VIP flags, the other services of their VIPs).
use std::cell::RefCell;

use super::*;

const VIP2: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 11);

fn on_vip2(port: u16, backends: &[(u8, u32)]) -> DesiredService {
    DesiredService {
        vip: VIP2,
        ..svc(port, backends)
    }
}

/// Three services on one VIP, one on another.
fn start() -> Vec<DesiredService> {
    vec![
        svc(80, &[(1, 1), (2, 1)]),
        svc(81, &[(3, 1)]),
        svc(82, &[(4, 1), (5, 1)]),
        on_vip2(90, &[(6, 1)]),
    ]
}

/// What the planner asked about.
struct Recorder<'a> {
    wanted: BTreeMap<SvcKey, &'a DesiredService>,
    asked: RefCell<BTreeSet<SvcKey>>,
}

impl DesiredByKey for Recorder<'_> {
    fn get(&self, key: &SvcKey) -> Option<&DesiredService> {
        self.asked.borrow_mut().insert(*key);
        self.wanted.get(key).copied()
    }
}

fn key(d: &DesiredService) -> SvcKey {
    d.key()
}

type Edit = fn(&mut Vec<DesiredService>);

#[test]
fn a_plan_of_the_touched_keys_writes_what_the_whole_plan_writes() {
    let table: Vec<(&str, Edit)> = vec![
        ("nothing", |_| {}),
        ("one backend replaced", |d| d[1] = svc(81, &[(7, 1)])),
        ("one backend drained", |d| d[0] = svc(80, &[(1, 1), (2, 0)])),
        ("a service added", |d| d.push(svc(83, &[(8, 1)]))),
        ("a service removed", |d| {
            d.remove(2);
        }),
        ("the last service of a VIP removed", |d| {
            d.remove(3);
        }),
        ("a VIP's announcement stops", |d| {
            d[3].announce = false;
        }),
        ("one of a VIP's services stops announcing", |d| {
            d[0].announce = false;
        }),
    ];
    for (desc, edit) in table {
        let mut whole = World::new(10_000);
        whole.step(&start());
        let mut keys = World::new(10_000);
        keys.step(&start());

        let before = start();
        let mut after = start();
        edit(&mut after);
        let (want_writes, want_errors) = whole.step(&after);

        // The keys whose desired value differs, and those that went.
        let old: BTreeMap<SvcKey, &DesiredService> = before.iter().map(|d| (key(d), d)).collect();
        let new: BTreeMap<SvcKey, &DesiredService> = after.iter().map(|d| (key(d), d)).collect();
        let touched: BTreeSet<SvcKey> = old
            .keys()
            .chain(new.keys())
            .filter(|k| old.get(k) != new.get(k))
            .copied()
            .collect();
        let recorder = Recorder {
            wanted: new,
            asked: RefCell::default(),
        };
        let mut g = keys.gen_;
        let p = plan_keys(
            keys.cur.clone(),
            &recorder,
            &Keys {
                touched: touched.clone(),
                every_vip: false,
            },
            &mut keys.ring,
            &keys.limits,
            &mut || {
                g += 1;
                g
            },
        );
        assert_eq!(p.writes, want_writes, "{desc}: writes");
        assert_eq!(p.errors, want_errors, "{desc}: errors");
        assert_eq!(p.next.services, whole.cur.services, "{desc}: services");
        assert_eq!(p.next.vips, whole.cur.vips, "{desc}: vips");
        let vips: BTreeSet<u32> = touched.iter().map(|k| k.vip).collect();
        for k in recorder.asked.borrow().iter() {
            assert!(
                touched.contains(k) || vips.contains(&k.vip),
                "{desc}: read {k:?}, neither touched nor on a touched VIP"
            );
        }
    }
}

#[test]
fn a_new_backend_takes_the_lowest_free_slot_without_a_pass_over_the_used_ones() {
    let mut w = World::new(10_000);
    w.step(&start());
    // Slots 0..6 in use: the next search starts past them.
    assert_eq!(w.cur.backends_used_below, 6);
    // Backend 3 (slot 2) leaves service 81 for backend 7: the new one
    // takes slot 6 (slot 2 is in use until the flip), and slot 2 is free
    // from then on.
    let mut next = start();
    next[1] = svc(81, &[(7, 1)]);
    let (writes, _) = w.step(&next);
    assert_eq!(
        writes
            .backends
            .iter()
            .map(|(id, _)| *id)
            .collect::<Vec<_>>(),
        [6]
    );
    assert_eq!(w.cur.backends_used_below, 2);
    // The next new backend takes it.
    next[1] = svc(81, &[(7, 1), (8, 1)]);
    let (writes, _) = w.step(&next);
    let new: Vec<u32> = writes.backend_counter_resets.clone();
    assert_eq!(new, [2]);
    assert_eq!(w.cur.backends_used_below, 3);
}

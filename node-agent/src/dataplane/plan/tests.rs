use super::*;
use crate::abi::SrcRangeData;

fn svc(port: u16, backends: &[(u8, u32)]) -> DesiredService {
    DesiredService::new(
        format!("t/s:{port}"),
        (Ipv4Addr::new(203, 0, 113, 10), port, 6),
        abi::MODE_FULLNAT,
        8080,
        backends
            .iter()
            .map(|&(i, w)| (Ipv4Addr::new(198, 51, 100, 10 + i), w)),
    )
}

/// Automatic table sizes: 2 slots for one backend, 257 for 2-4.
const LIMITS: PlanLimits = PlanLimits {
    forced_maglev_size: None,
    max_services: 8,
    max_backends: 16,
    max_src_ranges: 4,
};

struct World {
    cur: Programmed,
    ring: RingAllocator,
    limits: PlanLimits,
    gen_: u32,
}

impl World {
    fn new(ring_slots: u32) -> Self {
        Self {
            cur: Programmed::default(),
            ring: RingAllocator::new(ring_slots),
            limits: LIMITS,
            gen_: 0,
        }
    }

    /// Plans a step and checks, for every step of every test, the no-gap
    /// invariant: no ring write touches a region that a service entry
    /// programmed before this step reads (each service keeps forwarding
    /// through its old table until its entry flips to the new one).
    fn step(&mut self, desired: &[DesiredService]) -> (MapWrites, Vec<PlanError>) {
        let mut g = self.gen_;
        let p = plan(
            self.cur.clone(),
            desired,
            &mut self.ring,
            &self.limits,
            &mut || {
                g += 1;
                g
            },
        );
        for (off, ids) in &p.writes.rings {
            let (start, end) = (u64::from(*off), *off as u64 + ids.len() as u64);
            for v in self.cur.services.values().filter(|v| v.ring_size > 0) {
                let (vs, ve) = (
                    u64::from(v.ring_offset),
                    v.ring_offset as u64 + v.ring_size as u64,
                );
                assert!(
                    end <= vs || ve <= start,
                    "ring write {start}..{end} overwrites live region {vs}..{ve} of service {}",
                    v.id
                );
            }
        }
        self.gen_ = g;
        self.cur = p.next;
        (p.writes, p.errors)
    }
}

#[test]
fn new_service_writes_backends_ring_service_and_vip() {
    let mut w = World::new(1000);
    let (writes, errors) = w.step(&[svc(80, &[(1, 1), (2, 1)])]);
    assert!(errors.is_empty());
    assert_eq!(writes.backends.len(), 2);
    assert!(
        writes
            .backends
            .iter()
            .all(|(_, b)| b.flags == abi::BACKEND_LIVE | abi::BACKEND_ACCEPTS)
    );
    assert_eq!(writes.rings.len(), 1);
    assert_eq!(writes.rings[0].1.len(), 257);
    let ids: BTreeSet<u32> = writes.backends.iter().map(|(id, _)| *id).collect();
    assert!(
        writes.rings[0].1.iter().all(|id| ids.contains(id)),
        "ring only names the service's backends"
    );
    assert_eq!(writes.services.len(), 1);
    assert_eq!(writes.services[0].1.ring_size, 257);
    assert_eq!(writes.svc_counter_resets, vec![writes.services[0].1.id]);
    assert_eq!(
        writes.backend_counter_resets,
        writes
            .backends
            .iter()
            .map(|(id, _)| *id)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        writes.vips_set,
        vec![(
            abi::be_addr(Ipv4Addr::new(203, 0, 113, 10)),
            abi::VIP_ANNOUNCE
        )]
    );
}

#[test]
fn unchanged_configuration_writes_nothing() {
    let mut w = World::new(1000);
    let d = [svc(80, &[(1, 1), (2, 1)])];
    w.step(&d);
    let (writes, errors) = w.step(&d);
    assert!(errors.is_empty());
    assert_eq!(writes, MapWrites::default());
}

#[test]
fn one_backend_replaced_rewrites_only_its_service() {
    // Room for the three tables and the new one beside the old.
    let mut w = World::new(4 * 257);
    let before = [
        svc(80, &[(1, 1), (2, 1)]),
        svc(81, &[(3, 1), (4, 1)]),
        svc(82, &[(5, 1), (6, 1)]),
    ];
    w.step(&before);
    let key = before[1].key();
    let old = w.cur.services[&key];
    let (old_id, old_b4) = w
        .cur
        .backends
        .iter()
        .find(|(_, b)| b.addr == abi::be_addr(Ipv4Addr::new(198, 51, 100, 14)))
        .map(|(&id, &b)| (id, b))
        .unwrap();
    let mut after = before.clone();
    after[1] = svc(81, &[(3, 1), (7, 1)]);
    let (writes, errors) = w.step(&after);
    assert!(errors.is_empty(), "{errors:?}");
    // The new backend takes the lowest free slot, with the next generation.
    let new_id = 6;
    let new_off = writes.rings.first().map(|r| r.0).expect("one table");
    assert_eq!(
        writes,
        MapWrites {
            backends: vec![(
                new_id,
                BackendValue {
                    addr: abi::be_addr(Ipv4Addr::new(198, 51, 100, 17)),
                    port: abi::be_port(8080),
                    flags: abi::BACKEND_LIVE | abi::BACKEND_ACCEPTS,
                    pad: 0,
                    gen_: 7,
                    svc_id: old.id,
                }
            )],
            backend_counter_resets: vec![new_id],
            rings: vec![(new_off, writes.rings[0].1.clone())],
            services: vec![(
                key,
                SvcValue {
                    ring_offset: new_off,
                    ..old
                }
            )],
            backend_retires: vec![(old_id, BackendValue { flags: 0, ..old_b4 })],
            ..Default::default()
        }
    );
    assert_ne!(new_off, old.ring_offset, "new table in a new region");
    let in_ring: BTreeSet<u32> = writes.rings[0].1.iter().copied().collect();
    assert_eq!(in_ring.len(), 2, "backend 3 and the new one");
    assert!(in_ring.contains(&new_id) && !in_ring.contains(&old_id));
}

#[test]
fn drain_keeps_the_slot_and_moves_the_ring() {
    let mut w = World::new(1000);
    let (first, _) = w.step(&[svc(80, &[(1, 1), (2, 1)])]);
    let old_svc = first.services[0].1;
    let b2 = first.backends[1];
    let (writes, _) = w.step(&[svc(80, &[(1, 1), (2, 0)])]);
    assert_eq!(
        writes.backends,
        vec![(
            b2.0,
            BackendValue {
                flags: abi::BACKEND_LIVE,
                ..b2.1
            }
        )],
        "same slot and generation"
    );
    assert_eq!(writes.rings.len(), 1);
    assert_ne!(
        writes.rings[0].0, old_svc.ring_offset,
        "new table in a new region"
    );
    assert!(
        !writes.rings[0].1.contains(&b2.0),
        "drained backend takes no new flows"
    );
    assert!(writes.backend_retires.is_empty());
    assert_eq!(
        writes.services[0].1.ring_size, 257,
        "a drain does not change the table size"
    );
    // The old region is free again.
    assert_eq!(w.ring.free_slots(), 1000 - 257);
}

#[test]
fn removed_backend_and_service_are_retired_after_the_flip() {
    let mut w = World::new(1000);
    let (first, _) = w.step(&[svc(80, &[(1, 1), (2, 1)]), svc(81, &[(3, 1)])]);
    let (writes, _) = w.step(&[svc(80, &[(1, 1)])]);
    let b2 = first
        .backends
        .iter()
        .find(|(_, b)| b.addr == abi::be_addr(Ipv4Addr::new(198, 51, 100, 12)))
        .unwrap();
    assert!(
        writes
            .backend_retires
            .iter()
            .any(|(id, b)| *id == b2.0 && b.flags == 0)
    );
    assert_eq!(writes.service_deletes.len(), 1);
    assert_eq!(
        writes.backend_retires.len(),
        2,
        "backend 2 of :80 and backend 3 of :81"
    );
    assert!(writes.vips_delete.is_empty(), "the VIP still serves :80");
    assert_eq!(w.cur.backends.len(), 1);
    let (writes, _) = w.step(&[]);
    assert_eq!(writes.vips_delete.len(), 1);
    assert_eq!(w.ring.free_slots(), 1000);
}

#[test]
fn a_service_that_does_not_fit_fails_alone() {
    // Two one-backend services (2 slots each) and one 257-slot table.
    let mut w = World::new(2 + 2 + 257);
    let (_, errors) = w.step(&[svc(80, &[(1, 1)]), svc(81, &[(1, 1)])]);
    assert!(errors.is_empty());
    // Rebuilding :80 takes the last free region (its old one is freed
    // only after the flip), so the new :82 does not fit this time...
    let d = [
        svc(80, &[(1, 1), (2, 1)]),
        svc(81, &[(1, 1)]),
        svc(82, &[(1, 1)]),
    ];
    let (writes, errors) = w.step(&d);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(matches!(&errors[0], PlanError::RingFull { service, .. } if service == "t/s:82"));
    assert_eq!(writes.services.len(), 1, ":80 is still updated");
    assert_eq!(w.cur.services.len(), 2);
    // ...and fits on the next pass, once :80's old region is free.
    let (writes, errors) = w.step(&d);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(writes.services.len(), 1);
    assert_eq!(w.cur.services.len(), 3);
}

#[test]
fn all_drained_service_has_an_empty_ring() {
    let mut w = World::new(100);
    let (writes, _) = w.step(&[svc(80, &[(1, 0)])]);
    assert!(writes.rings.is_empty());
    assert_eq!(writes.services[0].1.ring_size, 0);
}

fn ranged(port: u16, ranges: &[&str]) -> DesiredService {
    let mut d = svc(port, &[(1, 1)]);
    d.source_ranges = ranges.iter().map(|r| r.parse().unwrap()).collect();
    d
}

fn mapped(a: [u8; 4], bits: u32) -> SrcRange {
    SrcRange {
        addr_bits: 96 + bits,
        addr: Ipv4Addr::from(a).to_ipv6_mapped().octets(),
    }
}

#[test]
fn source_range_entries_are_ipv4_mapped_with_host_bits_cleared() {
    let r = SrcRange::of(&"192.0.2.130/25".parse().unwrap());
    assert_eq!(r, mapped([192, 0, 2, 128], 25));
    assert_eq!(
        r.key(7),
        (
            32 + 96 + 25,
            SrcRangeData {
                svc_id: 7,
                addr: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 128],
            }
        )
    );
    let v6 = SrcRange::of(&"2001:db8::/32".parse().unwrap());
    assert_eq!(v6.addr_bits, 32);
    assert_eq!(&v6.addr[..4], &[0x20, 0x01, 0x0d, 0xb8]);
}

#[test]
fn source_ranges_widen_before_the_flip_and_narrow_after() {
    let mut w = World::new(100);
    let (writes, errors) = w.step(&[ranged(80, &["192.0.2.128/25", "198.51.100.0/24"])]);
    assert!(errors.is_empty(), "{errors:?}");
    let id = writes.services[0].1.id;
    assert_eq!(
        writes.src_ranges_add,
        vec![
            (id, mapped([192, 0, 2, 128], 25)),
            (id, mapped([198, 51, 100, 0], 24)),
        ]
    );
    assert!(writes.src_ranges_delete.is_empty());
    assert_eq!(
        writes.services[0].1.flags,
        abi::SVC_SOURCE_RANGES,
        "the service checks ranges"
    );

    // Narrowed: the new prefix goes in before, the old ones out after;
    // the service entry itself does not change.
    let (writes, _) = w.step(&[ranged(80, &["192.0.2.192/26"])]);
    assert_eq!(
        writes.src_ranges_add,
        vec![(id, mapped([192, 0, 2, 192], 26))]
    );
    assert_eq!(
        writes.src_ranges_delete,
        vec![
            (id, mapped([192, 0, 2, 128], 25)),
            (id, mapped([198, 51, 100, 0], 24)),
        ]
    );
    assert!(writes.services.is_empty());
    assert_eq!(
        writes,
        MapWrites {
            src_ranges_add: writes.src_ranges_add.clone(),
            src_ranges_delete: writes.src_ranges_delete.clone(),
            ..Default::default()
        },
        "nothing else is written"
    );

    // Ranges dropped: the flag goes off at the flip, the entry after.
    let (writes, _) = w.step(&[ranged(80, &[])]);
    assert_eq!(writes.services[0].1.flags, 0);
    assert_eq!(
        writes.src_ranges_delete,
        vec![(id, mapped([192, 0, 2, 192], 26))]
    );
    assert!(w.cur.src_ranges.is_empty());

    // A deleted service takes its entries with it.
    w.step(&[ranged(80, &["192.0.2.0/24"])]);
    let (writes, _) = w.step(&[]);
    assert_eq!(
        writes.src_ranges_delete,
        vec![(id, mapped([192, 0, 2, 0], 24))]
    );
    assert!(w.cur.src_ranges.is_empty());
}

#[test]
fn a_full_source_range_table_refuses_the_service_that_overflows_it() {
    let mut w = World::new(100);
    let three = ["192.0.2.0/26", "192.0.2.64/26", "192.0.2.128/26"];
    let (_, errors) = w.step(&[ranged(80, &three)]);
    assert!(errors.is_empty());
    let (writes, errors) = w.step(&[
        ranged(80, &three),
        ranged(81, &["198.51.100.0/24", "203.0.113.0/24"]),
    ]);
    assert_eq!(
        errors,
        vec![PlanError::TooManySourceRanges {
            service: "t/s:81".into(),
            key: ranged(81, &[]).key(),
            max: 4
        }]
    );
    assert!(writes.services.is_empty(), ":81 is not programmed");
    assert_eq!(w.cur.services.len(), 1);
}

/// `n` backends 198.51.100.11.. of weight 1.
fn svc_n(port: u16, n: u8) -> DesiredService {
    let b: Vec<(u8, u32)> = (1..=n).map(|i| (i, 1)).collect();
    svc(port, &b)
}

#[test]
fn table_sizes_follow_the_backend_count() {
    let mut w = World::new(10_000);
    let (writes, errors) = w.step(&[svc_n(80, 1), svc_n(81, 4), svc_n(82, 5)]);
    assert!(errors.is_empty(), "{errors:?}");
    let id = |port: u8| {
        writes
            .backends
            .iter()
            .find(|(_, b)| b.addr == abi::be_addr(Ipv4Addr::new(198, 51, 100, 10 + port)))
            .map(|(id, _)| *id)
            .unwrap()
    };
    // Best fit from an empty storage: back to back, in key order.
    let sizes: Vec<(u32, usize)> = writes.rings.iter().map(|(o, t)| (*o, t.len())).collect();
    assert_eq!(sizes, [(0, 2), (2, 257), (259, 521)]);
    assert_eq!(writes.rings[0].1, [id(1), id(1)], "one backend, two slots");
    let svcs: Vec<(u16, u32, u32)> = writes
        .services
        .iter()
        .map(|(k, v)| (u16::from_be(k.port), v.ring_offset, v.ring_size))
        .collect();
    assert_eq!(svcs, [(80, 0, 2), (81, 2, 257), (82, 259, 521)]);
}

#[test]
fn crossing_a_size_boundary_moves_to_a_new_region_without_a_gap() {
    // 0 -> 1 -> 5 -> 1 -> 0 backends; `World::step` checks that no table is
    // written over a region a service still reads.
    let mut w = World::new(2000);
    let (writes, _) = w.step(&[svc(80, &[])]);
    assert!(writes.rings.is_empty());
    assert_eq!(
        (
            writes.services[0].1.ring_offset,
            writes.services[0].1.ring_size
        ),
        (0, 0),
        "no backend, no table: new flows are refused"
    );

    let (writes, _) = w.step(&[svc_n(80, 1)]);
    assert_eq!(writes.rings.len(), 1);
    assert_eq!((writes.rings[0].0, writes.rings[0].1.len()), (0, 2));
    assert_eq!(writes.services[0].1.ring_size, 2);

    let (writes, _) = w.step(&[svc_n(80, 5)]);
    assert_eq!(
        (writes.rings[0].0, writes.rings[0].1.len()),
        (2, 521),
        "written beside the live 2-slot table"
    );
    let v = writes.services[0].1;
    assert_eq!((v.ring_offset, v.ring_size), (2, 521));
    assert_eq!(w.ring.free_slots(), 2000 - 521, "the old table is freed");

    let (writes, _) = w.step(&[svc_n(80, 1)]);
    assert_eq!(
        (writes.rings[0].0, writes.rings[0].1.len()),
        (0, 2),
        "the freed 2-slot hole, outside the live table"
    );
    assert_eq!(writes.services[0].1.ring_size, 2);
    assert_eq!(w.ring.free_slots(), 2000 - 2);

    let (writes, _) = w.step(&[svc(80, &[])]);
    assert!(writes.rings.is_empty());
    assert_eq!(writes.services[0].1.ring_size, 0);
    assert_eq!(w.ring.free_slots(), 2000);
}

#[test]
fn drains_and_down_backends_keep_the_size() {
    // Health verdicts reach the planner as weight 0 and differ between
    // directors: the size counts listed backends, so all agree.
    let mut w = World::new(5000);
    w.step(&[svc_n(80, 5)]);
    for weights in [[1, 0, 1, 1, 1], [0, 0, 0, 0, 1], [1, 1, 1, 1, 1]] {
        let b: Vec<(u8, u32)> = (1..=5).zip(weights).collect();
        let (writes, errors) = w.step(&[svc(80, &b)]);
        assert!(errors.is_empty());
        assert_eq!(writes.rings[0].1.len(), 521, "{weights:?}");
        assert_eq!(writes.services[0].1.ring_size, 521, "{weights:?}");
    }
}

#[test]
fn a_forced_size_applies_to_every_service_and_a_service_size_wins() {
    let mut w = World::new(1000);
    w.limits.forced_maglev_size = Some(13);
    let mut own = svc_n(81, 2);
    own.maglev_size = Some(7);
    let (writes, errors) = w.step(&[svc_n(80, 1), own.clone(), svc_n(82, 5)]);
    assert!(errors.is_empty(), "{errors:?}");
    let sizes: Vec<u32> = writes.services.iter().map(|(_, v)| v.ring_size).collect();
    assert_eq!(sizes, [13, 7, 13]);

    // A new size alone (same backends) rebuilds the table.
    own.maglev_size = Some(11);
    let (writes, _) = w.step(&[svc_n(80, 1), own.clone(), svc_n(82, 5)]);
    assert_eq!(writes.rings.len(), 1);
    assert_eq!(writes.rings[0].1.len(), 11);
    assert_eq!(writes.services.len(), 1);

    // A size that cannot hold a table fails that service alone, which keeps
    // its table.
    own.maglev_size = Some(12);
    let (writes, errors) = w.step(&[svc_n(80, 1), own.clone(), svc_n(82, 5)]);
    assert_eq!(
        errors,
        [PlanError::Maglev {
            service: "t/s:81".into(),
            key: own.key(),
            size: 12,
            reason: "Maglev table size 12 is not prime".into(),
        }]
    );
    assert_eq!(writes, MapWrites::default());
    own.maglev_size = Some(3);
    let mut bigger = own.clone();
    bigger.backends = svc_n(81, 5).backends;
    let (_, errors) = w.step(&[svc_n(80, 1), bigger, svc_n(82, 5)]);
    assert!(
        matches!(&errors[..], [PlanError::Maglev { size: 3, .. }]),
        "{errors:?}"
    );
    assert_eq!(
        w.cur.services.values().map(|v| v.ring_size).sum::<u32>(),
        13 + 11 + 13
    );
}

#[test]
fn a_full_storage_of_larger_tables_shrinks_pass_by_pass() {
    // An older agent gave every service 13 slots and left 2 free; each pass
    // (Director::apply repeats them while one programs a table) moves the
    // services that fit, freeing room for the next after their flip.
    let mut w = World::new(3 * 13 + 2);
    w.limits.forced_maglev_size = Some(13);
    let d = [svc_n(80, 1), svc_n(81, 1), svc_n(82, 1)];
    assert!(w.step(&d).1.is_empty());
    w.limits.forced_maglev_size = None;

    let (writes, errors) = w.step(&d);
    assert_eq!(writes.rings.len(), 1, ":80 takes the 2 free slots");
    assert_eq!(
        errors
            .iter()
            .filter(|e| matches!(e, PlanError::RingFull { .. }))
            .count(),
        2
    );
    let (writes, errors) = w.step(&d);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(writes.rings.len(), 2, "into :80's old region");
    let (writes, _) = w.step(&d);
    assert_eq!(writes, MapWrites::default(), "settled");
    assert!(w.cur.services.values().all(|v| v.ring_size == 2));
    assert_eq!(w.ring.free_slots(), 41 - 6);
}

#[test]
fn out_of_backend_slots_is_the_error_of_the_service_that_does_not_fit() {
    let mut w = World::new(10_000);
    w.limits.max_backends = 4;
    let d = [
        svc(80, &[(1, 1), (2, 1), (3, 1)]),
        svc(81, &[(4, 1), (5, 1)]),
    ];
    let (writes, errors) = w.step(&d);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        matches!(&errors[0], PlanError::TooManyBackends { service, max: 4, .. } if service == "t/s:81")
    );
    assert!(
        errors[0].to_string().contains("--backend-slots"),
        "{}",
        errors[0]
    );
    assert_eq!(writes.services.len(), 1, ":80 is programmed");
    assert_eq!(w.cur.backends.len(), 3);
}

mod keys;

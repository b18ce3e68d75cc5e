//! The agent core in-process: versions handed to a running `Agent` through
//! its handle (`run(requests, shutdown)`), each answered with an exact
//! `ApplyReport`, and what the data plane does after each checked with
//! packets through BPF_PROG_TEST_RUN (ballast_testbed::packet).
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use aya::programs::Xdp;
use aya_obj::programs::XdpAttachType;
use ballast_agent::abi::{self, SvcKey};
use ballast_agent::core::{
    self, Agent, Announcements, ApplyError, ApplyReport, Backend, NodeDesired, Service,
    ServiceProblem, ServiceRef, Settings,
};
use ballast_agent::dataplane::maps::Maps;
use ballast_agent::dataplane::ring_alloc::RingFull;
use ballast_agent::dataplane::{PlanError, map_memory};
use ballast_api::{Forwarding, Protocol};
use ballast_testbed::frames::*;
use ballast_testbed::packet::*;
use ballast_testbed::require_root;
use ballast_testbed::world::*;

/// A second SNAT address the last version switches to.
const SNAT_ADDR_2: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 4);

fn web(port: u16, protocol: Protocol, backends: &[usize]) -> Service {
    Service::new(
        "default/web",
        (VIP, port, protocol),
        Forwarding::FullNat,
        backends.iter().map(|&i| Backend {
            address: backend_addr(i),
            port: 8080,
            weight: 1,
        }),
    )
}

fn version(version: u64, snat: Ipv4Addr, services: Vec<Service>) -> NodeDesired {
    NodeDesired {
        version,
        settings: Settings {
            snat_addrs: vec![snat],
            snat_ports: (10_000, 65_000),
        },
        services,
        announce: Announcements {
            l2: [VIP].into(),
            bgp: Default::default(),
        },
    }
}

/// Removes the lab's pins when the test ends, however it ends.
struct Pins(PathBuf);

impl Drop for Pins {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// New SYNs to VIP:80 from fresh client ports: the (source, backend) pairs
/// they were forwarded with.
fn new_flows(
    prog: &Xdp,
    ifindex: u32,
    ports: std::ops::Range<u16>,
) -> BTreeSet<(Ipv4Addr, Ipv4Addr)> {
    ports
        .map(|p| {
            let syn = tcp_frame((CLIENT_ADDR, p), (VIP, 80), TCP_SYN, &[], b"");
            let (r, out) = test_run(prog, &syn, ifindex, 1);
            assert_eq!(r.return_value, XDP_TX, "SYN from port {p} forwarded");
            let o = parse(&out);
            (o.src.0, o.dst.0)
        })
        .collect()
}

fn open_agent(pin_dir: &Path, ring_slots: u32, backend_slots: Option<u32>) -> Agent {
    ballast_testbed::in_process::agent(pin_dir, settings(), ring_slots, backend_slots)
}

/// This process's pin directory for one test, emptied of leftovers.
fn fresh_pins(test: &str) -> Pins {
    let pins = Pins(
        PathBuf::from("/sys/fs/bpf/ballast-test")
            .join(format!("blco-core-{}-{test}", std::process::id())),
    );
    let _ = std::fs::remove_dir_all(&pins.0);
    pins
}

/// Applies version 1: two services of two backends each (ports 80, 81).
fn apply_two_services(agent: &mut Agent) -> ApplyReport {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        agent.apply(version(
            1,
            SNAT_ADDR,
            vec![
                web(80, Protocol::Tcp, &[1, 2]),
                web(81, Protocol::Tcp, &[1, 2]),
            ],
        ))
    })
    .unwrap()
}

#[test]
fn a_refused_version_changes_nothing_and_the_next_valid_one_applies() {
    require_root("BPF programs and network namespaces");
    in_private_netns(|ifindex| {
        let pins = fresh_pins("refused");
        let mut agent = open_agent(&pins.0, 64 * 257, None);
        // The program is pinned and opened again, so packets can run while
        // the running agent owns its director.
        let prog_pin = pins.0.join("blco-test-prog");
        agent
            .director_mut()
            .program()
            .expect("program")
            .pin(&prog_pin)
            .expect("pin the program");
        let prog = Xdp::from_pin(&prog_pin, XdpAttachType::Interface).expect("pinned program");
        let b = |i: usize| backend_addr(i);

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (handle, requests) = core::channel();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let steps = async {
                let v1 = version(1, SNAT_ADDR, vec![web(80, Protocol::Tcp, &[1, 2])]);
                assert_eq!(
                    handle.apply(v1).await.unwrap(),
                    ApplyReport {
                        applied_version: 1,
                        errors: vec![],
                        programmed: 1,
                    }
                );
                assert_eq!(
                    new_flows(&prog, ifindex, 40_000..40_020),
                    [(SNAT_ADDR, b(1)), (SNAT_ADDR, b(2))].into()
                );

                // Backends move to 3 and the SNAT address changes, but a
                // second service is invalid (TOA on UDP): nothing changes.
                let mut bad = web(53, Protocol::Udp, &[1]);
                bad.toa = true;
                let v2 = version(2, SNAT_ADDR_2, vec![web(80, Protocol::Tcp, &[3]), bad]);
                assert_eq!(
                    handle.apply(v2).await.unwrap(),
                    ApplyReport {
                        applied_version: 1,
                        errors: vec![ApplyError::Service {
                            service: ServiceRef {
                                object: "default/web".into(),
                                vip: VIP,
                                port: 53,
                                protocol: Protocol::Udp,
                            },
                            problem: ServiceProblem::ToaNeedsTcp,
                        }],
                        programmed: 1,
                    }
                );
                assert_eq!(
                    new_flows(&prog, ifindex, 40_020..40_040),
                    [(SNAT_ADDR, b(1)), (SNAT_ADDR, b(2))].into(),
                    "version 1 still serves, with its SNAT address"
                );

                // The same change without the invalid service: applied,
                // settings included.
                let v3 = version(3, SNAT_ADDR_2, vec![web(80, Protocol::Tcp, &[3])]);
                assert_eq!(
                    handle.apply(v3.clone()).await.unwrap(),
                    ApplyReport {
                        applied_version: 3,
                        errors: vec![],
                        programmed: 1,
                    }
                );
                assert_eq!(
                    new_flows(&prog, ifindex, 40_040..40_060),
                    [(SNAT_ADDR_2, b(3))].into()
                );

                // A version not above the applied one is refused whole.
                assert_eq!(
                    handle.apply(v3).await.unwrap(),
                    ApplyReport {
                        applied_version: 3,
                        errors: vec![ApplyError::StaleVersion {
                            version: 3,
                            applied: 3,
                        }],
                        programmed: 1,
                    }
                );
                stop.send(()).unwrap();
            };
            let (served, ()) = tokio::join!(
                agent.run(requests, async {
                    let _ = stopped.await;
                }),
                steps
            );
            served.expect("the agent ran until shutdown");
            // Gone with its run: a source learns it at once.
            handle.closed().await;
        });
    });
}

#[test]
fn a_service_the_data_plane_has_no_room_for_is_reported_with_the_applied_version() {
    require_root("BPF programs and network namespaces");
    in_private_netns(|_| {
        let pins = fresh_pins("capacity");
        // Room for one table of 257 slots (2 backends), not two.
        let mut agent = open_agent(&pins.0, 300, None);
        let report = apply_two_services(&mut agent);
        assert_eq!(
            report,
            ApplyReport {
                applied_version: 1,
                errors: vec![ApplyError::Capacity {
                    service: ServiceRef {
                        object: "default/web".into(),
                        vip: VIP,
                        port: 81,
                        protocol: Protocol::Tcp,
                    },
                    source: PlanError::RingFull {
                        service: "default/web:81".into(),
                        key: SvcKey {
                            vip: abi::be_addr(VIP),
                            port: abi::be_port(81),
                            proto: TCP,
                            pad: 0,
                        },
                        source: RingFull {
                            requested: 257,
                            capacity: 300,
                            free: 43,
                            largest: 43,
                        },
                    },
                }],
                programmed: 1,
            }
        );
        let programmed: Vec<u16> = agent
            .director()
            .programmed()
            .services
            .keys()
            .map(|k| u16::from_be(k.port))
            .collect();
        assert_eq!(programmed, [80], "the rest of the version is applied");
    });
}

#[test]
fn backend_slots_set_at_load_bound_the_backends_and_running_out_is_the_services_error() {
    require_root("BPF programs and network namespaces");
    in_private_netns(|_| {
        let pins = fresh_pins("backend-slots");
        // Room for three backends: one service of two, not two.
        let mut agent = open_agent(&pins.0, 64 * 257, Some(3));
        assert_eq!(agent.director().maps().backend_slots().unwrap(), 3);
        let memory = map_memory::read(agent.director().maps()).unwrap();
        for map in ["backends", "backend_nexthops", "backend_stats"] {
            assert!(
                memory.iter().any(|m| m.map == map && m.bytes > 0),
                "{map} in {memory:?}"
            );
        }
        let report = apply_two_services(&mut agent);
        assert_eq!(report.programmed, 1);
        let [ApplyError::Capacity { service, source }] = &report.errors[..] else {
            panic!("{:?}", report.errors);
        };
        assert_eq!(service.port, 81);
        assert!(
            matches!(source, PlanError::TooManyBackends { max: 3, .. }),
            "{source:?}"
        );
        assert!(source.to_string().contains("--backend-slots"), "{source}");
    });
}

fn object(name: &str, port: u16, backends: &[usize]) -> Service {
    Service {
        object: format!("default/{name}"),
        ..web(port, Protocol::Tcp, backends)
    }
}

#[test]
fn a_change_writes_what_it_touches_and_a_refused_one_nothing() {
    require_root("BPF programs and network namespaces");
    in_private_netns(|_| {
        let pins = fresh_pins("change");
        let mut agent = open_agent(&pins.0, 64 * 257, None);
        let v1 = version(
            1,
            SNAT_ADDR,
            vec![
                object("a", 80, &[1, 2]),
                object("b", 81, &[1, 2]),
                object("c", 82, &[1, 2]),
            ],
        );
        let report = agent.apply(v1.clone()).unwrap();
        assert_eq!((report.applied_version, report.programmed), (1, 3));
        let written = |agent: &Agent| {
            let d = &agent.last_apply().dataplane;
            (d.entries_written, d.tables_written)
        };
        let programmed = |agent: &Agent| agent.director().programmed().services.clone();

        // Nothing but the version: nothing written.
        let before = programmed(&agent);
        let report = agent
            .apply_change(core::NodeChange {
                version: 2,
                ..Default::default()
            })
            .unwrap();
        assert_eq!((report.applied_version, report.programmed), (2, 3));
        assert_eq!(written(&agent), (0, 0));

        // One object's backend replaced: its new backend (slot and counter
        // reset), its table, its entry and the old backend's retirement.
        let report = agent
            .apply_change(core::NodeChange {
                version: 3,
                objects: [("default/b".into(), vec![object("b", 81, &[1, 3])])].into(),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(report.errors, []);
        assert_eq!(written(&agent), (5, 1));
        let after = programmed(&agent);
        let changed: Vec<u16> = after
            .iter()
            .filter(|(k, v)| before.get(k) != Some(v))
            .map(|(k, _)| u16::from_be(k.port))
            .collect();
        assert_eq!(changed, [81], "only its service entry moved");

        // A change taking a key another object holds: refused whole.
        let report = agent
            .apply_change(core::NodeChange {
                version: 4,
                objects: [
                    ("default/c".into(), vec![]),
                    ("default/d".into(), vec![object("d", 80, &[4])]),
                ]
                .into(),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            report,
            ApplyReport {
                applied_version: 3,
                errors: vec![ApplyError::Service {
                    service: ServiceRef {
                        object: "default/d".into(),
                        vip: VIP,
                        port: 80,
                        protocol: Protocol::Tcp,
                    },
                    problem: ServiceProblem::Duplicate {
                        first: "default/a".into(),
                    },
                }],
                programmed: 3,
            }
        );
        assert_eq!(programmed(&agent), after, "the maps are as they were");
        let mut held = v1;
        held.services[1] = object("b", 81, &[1, 3]);
        assert_eq!(agent.held().to_desired(1), held, "so is the held state");

        // The whole version with the same content as held: nothing written.
        held.version = 5;
        assert_eq!(agent.apply(held).unwrap().applied_version, 5);
        assert_eq!(written(&agent), (0, 0));
    });
}

/// The ring's mappings in this process: the kernel populates a BPF array's
/// mapping whole when it is made, so each costs the ring's size in RSS.
/// Told apart from other tests' by the length (`slots` is this test's own).
fn ring_mappings(slots: u32) -> usize {
    let page = 4096;
    let len = (slots as u64 * 8).div_ceil(page) * page;
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| l.ends_with("anon_inode:bpf-map"))
        .filter(|l| {
            let (range, _) = l.split_once(' ').unwrap();
            let (a, b) = range.split_once('-').unwrap();
            let (a, b) = (
                u64::from_str_radix(a, 16).unwrap(),
                u64::from_str_radix(b, 16).unwrap(),
            );
            b - a == len
        })
        .count()
}

#[test]
fn only_handles_that_write_or_read_tables_map_the_ring() {
    require_root("BPF programs and network namespaces");
    in_private_netns(|_| {
        let pins = fresh_pins("ring-mapping");
        // A size no other test here uses (its mappings are told by length).
        let slots = 50_021;
        let mut agent = open_agent(&pins.0, slots, None);
        assert_eq!(agent.director().maps().ring_slots(), slots);
        assert_eq!(ring_mappings(slots), 0, "opened: nothing written yet");
        apply_two_services(&mut agent);
        assert_eq!(ring_mappings(slots), 1, "the tables written through one");
        // A second handle (the sweeper's, a /metrics scrape's, `stats`)
        // maps nothing until it reads a table.
        let pinned = Maps::open_pinned(&pins.0).unwrap();
        assert_eq!(ring_mappings(slots), 1);
        let key = SvcKey {
            vip: abi::be_addr(VIP),
            port: abi::be_port(80),
            proto: TCP,
            pad: 0,
        };
        let svc = pinned.service(&key).unwrap().expect("programmed");
        let table = pinned.ring_read(svc.ring_offset, svc.ring_size).unwrap();
        assert_eq!(table.len(), svc.ring_size as usize);
        assert_eq!(ring_mappings(slots), 2);
        drop(pinned);
        assert_eq!(ring_mappings(slots), 1, "unmapped with its handle");
    });
}

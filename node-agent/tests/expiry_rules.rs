//! One definition per flow-expiry rule. The data plane's C predicates are
//! what packets obey: conntrack.h (`ct_timeout`, `ct_expired`), flow.h
//! (`ct_usable`, `ct_serves`, `ct_reply_belongs_to`, `ct_reply_held`) and
//! select.h (`svc_persistent`, `persist_fresh`). The sweeper writes them again
//! in Rust (dataplane/sweeper/rules.rs) to judge millions of entries from
//! user space. This test holds the two together: dataplane-ebpf/test/rules.c
//! answers one case per BPF_PROG_TEST_RUN with the C predicates, over the
//! sweeper's own test table (dataplane/sweeper/rules/cases.rs), and every
//! answer must equal the Rust rule's, so that a change to either side fails
//! here (the sweeper's unit tests check the Rust rules against each row's
//! expected outcome). Needs root: it loads a BPF program.
use std::mem::size_of;
use std::path::PathBuf;

use aya::programs::{TestRun, TestRunOptions, Xdp};
use aya::{Ebpf, EbpfLoader};
use ballast_agent::abi::{self, CtValue, DpConfig, FlowKey, PersistValue};
use ballast_agent::dataplane::sweeper::{
    ForwardEntry, PersistOwner, Verdict, ct_expired, ct_timeout, ct_verdict, persist_expired,
    reply_belongs_to,
};

#[path = "../src/dataplane/sweeper/rules/cases.rs"]
mod cases;
use cases::*;

/// rules.c's object, built by ballast-testbed with the other test programs.
static RULES_OBJECT: &[u8] = ballast_testbed::objects::EXPIRY_RULES;

const PROGRAM: &str = "expiry_rules";
const XDP_PASS: u32 = 2;

/// rules.c `struct rules_case`: one row as the C reads it.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Case {
    size: u32,
    persist_timeout_s: u32,
    cfg: DpConfig,
    key: FlowKey,
    entry: CtValue,
    other: CtValue,
    persist: PersistValue,
    now: u64,
}

/// rules.c `struct rules_answer`: each predicate's answer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct Answer {
    timeout: u64,
    expired: u8,
    usable: u8,
    serves: u8,
    belongs: u8,
    held: u8,
    persistent: u8,
    persist_fresh: u8,
    pad: u8,
}

/// The rules program, loaded (not attached), with the maps its headers
/// declare created small and pinned in a directory of its own, removed on
/// drop.
struct Rules {
    ebpf: Ebpf,
    pins: PathBuf,
}

impl Drop for Rules {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.pins);
    }
}

impl Rules {
    fn load(test: &str) -> Self {
        ballast_testbed::require_root("the C side of the rules runs as a BPF program");
        let pins = PathBuf::from("/sys/fs/bpf").join(format!(
            "ballast-expiry-rules-{}-{test}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&pins);
        std::fs::create_dir_all(&pins).expect("pin directory");
        let mut loader = EbpfLoader::new();
        loader.default_map_pin_directory(&pins);
        for map in [
            "services",
            "vips",
            "backends",
            "ring",
            "src_ranges",
            "conntrack",
            "persist",
            "nexthops",
            "backend_nexthops",
            "svc_stats",
            "backend_stats",
        ] {
            loader.map_max_entries(map, 64);
        }
        let mut ebpf = loader.load(RULES_OBJECT).expect("load rules.bpf.o");
        let prog: &mut Xdp = ebpf.program_mut(PROGRAM).unwrap().try_into().unwrap();
        prog.load().expect("the verifier accepts rules.c");
        Rules { ebpf, pins }
    }

    /// The C predicates' answers on one case.
    fn ask(&self, case: Case) -> Answer {
        let case = Case {
            size: size_of::<Case>() as u32,
            ..case
        };
        let mut frame = vec![0u8; size_of::<Case>() + size_of::<Answer>()];
        // SAFETY: the frame holds a Case; Case is plain repr(C) data.
        unsafe { std::ptr::write_unaligned(frame.as_mut_ptr().cast::<Case>(), case) };
        let mut out = vec![0u8; frame.len() + 256];
        let prog: &Xdp = self.ebpf.program(PROGRAM).unwrap().try_into().unwrap();
        let r = prog
            .test_run(TestRunOptions {
                data_in: Some(&frame),
                data_out: Some(&mut out),
                ..Default::default()
            })
            .expect("BPF_PROG_TEST_RUN");
        assert_eq!(
            r.return_value, XDP_PASS,
            "rules.c refused the case: struct rules_case differs from Case?"
        );
        assert!(r.data_size_out as usize >= frame.len());
        // SAFETY: the program wrote an Answer right after the case.
        unsafe { std::ptr::read_unaligned(out[size_of::<Case>()..].as_ptr().cast::<Answer>()) }
    }
}

/// The C predicate, the Rust rule and the table's expected outcome agree.
fn agree<T: PartialEq + std::fmt::Debug>(c: T, rust: T, table: T, what: impl std::fmt::Display) {
    assert!(
        c == rust && rust == table,
        "{what}: C {c:?}, Rust {rust:?}, table {table:?}"
    );
}

/// A forward entry of `proto` in `state` stamped `last_seen`.
fn forward_entry(e: &Expiry) -> Case {
    Case {
        cfg: e.cfg,
        key: FlowKey {
            proto: e.proto,
            ..Default::default()
        },
        entry: CtValue {
            last_seen: e.last_seen,
            state: e.state,
            dir: abi::CT_FORWARD,
            backend_id: 1,
            backend_gen: 1,
            ..Default::default()
        },
        now: e.now,
        ..Default::default()
    }
}

#[test]
fn ct_expiry_is_conntrack_h() {
    let rules = Rules::load("expiry");
    for e in expiry_rows().into_iter().chain(extreme_rows()) {
        let a = rules.ask(forward_entry(&e));
        let expired = ct_expired(&e.cfg, e.proto, e.state, e.last_seen, e.now);
        assert_eq!(a.timeout, ct_timeout(&e.cfg, e.proto, e.state), "{e:?}");
        agree(
            a.expired != 0,
            expired,
            e.expired,
            format!("ct_expired {e:?}"),
        );
        // The director stops using exactly the forward entries the sweeper
        // deletes (for a packet that is not a new SYN, backend configured).
        assert_eq!(a.usable != 0, !expired, "ct_usable: {e:?}");
        assert_eq!(a.serves, a.usable, "ct_serves: {e:?}");
    }
}

#[test]
fn reply_belonging_is_flow_h() {
    let rules = Rules::load("belonging");
    for b in belonging_rows() {
        let a = rules.ask(Case {
            cfg: cfg(),
            key: b.rk,
            entry: b.reply,
            other: b.fwd,
            now: NOW,
            ..Default::default()
        });
        let rust = reply_belongs_to(&b.rk, &b.reply, &b.fwd);
        agree(a.belongs != 0, rust, b.belongs, b.what);
    }
}

#[test]
fn ct_verdicts_are_flow_h() {
    let rules = Rules::load("verdicts");
    let c = cfg();
    for row in verdict_rows() {
        let found = match row.other {
            Other::Found(f) => Some(f),
            Other::NotRead | Other::Absent => None,
        };
        let a = rules.ask(Case {
            cfg: c,
            key: row.key,
            entry: row.entry,
            other: found.unwrap_or_default(),
            now: NOW,
            ..Default::default()
        });
        let rust = ct_verdict(&c, &row.key, &row.entry, NOW, |_| {
            found.map_or(ForwardEntry::Absent, ForwardEntry::Found)
        });
        assert_eq!(
            a.expired != 0,
            ct_expired(&c, row.key.proto, row.entry.state, row.entry.last_seen, NOW),
            "ct_expired: {}",
            row.what
        );
        let c_verdict = if row.entry.dir == abi::CT_FORWARD {
            // Deleted exactly when the director no longer sends along it.
            if a.serves != 0 {
                Verdict::Live
            } else {
                Verdict::Expired
            }
        } else {
            // The director reverses replies on any reply entry, whatever
            // its stamp: the reason a live flow's reply entry is held.
            assert_eq!(a.serves, 1, "ct_serves of a reply entry: {}", row.what);
            if let Some(f) = found {
                assert_eq!(
                    a.belongs != 0,
                    reply_belongs_to(&row.key, &row.entry, &f),
                    "ct_reply_belongs_to: {}",
                    row.what
                );
            }
            if a.expired == 0 {
                Verdict::Live
            } else if found.is_some() && a.held != 0 {
                Verdict::Held
            } else {
                Verdict::Expired
            }
        };
        agree(c_verdict, rust, row.verdict, &row.what);
    }
}

#[test]
fn persist_expiry_is_select_h() {
    let rules = Rules::load("persist");
    for &(timeout_s, last_seen, expired) in PERSIST_ROWS {
        // Without a service the director never reaches select.h: only the
        // sweeper has a rule for those entries.
        let Some(t) = timeout_s else { continue };
        let owner = persist_owner(timeout_s);
        let a = rules.ask(Case {
            cfg: cfg(),
            persist_timeout_s: t,
            persist: PersistValue {
                last_seen,
                ..Default::default()
            },
            now: NOW,
            ..Default::default()
        });
        assert_eq!(
            a.persistent != 0,
            matches!(owner, PersistOwner::Service { .. }),
            "svc_persistent: timeout {t}"
        );
        if a.persistent != 0 {
            agree(
                a.persist_fresh == 0,
                persist_expired(owner, S as u32, last_seen, NOW),
                expired,
                format!("expired: timeout {t} last_seen {last_seen}"),
            );
        }
    }
}

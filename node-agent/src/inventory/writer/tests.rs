use std::sync::mpsc;

use super::*;

const EVERY: Duration = Duration::from_millis(500);

fn ms(t0: Instant, ms: u64) -> Instant {
    t0 + Duration::from_millis(ms)
}

/// Events at milliseconds after t0: a change, or a look at the clock that
/// writes if due.
enum At {
    Change(u64),
    Look(u64),
}

#[test]
fn a_lone_change_is_written_at_once_and_a_burst_once_per_interval() {
    use At::*;
    let table: Vec<(&str, Vec<At>, Vec<u64>)> = vec![
        (
            "nothing changed: nothing written",
            vec![Look(0), Look(900)],
            vec![],
        ),
        (
            "a first change: written at once",
            vec![Change(0), Look(0)],
            vec![0],
        ),
        (
            "a change long after the last write: at once",
            vec![Change(0), Look(0), Change(2000), Look(2000)],
            vec![0, 2000],
        ),
        (
            "a burst: the first at once, the rest once, an interval later",
            vec![
                Change(0),
                Look(0),
                Change(10),
                Look(10),
                Change(200),
                Look(200),
                Change(499),
                Look(499),
                Look(500),
                Look(600),
            ],
            vec![0, 500],
        ),
        (
            "looked at late: written then, the next an interval after that",
            vec![Change(0), Look(700), Change(800), Look(800), Look(1200)],
            vec![700, 1200],
        ),
    ];
    for (desc, events, want) in table {
        let t0 = Instant::now();
        let mut c = Coalescer::new(EVERY);
        let mut written = Vec::new();
        for e in events {
            match e {
                Change(t) => {
                    c.changed();
                    assert!(c.due(ms(t0, t)).is_some(), "{desc}: due once changed");
                }
                Look(t) => {
                    if c.take(ms(t0, t)) {
                        written.push(t);
                    }
                }
            }
        }
        assert_eq!(written, want, "{desc}");
        assert!(!c.is_stale(), "{desc}: nothing left stale");
    }
}

#[test]
fn due_names_the_end_of_the_interval() {
    let t0 = Instant::now();
    let mut c = Coalescer::new(EVERY);
    assert_eq!(c.due(t0), None);
    c.changed();
    assert_eq!(c.due(t0), Some(t0));
    assert!(c.take(t0));
    c.changed();
    assert_eq!(c.due(ms(t0, 100)), Some(ms(t0, 500)));
    c.written(ms(t0, 100));
    assert_eq!(c.due(ms(t0, 100)), None);
}

fn inv(name: &str) -> Vec<InventoryService> {
    vec![InventoryService {
        name: name.into(),
        vip: "203.0.113.10".parse().unwrap(),
        port: 80,
        protocol: "TCP".into(),
        mode: "FullNAT".into(),
        id: 0,
        backends: vec![],
    }]
}

/// Records the names written; the first write says it started, then
/// waits for `gate`.
struct Recorder {
    written: mpsc::Sender<String>,
    started: mpsc::Sender<()>,
    gate: Option<mpsc::Receiver<()>>,
}

impl Sink for Recorder {
    fn write(&mut self, inv: &[InventoryService]) -> std::io::Result<()> {
        if let Some(gate) = self.gate.take() {
            self.started.send(()).unwrap();
            gate.recv().unwrap();
        }
        self.written.send(inv[0].name.clone()).unwrap();
        Ok(())
    }
}

#[test]
fn the_writer_writes_the_latest_and_everything_before_it_stops() {
    let (written, seen) = mpsc::channel();
    let (open, gate) = mpsc::channel();
    let (started, first_started) = mpsc::channel();
    let w = Writer::start(Recorder {
        written,
        started,
        gate: Some(gate),
    });
    w.write(inv("first"));
    // "first" is being written (held at the gate): of the next three, the
    // last replaces the others.
    first_started.recv().unwrap();
    for name in ["second", "third", "fourth"] {
        w.write(inv(name));
    }
    open.send(()).unwrap();
    w.flush();
    w.write(inv("last"));
    drop(w);
    let names: Vec<String> = seen.try_iter().collect();
    assert_eq!(names, ["first", "fourth", "last"]);
}

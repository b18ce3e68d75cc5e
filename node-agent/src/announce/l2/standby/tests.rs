//! A simulated group: nodes exchange the datagrams their actions send
//! (through filters that cut paths), probes are answered by whichever
//! node's data plane answers ARP for the VIP, and every tick checks that
//! never two nodes answer for one VIP.
use super::*;
use std::net::Ipv4Addr;

const TICK: Duration = Duration::from_millis(25);

fn timing() -> Timing {
    Timing {
        interval: Duration::from_millis(100),
        misses: 3,
        hold: Duration::from_secs(2),
    }
}

fn vip(i: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(203, 0, 113, i))
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 10 + i as u8], 9470))
}

struct Node {
    sm: Option<Standby>,
    name: String,
    /// Its data plane answers ARP for what it holds (false: node dead, or
    /// its agent dead long enough for the liveness stamp to expire).
    answers: bool,
    /// The agent runs (false: killed; the data plane may go on).
    running: bool,
    held: BTreeSet<IpAddr>,
    restarts: u64,
    claims: usize,
}

struct Group {
    now: Instant,
    start: Instant,
    nodes: Vec<Node>,
    /// (from, to) pairs whose datagrams are dropped.
    cut: BTreeSet<(usize, usize)>,
    /// Nodes cut from the segment too: their probes and ARP answers are lost.
    isolated: BTreeSet<usize>,
    table: Vec<Table>,
    /// Most nodes answering one VIP at once, seen at any tick.
    most_answering: usize,
}

impl Group {
    /// Nodes named `names`, serving `tables`, all starting now.
    fn new(names: &[&str], tables: Vec<Table>) -> Self {
        let now = Instant::now();
        let mut g = Group {
            now,
            start: now,
            nodes: Vec::new(),
            cut: BTreeSet::new(),
            isolated: BTreeSet::new(),
            table: tables,
            most_answering: 0,
        };
        for n in names {
            g.nodes.push(Node {
                sm: None,
                name: n.to_string(),
                answers: true,
                running: false,
                held: BTreeSet::new(),
                restarts: 0,
                claims: 0,
            });
        }
        for i in 0..names.len() {
            g.start_agent(i, BTreeSet::new());
        }
        g
    }

    fn start_agent(&mut self, i: usize, held: BTreeSet<IpAddr>) {
        let peers: Vec<SocketAddr> = (0..self.nodes.len())
            .filter(|j| *j != i)
            .map(addr)
            .collect();
        let ms = self.ms();
        let n = &mut self.nodes[i];
        n.restarts += 1;
        let mut sm = Standby::new(
            (
                n.name.clone(),
                1000 * i as u64 + n.restarts,
                [2, 0, 0, 0, 0, i as u8],
            ),
            timing(),
            &peers,
            held.clone(),
            self.now,
        );
        let _ = sm.step(self.now, Event::Serving(self.table[i].clone()), ms);
        n.sm = Some(sm);
        n.held = held;
        n.running = true;
        n.answers = true;
    }

    fn ms(&self) -> u64 {
        1_000_000 + (self.now - self.start).as_millis() as u64
    }

    fn apply(&mut self, i: usize, actions: Vec<Action>, queue: &mut Vec<(usize, Event)>) {
        for a in actions {
            match a {
                Action::Claim(v) => {
                    self.nodes[i].held.insert(v);
                    self.nodes[i].claims += 1;
                }
                Action::Release(v) => {
                    self.nodes[i].held.remove(&v);
                }
                Action::Send { to, msg } => {
                    let j = (0..self.nodes.len()).find(|j| addr(*j) == to).unwrap();
                    if !self.cut.contains(&(i, j)) {
                        queue.push((j, Event::Received { from: addr(i), msg }));
                    }
                }
                Action::Probe(v) => {
                    for (j, n) in self.nodes.iter().enumerate() {
                        let lost = self.isolated.contains(&i) || self.isolated.contains(&j);
                        if j != i && !lost && n.answers && n.held.contains(&v) {
                            let mac = [2, 0, 0, 0, 0, j as u8];
                            queue.push((i, Event::ProbeAnswered { vip: v, mac }));
                        }
                    }
                }
                Action::PeerUp { .. } | Action::PeerDown { .. } => {}
            }
        }
    }

    fn deliver(&mut self, mut queue: Vec<(usize, Event)>) {
        queue.reverse();
        while let Some((j, ev)) = queue.pop() {
            let ms = self.ms();
            let now = self.now;
            if !self.nodes[j].running {
                continue;
            }
            let actions = self.nodes[j].sm.as_mut().unwrap().step(now, ev, ms);
            let mut more = Vec::new();
            self.apply(j, actions, &mut more);
            more.reverse();
            more.extend(queue);
            queue = more;
        }
    }

    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now += TICK;
            for i in 0..self.nodes.len() {
                if !self.nodes[i].running {
                    continue;
                }
                let (now, ms) = (self.now, self.ms());
                let actions = self.nodes[i]
                    .sm
                    .as_mut()
                    .unwrap()
                    .step(now, Event::Tick, ms);
                let mut queue = Vec::new();
                self.apply(i, actions, &mut queue);
                self.deliver(queue);
            }
            for v in self
                .table
                .iter()
                .flat_map(|t| t.keys())
                .collect::<BTreeSet<_>>()
            {
                let n = self
                    .nodes
                    .iter()
                    .filter(|n| n.answers && n.held.contains(v))
                    .count();
                self.most_answering = self.most_answering.max(n);
            }
        }
    }

    /// Runs until `cond` holds; how long that took.
    fn until(&mut self, limit: Duration, cond: impl Fn(&Group) -> bool) -> Option<Duration> {
        let from = self.now;
        while self.now < from + limit {
            if cond(self) {
                return Some(self.now - from);
            }
            self.run(TICK);
        }
        None
    }

    /// The nodes answering ARP for `v`.
    fn answering(&self, v: IpAddr) -> Vec<&str> {
        self.nodes
            .iter()
            .filter(|n| n.answers && n.held.contains(&v))
            .map(|n| n.name.as_str())
            .collect()
    }

    fn kill(&mut self, i: usize, data_plane_too: bool) {
        self.nodes[i].running = false;
        if data_plane_too {
            self.nodes[i].answers = false;
        }
    }

    fn stop(&mut self, i: usize) {
        let (now, ms) = (self.now, self.ms());
        let actions = self.nodes[i]
            .sm
            .as_mut()
            .unwrap()
            .step(now, Event::Stop, ms);
        let mut queue = Vec::new();
        self.apply(i, actions, &mut queue);
        self.nodes[i].running = false;
        self.deliver(queue);
    }

    fn cut_between(&mut self, a: usize, b: usize) {
        self.cut.insert((a, b));
        self.cut.insert((b, a));
    }
}

fn pair(prio_a: u8, prio_b: u8) -> Group {
    let t = |p| Table::from([(vip(10), p)]);
    Group::new(&["dir-a", "dir-b"], vec![t(prio_a), t(prio_b)])
}

#[test]
fn after_listening_exactly_the_highest_priority_announces() {
    let mut g = pair(100, 150);
    g.run(Duration::from_millis(200));
    assert!(
        g.answering(vip(10)).is_empty(),
        "nobody claims while listening"
    );
    g.run(Duration::from_secs(1));
    assert_eq!(g.answering(vip(10)), ["dir-b"]);
    assert_eq!(g.most_answering, 1);
    // Equal priorities: the name that sorts first.
    let mut g = pair(100, 100);
    g.run(Duration::from_secs(1));
    assert_eq!(g.answering(vip(10)), ["dir-a"]);
}

#[test]
fn a_dead_node_is_replaced_within_the_miss_count() {
    let mut g = pair(150, 100);
    g.run(Duration::from_secs(1));
    g.kill(0, true);
    let took = g
        .until(Duration::from_secs(2), |g| {
            g.answering(vip(10)) == ["dir-b"]
        })
        .expect("dir-b takes over");
    // 3 x 100 ms after the last heartbeat, which came up to one
    // interval before the death; ticks are 25 ms.
    assert!(
        took >= Duration::from_millis(200) && took <= Duration::from_millis(350),
        "{took:?}"
    );
    assert_eq!(g.most_answering, 1);
}

#[test]
fn a_clean_stop_hands_over_at_once() {
    let mut g = pair(150, 100);
    g.run(Duration::from_secs(1));
    g.stop(0);
    assert_eq!(g.answering(vip(10)), ["dir-b"], "on the leaving heartbeat");
    g.run(Duration::from_millis(500));
    assert_eq!(g.answering(vip(10)), ["dir-b"]);
}

#[test]
fn a_cut_heartbeat_path_makes_no_second_announcer() {
    let t = |a, b| Table::from([(vip(10), a), (vip(11), b)]);
    let mut g = Group::new(&["dir-a", "dir-b"], vec![t(150, 100), t(100, 150)]);
    g.run(Duration::from_secs(1));
    assert_eq!(g.answering(vip(10)), ["dir-a"]);
    assert_eq!(g.answering(vip(11)), ["dir-b"]);
    g.cut_between(0, 1);
    g.run(Duration::from_secs(5));
    assert_eq!(
        g.answering(vip(10)),
        ["dir-a"],
        "kept alive by its ARP answers"
    );
    assert_eq!(g.answering(vip(11)), ["dir-b"]);
    g.cut.clear();
    g.run(Duration::from_secs(3));
    assert_eq!(g.answering(vip(10)), ["dir-a"]);
    assert_eq!(g.answering(vip(11)), ["dir-b"]);
    assert_eq!(g.most_answering, 1);
    assert_eq!(
        (g.nodes[0].claims, g.nodes[1].claims),
        (1, 1),
        "nothing moved"
    );
}

#[test]
fn an_agent_restart_within_the_stamp_moves_nothing() {
    let mut g = pair(150, 100);
    g.run(Duration::from_secs(1));
    // Killed: the data plane answers on (stamp fresh) for 800 ms.
    g.kill(0, false);
    g.run(Duration::from_millis(800));
    let held = g.nodes[0].held.clone();
    g.start_agent(0, held);
    g.run(Duration::from_secs(4));
    assert_eq!(g.answering(vip(10)), ["dir-a"]);
    assert_eq!(g.nodes[1].claims, 0, "dir-b never took it");
    assert_eq!(g.most_answering, 1);
}

#[test]
fn a_crashed_agent_whose_stamp_expires_is_replaced() {
    let mut g = pair(150, 100);
    g.run(Duration::from_secs(1));
    g.kill(0, false);
    g.run(Duration::from_secs(1));
    assert_eq!(
        g.answering(vip(10)),
        ["dir-a"],
        "its data plane still answers"
    );
    // The stamp expires: the data plane stops answering.
    g.nodes[0].answers = false;
    let took = g
        .until(Duration::from_secs(1), |g| {
            g.answering(vip(10)) == ["dir-b"]
        })
        .expect("dir-b takes over");
    assert!(took <= Duration::from_millis(350), "{took:?}");
}

#[test]
fn a_returning_higher_node_waits_the_hold_time_and_never_doubles() {
    let mut g = pair(150, 100);
    g.run(Duration::from_secs(1));
    g.kill(0, true);
    g.run(Duration::from_secs(1));
    assert_eq!(g.answering(vip(10)), ["dir-b"]);
    g.most_answering = 0;
    g.start_agent(0, BTreeSet::new());
    g.run(Duration::from_millis(1500));
    assert_eq!(g.answering(vip(10)), ["dir-b"], "within the hold time");
    let back = g
        .until(Duration::from_secs(3), |g| {
            g.answering(vip(10)) == ["dir-a"]
        })
        .expect("dir-a takes it back")
        + Duration::from_millis(1500);
    assert!(
        back >= Duration::from_secs(2) && back <= Duration::from_millis(2600),
        "{back:?}"
    );
    assert_eq!(g.most_answering, 1, "never two answerers");
}

#[test]
fn a_healed_split_settles_at_once_on_rank() {
    let t = |a, b| Table::from([(vip(10), a), (vip(11), b)]);
    let mut g = Group::new(&["dir-a", "dir-b"], vec![t(150, 100), t(100, 150)]);
    g.run(Duration::from_secs(1));
    // Cut from everything: no datagrams, and neither sees the other's ARP.
    g.cut_between(0, 1);
    g.isolated.insert(0);
    g.run(Duration::from_secs(1));
    assert_eq!(g.nodes[0].held.len(), 2, "dir-a alone announces both");
    assert_eq!(g.nodes[1].held.len(), 2);
    g.cut.clear();
    g.isolated.clear();
    let settled = g
        .until(Duration::from_secs(1), |g| {
            g.answering(vip(10)) == ["dir-a"] && g.answering(vip(11)) == ["dir-b"]
        })
        .expect("settles");
    assert!(settled <= Duration::from_millis(250), "{settled:?}");
}

#[test]
fn link_down_releases_and_link_up_comes_back_as_a_start() {
    let mut g = pair(150, 100);
    g.run(Duration::from_secs(1));
    let (now, ms) = (g.now, g.ms());
    let out = g.nodes[0]
        .sm
        .as_mut()
        .unwrap()
        .step(now, Event::LinkDown, ms);
    let mut q = Vec::new();
    g.apply(0, out, &mut q);
    g.cut_between(0, 1);
    g.nodes[0].answers = false;
    assert!(
        g.nodes[0].held.is_empty(),
        "nothing announced without a link"
    );
    g.run(Duration::from_secs(1));
    assert_eq!(g.answering(vip(10)), ["dir-b"]);
    g.cut.clear();
    g.nodes[0].answers = true;
    let (now, ms) = (g.now, g.ms());
    let out = g.nodes[0].sm.as_mut().unwrap().step(now, Event::LinkUp, ms);
    g.apply(0, out, &mut q);
    g.most_answering = 0;
    g.run(Duration::from_secs(1));
    assert_eq!(g.answering(vip(10)), ["dir-b"], "held back");
    g.run(Duration::from_secs(2));
    assert_eq!(g.answering(vip(10)), ["dir-a"]);
    assert_eq!(g.most_answering, 1);
}

#[test]
fn three_nodes_fail_over_in_order() {
    let t = |p| Table::from([(vip(10), p)]);
    let mut g = Group::new(&["dir-a", "dir-b", "dir-c"], vec![t(200), t(150), t(100)]);
    g.run(Duration::from_secs(1));
    assert_eq!(g.answering(vip(10)), ["dir-a"]);
    g.kill(0, true);
    g.until(Duration::from_secs(1), |g| {
        g.answering(vip(10)) == ["dir-b"]
    })
    .expect("the second takes over");
    g.kill(1, true);
    g.until(Duration::from_secs(1), |g| {
        g.answering(vip(10)) == ["dir-c"]
    })
    .expect("then the third");
    assert_eq!(g.most_answering, 1);
}

#[test]
fn heartbeats_are_per_peer_not_per_vip() {
    let big: Table = (0..10_000u32)
        .map(|i| (IpAddr::V4(Ipv4Addr::from(0xcb00_7100 + i)), 100))
        .collect();
    let mut g = Group::new(&["dir-a", "dir-b"], vec![big.clone(), big]);
    g.run(Duration::from_secs(1));
    assert_eq!(g.nodes[0].held.len(), 10_000);
    // Once the tables are exchanged, one interval sends one datagram to
    // the one peer.
    let sm = g.nodes[0].sm.as_mut().unwrap();
    let mut sent = 0;
    let mut now = g.now;
    for _ in 0..4 {
        now += TICK;
        sent += sm
            .step(now, Event::Tick, 2_000_000)
            .iter()
            .filter(|a| matches!(a, Action::Send { .. }))
            .count();
    }
    assert_eq!(sent, 1);
}

#[test]
fn replays_and_strangers_are_ignored() {
    let mut g = pair(150, 100);
    g.run(Duration::from_secs(1));
    let sm = g.nodes[1].sm.as_mut().unwrap();
    let now = g.now;
    // A heartbeat from an address that is not a peer claims nothing.
    let msg = Message {
        header: Header {
            leaving: true,
            node: "dir-a".into(),
            incarnation: 1001,
            seq: 1,
            sent_ms: 1,
            mac: [2, 0, 0, 0, 0, 0],
        },
        body: Body::Heartbeat(Heartbeat {
            own_digest: 0,
            your_digest: 0,
            heard_you_ms: 0,
            pair: 0,
        }),
    };
    let stranger = SocketAddr::from(([198, 51, 100, 99], 9470));
    let out = sm.step(
        now,
        Event::Received {
            from: stranger,
            msg: msg.clone(),
        },
        1,
    );
    assert!(!out.iter().any(|a| matches!(a, Action::Claim(_))));
    // A replayed (old) leaving heartbeat from the real peer is refused.
    let out = sm.step(now, Event::Received { from: addr(0), msg }, 1);
    assert!(
        !out.iter().any(|a| matches!(a, Action::Claim(_))),
        "{out:?}"
    );
    g.run(Duration::from_secs(1));
    assert_eq!(g.answering(vip(10)), ["dir-a"]);
}

//! What hot standby costs as VIPs grow: two `Standby` state machines (the
//! pure core of `announce::l2`) exchange their datagrams in memory for a
//! simulated minute at the default timing (100 ms x 3), with 1, 100 and
//! 10,000 VIPs each. Printed per VIP count: datagrams and bytes a node
//! sends per second in steady state (after the table exchange), the table
//! exchange itself, and the CPU one node spends per simulated second, as a
//! ratio to the 1-VIP run of the same process (the baseline).
//! Target (DESIGN.md): heartbeats per node pair, never per VIP: steady
//! datagrams/s the same at 10k as at 1.
//! Run: `cargo bench -p ballast-agent --bench standby_scale`.
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use ballast_agent::announce::l2::standby::{Action, Event, Standby, Table, Timing};
use ballast_agent::announce::l2::wire::{self, Key};

const TICK: Duration = Duration::from_millis(25);
const SIMULATED: Duration = Duration::from_secs(60);

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 10 + i as u8], 9470))
}

#[derive(Default)]
struct Sent {
    datagrams: u64,
    bytes: u64,
}

struct Run {
    steady: Sent,
    exchange: Sent,
    cpu: Duration,
    owned: [usize; 2],
}

fn run(vips: u32) -> Run {
    let timing = Timing {
        interval: Duration::from_millis(100),
        misses: 3,
        hold: Duration::from_secs(3),
    };
    let key = Key::new(b"a benchmark key, 32 bytes long!!");
    let table = |prio: u8| -> Table {
        (0..vips)
            .map(|i| (IpAddr::V4(Ipv4Addr::from(0xcb00_7100 + i)), prio))
            .collect()
    };
    let start = Instant::now();
    let mut now = start;
    let mut nodes: Vec<Standby> = (0..2)
        .map(|i| {
            Standby::new(
                (format!("dir-{i}"), i as u64 + 1, [2, 0, 0, 0, 0, i as u8]),
                timing,
                &[addr(1 - i)],
                BTreeSet::new(),
                now,
            )
        })
        .collect();
    let mut held = [BTreeSet::new(), BTreeSet::new()];
    let mut r = Run {
        steady: Sent::default(),
        exchange: Sent::default(),
        cpu: Duration::ZERO,
        owned: [0, 0],
    };
    let settle = Duration::from_secs(5);
    // First in, first out: datagrams arrive in the order they were sent.
    let mut queue: std::collections::VecDeque<(usize, Event)> = [
        (0, Event::Serving(table(150))),
        (1, Event::Serving(table(100))),
    ]
    .into();
    while now < start + SIMULATED {
        now += TICK;
        queue.push_back((0, Event::Tick));
        queue.push_back((1, Event::Tick));
        while let Some((i, ev)) = queue.pop_front() {
            let ms = (now - start).as_millis() as u64 + 1;
            let t = Instant::now();
            let actions = nodes[i].step(now, ev, ms);
            let mut sent = Vec::new();
            for a in actions {
                match a {
                    Action::Send { msg, .. } => {
                        // Encoding and authenticating is part of the cost.
                        let bytes = wire::encode(&msg, &key);
                        let msg = wire::decode(&bytes, &key).expect("own datagram");
                        sent.push((1 - i, bytes.len(), msg));
                    }
                    Action::Claim(v) => {
                        held[i].insert(v);
                    }
                    Action::Release(v) => {
                        held[i].remove(&v);
                    }
                    _ => {}
                }
            }
            if i == 0 {
                r.cpu += t.elapsed();
            }
            for (to, len, msg) in sent {
                if i == 0 {
                    let s = if now - start < settle {
                        &mut r.exchange
                    } else {
                        &mut r.steady
                    };
                    s.datagrams += 1;
                    s.bytes += len as u64;
                }
                queue.push_back((to, Event::Received { from: addr(i), msg }));
            }
        }
    }
    r.owned = [held[0].len(), held[1].len()];
    r
}

fn main() {
    let steady_secs = (SIMULATED - Duration::from_secs(5)).as_secs_f64();
    let base = run(1);
    println!(
        "hot standby, two nodes, 100 ms x 3, {}s simulated; node 0's figures",
        SIMULATED.as_secs()
    );
    println!(
        "{:>6} | {:>14} | {:>12} | {:>22} | {:>16} | {:>9} | owned",
        "VIPs", "datagrams/s", "bytes/s", "table exchange", "CPU per sim. s", "CPU ratio"
    );
    for vips in [1u32, 100, 10_000] {
        let r = if vips == 1 { run(1) } else { run(vips) };
        let cpu = r.cpu.as_secs_f64() / SIMULATED.as_secs_f64();
        let base_cpu = base.cpu.as_secs_f64() / SIMULATED.as_secs_f64();
        println!(
            "{:>6} | {:>14.1} | {:>12.0} | {:>7} dgrams {:>7} B | {:>13.1} us | {:>9.2} | {:?}",
            vips,
            r.steady.datagrams as f64 / steady_secs,
            r.steady.bytes as f64 / steady_secs,
            r.exchange.datagrams,
            r.exchange.bytes,
            cpu * 1e6,
            cpu / base_cpu,
            r.owned
        );
        assert_eq!(
            r.owned,
            [vips as usize, 0],
            "node 0 (priority 150) owns every VIP"
        );
    }
}

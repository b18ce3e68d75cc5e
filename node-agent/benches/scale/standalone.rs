//! The same N services as a standalone user has them: one YAML file, read
//! by `standalone::source::FileSource` (files, parse cache, resolve) and
//! handed to a fresh agent as the source hands it (the whole version
//! first, then what changed), each step split into the source's reading
//! and the agent's apply. Cold load, 10 no-op reloads (the file as it
//! was), one change (one document's backend edited in the file).
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ballast_agent::core::{Agent, Settings};
use ballast_agent::standalone::source::{FileSource, Handover, ReadCost};
use ballast_testbed::SNAT_ADDR;

use super::{
    BACKEND_NET, BACKENDS, Cleanup, GATEWAY, NO_OP_RELOADS, ip, mib, missed_reload_targets, ms,
    open_agent, rss_bytes, service,
};

/// The services as VirtualServer documents, one file; `edit` replaces
/// service `edit.0`'s first backend.
fn yaml(n: usize, edit: Option<(usize, Ipv4Addr)>) -> String {
    (0..n)
        .map(|i| {
            let mut s = service(i);
            if let Some((j, address)) = edit.filter(|(j, _)| *j == i) {
                s.backends[0].address = address;
                debug_assert_eq!(j, i);
            }
            let backends: String = s
                .backends
                .iter()
                .map(|b| format!("      - {{address: {}, weight: 1}}\n", b.address))
                .collect();
            format!(
                "---\napiVersion: ballast.dev/v1alpha1\nkind: VirtualServer\n\
                 metadata: {{name: svc-{i:06}, namespace: bench}}\nspec:\n  addresses: [{}]\n  \
                 ports:\n    - {{port: {}, protocol: TCP, targetPort: 8080}}\n  \
                 forwarding: FullNAT\n  backends:\n    static:\n{backends}",
                s.vip, s.port
            )
        })
        .collect()
}

/// One reload: the source's share, the agent's, and what was handed over.
struct Reload {
    read: Duration,
    cost: ReadCost,
    apply: Duration,
    handed: String,
    entries: usize,
}

fn reload(source: &mut FileSource, agent: &mut Agent, n: usize) -> Reload {
    let start = Instant::now();
    let reading = source.read().expect("reading the files");
    let read = start.elapsed();
    let cost = reading.cost.clone();
    let (report, handed) = match reading.handover {
        Handover::Whole(d) => (agent.apply(d), "whole version".to_string()),
        Handover::Change(c) => {
            let handed = format!("change of {} object(s)", c.objects.len());
            (agent.apply_change(c), handed)
        }
    };
    let report = report.expect("apply");
    let apply = start.elapsed() - read;
    assert_eq!(report.programmed, n);
    let errors = source.settle(reading.errors, report);
    assert!(errors.is_empty(), "{:?}", &errors[..1]);
    // Off the apply path in a running agent (see the other table).
    agent.write_inventory().expect("writing the inventory");
    Reload {
        read,
        cost,
        apply,
        handed,
        entries: agent.last_apply().dataplane.entries_written,
    }
}

fn row(name: &str, r: &Reload) {
    println!(
        "  {:<18} {:>10.2} ({:>8.2} {:>6} {:>8.2}) {:>9.2} {:>9.2} {:>8}   {}",
        name,
        ms(r.read),
        ms(r.cost.documents),
        r.cost.parsed,
        ms(r.cost.resolve),
        ms(r.apply),
        ms(r.read + r.apply),
        r.entries,
        r.handed
    );
}

pub fn run(n: usize) -> Vec<String> {
    println!(
        "{n} services × {BACKENDS} backends from standalone YAML (FileSource -> a fresh agent)"
    );
    let pin_root = PathBuf::from(format!(
        "/sys/fs/bpf/ballast-bench-scale-yaml-{}-{n}",
        std::process::id()
    ));
    let _cleanup = Cleanup(pin_root.clone());
    let dir = std::env::temp_dir().join(format!("ballast-bench-scale-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("services.yaml");
    std::fs::write(&file, yaml(n, None)).unwrap();
    let bytes = std::fs::metadata(&file).unwrap().len();
    ip(&["route", "add", BACKEND_NET, "via", GATEWAY, "dev", "dp0"]);
    let mut agent = open_agent(&pin_root, n);
    let settings = Settings {
        snat_addrs: vec![SNAT_ADDR],
        ..Default::default()
    };
    let mut source = FileSource::new(dir.clone(), settings, true, Duration::from_secs(1));

    println!(
        "  {:<18} {:>10} ({:>8} {:>6} {:>8}) {:>9} {:>9} {:>8}   handed over",
        "step", "read ms", "files", "parsed", "resolve", "apply ms", "total ms", "entries"
    );
    let cold = reload(&mut source, &mut agent, n);
    row(&format!("cold ({:.1} MiB)", mib(bytes)), &cold);
    let mut no_ops = Vec::new();
    let mut rss = Vec::new();
    for _ in 0..NO_OP_RELOADS {
        no_ops.push(reload(&mut source, &mut agent, n));
        rss.push(rss_bytes());
    }
    assert!(no_ops.iter().all(|r| r.entries == 0), "a no-op wrote");
    no_ops.sort_by_key(|r| r.read + r.apply);
    row("no-op (median)", &no_ops[NO_OP_RELOADS / 2]);
    row("no-op (slowest)", &no_ops[NO_OP_RELOADS - 1]);
    std::fs::write(&file, yaml(n, Some((n / 2, Ipv4Addr::new(10, 255, 0, 1))))).unwrap();
    let one = reload(&mut source, &mut agent, n);
    row("one change", &one);
    let (first, last) = (rss[0], rss[NO_OP_RELOADS - 1]);
    let drift = last as f64 / first as f64;
    println!(
        "  RSS over {NO_OP_RELOADS} no-op reloads {:.1} -> {:.1} MiB (last/first {drift:.3})",
        mib(first),
        mib(last),
    );
    // The targets are the agent's: reading the files is reported beside.
    let missed = missed_reload_targets(
        &format!("{n} from YAML, the apply"),
        no_ops[NO_OP_RELOADS - 1].apply,
        one.apply,
        drift,
    );
    std::fs::remove_dir_all(&dir).unwrap();
    missed
}

//! What the file source hands the agent, reload by reload: the whole
//! version first, then only what changed (the announcements only when the
//! set of VIPs moves), and the whole version again after a refusal. A
//! stand-in agent serves the requests with the core's own
//! [`HeldDesired`]; after every reload what it holds must equal what a
//! whole hand-over of the same round would have made it hold.
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::sync::mpsc;

use super::*;
use crate::core::agent::Request;
use crate::core::{ApplyError, ApplyReport, HeldDesired, channel};

/// What the stand-in agent was handed: the whole version, or a change of
/// these objects (with new announcements or not).
#[derive(Debug, PartialEq)]
enum Handed {
    Whole,
    Change {
        objects: Vec<String>,
        announce: bool,
    },
}

/// Serves requests like the core: checks with `problems`, commits, reports.
/// Refuses the request it is told to (as the core refuses a bad version:
/// nothing changes).
async fn stand_in(
    mut requests: crate::core::Requests,
    held: std::sync::Arc<std::sync::Mutex<HeldDesired>>,
    mut refuse: mpsc::UnboundedReceiver<()>,
    handed: mpsc::UnboundedSender<Handed>,
) {
    while let Some(request) = requests.recv().await {
        let (change, what, reply) = match request {
            Request::Apply { desired, reply } => {
                let change = held.lock().unwrap().diff(&desired);
                (change, Handed::Whole, reply)
            }
            Request::Change { change, reply } => {
                let what = Handed::Change {
                    objects: change.objects.keys().cloned().collect(),
                    announce: change.announce.is_some(),
                };
                (change, what, reply)
            }
            Request::Usage { .. } => unreachable!("the file source asks no usage"),
        };
        handed.send(what).unwrap();
        let mut held = held.lock().unwrap();
        let version = change.version;
        let mut errors = held.problems(&change);
        if refuse.try_recv().is_ok() {
            errors.push(ApplyError::StaleVersion {
                version,
                applied: version,
            });
        }
        let applied_version = if errors.is_empty() {
            held.commit(change);
            version
        } else {
            version - 1
        };
        let _ = reply.send(Ok(ApplyReport {
            applied_version,
            errors,
            programmed: held.len(),
        }));
    }
}

fn web(name: &str, vip: &str, backend: &str) -> String {
    format!(
        "apiVersion: ballast.dev/v1alpha1\nkind: VirtualServer\n\
         metadata: {{name: {name}, namespace: default}}\n\
         spec:\n  addresses: [{vip}]\n  ports: [{{port: 80}}]\n  \
         backends: {{static: [{{address: {backend}}}]}}\n"
    )
}

#[tokio::test]
async fn reloads_hand_over_what_changed() {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "ballast-source-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |file: &str, text: String| std::fs::write(dir.join(file), text).unwrap();
    let settings = Settings {
        snat_addrs: vec![Ipv4Addr::new(198, 51, 100, 3)],
        snat_ports: (40_000, 50_000),
    };
    let mut source = FileSource::new(dir.clone(), settings.clone(), true, Duration::from_secs(1));
    let (agent, requests) = channel();
    let held = std::sync::Arc::new(std::sync::Mutex::new(HeldDesired::default()));
    let (refuse, refusals) = mpsc::unbounded_channel();
    let (handed_tx, mut handed) = mpsc::unbounded_channel();
    tokio::spawn(stand_in(requests, held.clone(), refusals, handed_tx));

    let change = |objects: &[&str], announce: bool| Handed::Change {
        objects: objects.iter().map(|o| o.to_string()).collect(),
        announce,
    };
    write("a.yaml", web("a", "203.0.113.10", "198.51.100.11"));
    write("b.yaml", web("b", "203.0.113.11", "198.51.100.11"));
    // desc, the edit, whether the agent refuses, what it is handed.
    type Step<'a> = (&'a str, Box<dyn Fn() + 'a>, bool, Handed);
    let steps: Vec<Step> = vec![
        (
            "first reload: the whole version",
            Box::new(|| {}),
            false,
            Handed::Whole,
        ),
        (
            "nothing changed: an empty change",
            Box::new(|| {}),
            false,
            change(&[], false),
        ),
        (
            "one backend: that object, the VIPs as they were",
            Box::new(|| write("b.yaml", web("b", "203.0.113.11", "198.51.100.12"))),
            false,
            change(&["default/b"], false),
        ),
        (
            "a second object on a VIP already served",
            Box::new(|| {
                write(
                    "c.yaml",
                    web("c", "203.0.113.10", "198.51.100.13").replace("port: 80", "port: 81"),
                )
            }),
            false,
            change(&["default/c"], false),
        ),
        (
            "an object and its VIP gone: new announcements",
            Box::new(|| std::fs::remove_file(dir.join("b.yaml")).unwrap()),
            false,
            change(&["default/b"], true),
        ),
        (
            "refused by the agent",
            Box::new(|| write("d.yaml", web("d", "203.0.113.12", "198.51.100.11"))),
            true,
            change(&["default/d"], true),
        ),
        (
            "after a refusal: the whole version",
            Box::new(|| {}),
            false,
            Handed::Whole,
        ),
        (
            "and in step again",
            Box::new(|| {}),
            false,
            change(&[], false),
        ),
    ];
    for (version, (desc, edit, refused, want)) in (1..).zip(steps) {
        edit();
        if refused {
            refuse.send(()).unwrap();
        }
        source.reload(&agent).await.unwrap();
        assert_eq!(handed.recv().await.unwrap(), want, "{desc}");
        let whole = desired::to_node_desired(version, source.last_good.services(), &settings, true);
        let held = held.lock().unwrap().to_desired(version);
        if refused {
            assert_ne!(held, whole, "{desc}: nothing applied");
        } else {
            assert_eq!(held, whole, "{desc}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

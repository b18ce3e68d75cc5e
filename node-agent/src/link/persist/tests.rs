use super::*;
use ballast_proto::v1::{self, Announcements, NodeState};

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("ballast-persist-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        Dir(d)
    }

    fn state_file(&self) -> PathBuf {
        self.0.join("node-state.pb")
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_saved_state_loads_back_and_a_missing_one_is_none() {
    let dir = Dir::new("save");
    let path = dir.state_file();
    assert!(load(&path).unwrap().is_none());
    let state = NodeState {
        version: 7,
        announcements: Some(Announcements {
            l2: vec![vec![203, 0, 113, 10]],
            bgp: vec![],
        }),
        ..Default::default()
    };
    save(&path, &state).unwrap();
    assert_eq!(load(&path).unwrap(), Some(state));
    std::fs::write(&path, b"\xff\xff\xff").unwrap();
    let err = load(&path).unwrap_err().to_string();
    assert!(err.contains("not a node state"), "{err}");
}

fn service(name: &str, backend: u8) -> v1::Service {
    v1::Service {
        object: Some(v1::ObjectRef {
            kind: v1::ObjectKind::VirtualServer as i32,
            namespace: "default".into(),
            name: name.into(),
        }),
        vips: vec![vec![203, 0, 113, 10]],
        ports: vec![v1::Port {
            port: 80,
            protocol: v1::Protocol::Tcp as i32,
            backends: vec![v1::Backend {
                address: vec![198, 51, 100, backend],
                port: 8080,
                weight: 1,
            }],
        }],
        ..Default::default()
    }
}

/// A state of `n` services and the delta replacing service `i`'s backend,
/// at the next version.
fn world(n: usize) -> NodeState {
    NodeState {
        version: 1,
        services: (0..n).map(|i| service(&format!("s{i:03}"), 1)).collect(),
        ..Default::default()
    }
}

fn delta(state: &NodeState, i: usize, backend: u8) -> Delta {
    Delta {
        base_version: state.version,
        version: state.version + 1,
        upserted: vec![service(&format!("s{i:03}"), backend)],
        ..Default::default()
    }
}

#[test]
fn deltas_are_appended_until_the_log_outgrows_the_snapshot() {
    let dir = Dir::new("log");
    let path = dir.state_file();
    let mut keeper = Keeper::new(path.clone());
    let mut state = world(40);
    keeper.keep(&state, None).unwrap();
    let snapshot = std::fs::read(&path).unwrap();
    let mut appended = 0;
    for k in 0..40 {
        let d = delta(&state, k, 2 + k as u8);
        apply_delta(&mut state, &d).unwrap();
        keeper.keep(&state, Some(&d)).unwrap();
        if std::fs::read(&path).unwrap() == snapshot {
            appended += 1;
        } else {
            // Folded: a new snapshot, no log.
            assert!(!log_path(&path).exists(), "delta {k}: the log is gone");
            break;
        }
        assert_eq!(load(&path).unwrap().as_ref(), Some(&state), "delta {k}");
    }
    let log_max = snapshot.len() / 4;
    let per_delta = delta(&state, 0, 0).encoded_len() + 1;
    assert_eq!(
        appended,
        log_max / per_delta,
        "appended while the log fits a quarter"
    );
    assert_eq!(load(&path).unwrap(), Some(state));
}

#[test]
fn a_torn_record_ends_the_log_and_an_older_one_is_skipped() {
    let dir = Dir::new("torn");
    let path = dir.state_file();
    let mut keeper = Keeper::new(path.clone());
    let mut state = world(40);
    keeper.keep(&state, None).unwrap();
    let d2 = delta(&state, 1, 9);
    apply_delta(&mut state, &d2).unwrap();
    keeper.keep(&state, Some(&d2)).unwrap();
    let at_2 = state.clone();
    let d3 = delta(&state, 2, 9);
    apply_delta(&mut state, &d3).unwrap();
    // A crash mid-append: half of the record.
    let bytes = d3.encode_length_delimited_to_vec();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(log_path(&path))
        .unwrap();
    f.write_all(&bytes[..bytes.len() / 2]).unwrap();
    assert_eq!(load(&path).unwrap(), Some(at_2), "the last whole version");

    // A crash between a new snapshot and the log's removal: the log's
    // deltas are older than the snapshot, and skipped.
    let log = std::fs::read(log_path(&path)).unwrap();
    save(&path, &state).unwrap();
    std::fs::write(log_path(&path), log).unwrap();
    assert_eq!(load(&path).unwrap(), Some(state));
}

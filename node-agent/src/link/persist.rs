//! The applied state, kept on disk across agent restarts (beside the
//! inventory, under /run: it dies with the node's boot, as the pins do).
//!
//! A restarted agent applies it before it dials, so it serves with health
//! checks and reports at once, and says Hello with its version and hash: a
//! controller holding the same content sends nothing. Without it, the
//! agent would report version 0 and receive the whole state again (which
//! writes nothing to the maps, but costs a snapshot per node).
use std::path::Path;

use ballast_proto::v1::NodeState;
use prost::Message;

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("{}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a node state: {source}", path.display())]
    Decode {
        path: std::path::PathBuf,
        source: prost::DecodeError,
    },
}

/// Writes `state` atomically (a temporary file renamed over the old one):
/// a crash mid-write leaves the previous state, never half of one.
pub fn save(path: &Path, state: &NodeState) -> Result<(), PersistError> {
    let io = |source| PersistError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, state.encode_to_vec()).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// The state a previous run kept; None when there is none.
pub fn load(path: &Path) -> Result<Option<NodeState>, PersistError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(PersistError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    NodeState::decode(bytes.as_slice())
        .map(Some)
        .map_err(|source| PersistError::Decode {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ballast_proto::v1::{Announcements, NodeState};

    #[test]
    fn a_saved_state_loads_back_and_a_missing_one_is_none() {
        let dir = std::env::temp_dir().join(format!("ballast-persist-{}", std::process::id()));
        let path = dir.join("node-state.pb");
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
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

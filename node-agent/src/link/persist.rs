//! The applied state, kept on disk across agent restarts (beside the
//! inventory, under /run: it dies with the node's boot, as the pins do).
//!
//! A restarted agent applies it before it dials, so it serves with health
//! checks and reports at once, and says Hello with its version and hash: a
//! controller holding the same content sends nothing. Without it, the
//! agent would report version 0 and receive the whole state again (which
//! writes nothing to the maps, but costs a snapshot per node).
//!
//! Kept as a snapshot (`node-state.pb`, the whole `NodeState`) and a log
//! beside it (`node-state.log`: the deltas applied since, each
//! length-delimited, appended once the core applied it), so that keeping
//! one delta costs what the delta weighs, not the 0.9 MB of a 10k-service
//! state (4 ms per change here). The log is folded into a new snapshot
//! when it outgrows a quarter of it. What is read back is the snapshot with
//! every whole delta of the log that follows on from it; a torn last record
//! (a crash mid-append) ends the log there. So a restarted agent always
//! re-applies a version with its own content: the last one kept whole,
//! never older content under a newer version.
use std::io::Write;
use std::path::{Path, PathBuf};

use ballast_proto::apply_delta;
use ballast_proto::v1::{Delta, NodeState};
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

/// The log beside a snapshot at `path`.
pub fn log_path(path: &Path) -> PathBuf {
    path.with_extension("log")
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PersistError + '_ {
    move |source| PersistError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `state` atomically (a temporary file renamed over the old one):
/// a crash mid-write leaves the previous state, never half of one. Its log
/// is removed after (a log left by a crash in between holds only deltas
/// the snapshot is past, which reading skips).
pub fn save(path: &Path, state: &NodeState) -> Result<u64, PersistError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(path))?;
    }
    let tmp = path.with_extension("tmp");
    let bytes = state.encode_to_vec();
    std::fs::write(&tmp, &bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    let log = log_path(path);
    match std::fs::remove_file(&log) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&log)(e)),
        _ => Ok(bytes.len() as u64),
    }
}

/// Appends one applied delta to the log; the bytes appended.
pub fn append(path: &Path, delta: &Delta) -> Result<u64, PersistError> {
    let log = log_path(path);
    let bytes = delta.encode_length_delimited_to_vec();
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .and_then(|mut f| f.write_all(&bytes))
        .map_err(io(&log))?;
    Ok(bytes.len() as u64)
}

/// Keeps the applied state: a delta appended while the log stays small
/// beside the snapshot, else a new snapshot.
#[derive(Debug)]
pub struct Keeper {
    path: PathBuf,
    /// Bytes of the snapshot this keeper wrote; None: none yet (the next
    /// save writes one, whatever is on disk).
    snapshot: Option<u64>,
    log: u64,
}

impl Keeper {
    pub fn new(path: PathBuf) -> Self {
        Keeper {
            path,
            snapshot: None,
            log: 0,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps `state`, which `delta` (when Some) took it to from the state
    /// kept last.
    pub fn keep(&mut self, state: &NodeState, delta: Option<&Delta>) -> Result<(), PersistError> {
        if let (Some(snapshot), Some(delta)) = (self.snapshot, delta)
            && (self.log + delta.encoded_len() as u64) * 4 <= snapshot
        {
            self.log += append(&self.path, delta)?;
            return Ok(());
        }
        // Forget the snapshot first: if writing fails, the next keep tries
        // whole again rather than append to a log whose base is unknown.
        self.snapshot = None;
        let written = save(&self.path, state)?;
        (self.snapshot, self.log) = (Some(written), 0);
        Ok(())
    }
}

/// The state a previous run kept (its snapshot and log); None when there
/// is none.
pub fn load(path: &Path) -> Result<Option<NodeState>, PersistError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(io(path)(source)),
    };
    let mut state = NodeState::decode(bytes.as_slice()).map_err(|source| PersistError::Decode {
        path: path.to_path_buf(),
        source,
    })?;
    let log = log_path(path);
    let records = match std::fs::read(&log) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Some(state)),
        Err(source) => return Err(io(&log)(source)),
    };
    let mut rest = records.as_slice();
    // A torn record ends the log: what precedes it is whole.
    while let Ok(delta) = Delta::decode_length_delimited(&mut rest) {
        if delta.base_version < state.version {
            // Older than the snapshot (a crash between writing it and
            // removing the log).
            continue;
        }
        if apply_delta(&mut state, &delta).is_err() {
            break;
        }
    }
    Ok(Some(state))
}

#[cfg(test)]
mod tests;

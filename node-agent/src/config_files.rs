//! Standalone-mode configuration: `VirtualServer` objects read from one YAML
//! file (possibly several `---`-separated documents) or from a directory of
//! `*.yaml` / `*.yml` files, the shape of a mounted ConfigMap.
//!
//! A broken document is reported as a [`Document`] with an error, never as a
//! failure of the whole read, so one typo cannot hide the objects beside it.
//! Only the path itself being unreadable is a [`ConfigError`]; the caller then
//! keeps what it has and retries, instead of dropping every service.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ballast_api::VirtualServer;

mod split;
mod strict_yaml;
use split::{at_file_lines, split_documents};
pub use strict_yaml::parse_virtual_server;
#[cfg(test)]
pub(crate) use strict_yaml::tests::EXAMPLE;

#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    /// `path/to/file.yaml#N`, N counting the non-empty documents of the file
    /// from 1.
    pub source: String,
    /// The object, or the reason it could not be read (serde errors include
    /// `at line L column C`, counted from the start of the file).
    pub parsed: Result<Arc<VirtualServer>, String>,
    /// Top-level and `metadata` keys that the object's type has no field
    /// for (`metadata.lables`, `specs`): serde drops them silently, so they
    /// are collected here to be reported. Unknown `spec` fields are parse
    /// errors instead (see [`parse_virtual_server`]).
    pub ignored_keys: Vec<String>,
}

/// The keys of a Kubernetes object and of its `ObjectMeta`; anything else
/// outside `spec` is ignored by the parser.
const OBJECT_KEYS: &[&str] = &["apiVersion", "kind", "metadata", "spec", "status"];
const METADATA_KEYS: &[&str] = &[
    "annotations",
    "creationTimestamp",
    "deletionGracePeriodSeconds",
    "deletionTimestamp",
    "finalizers",
    "generateName",
    "generation",
    "labels",
    "managedFields",
    "name",
    "namespace",
    "ownerReferences",
    "resourceVersion",
    "selfLink",
    "uid",
];

/// Keys of `raw` (one document) outside the object's schema, as paths.
pub fn ignored_keys(raw: &serde_yaml::Value) -> Vec<String> {
    fn unknown(map: &serde_yaml::Mapping, known: &[&str], prefix: &str, out: &mut Vec<String>) {
        for key in map.keys() {
            match key.as_str() {
                Some(k) if known.contains(&k) => {}
                Some(k) => out.push(format!("{prefix}{k}")),
                None => out.push(format!("{prefix}{key:?}")),
            }
        }
    }
    let mut out = Vec::new();
    if let serde_yaml::Value::Mapping(top) = raw {
        unknown(top, OBJECT_KEYS, "", &mut out);
        if let Some(serde_yaml::Value::Mapping(meta)) = top.get("metadata") {
            unknown(meta, METADATA_KEYS, "metadata.", &mut out);
        }
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    // The io::Error is part of the message rather than a `source()`, so that
    // `{:#}` chains in logs do not print it twice.
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: io::Error },
    #[error("{}: not a regular file or a directory", path.display())]
    NotFileOrDir { path: PathBuf },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> ConfigError + '_ {
    move |error| ConfigError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// Reads every document under `path` (see the module docs for what is read).
pub fn read_documents(path: &Path) -> Result<Vec<Document>, ConfigError> {
    read_documents_with(path, &mut ParseCache::default())
}

/// What reading one document's text gave: `None` for an empty one
/// (comments only); errors with lines counted in the document.
type Reading = Option<(Result<Arc<VirtualServer>, String>, Vec<String>)>;

/// The readings of the documents of the last read, by text: a reload
/// parses only the documents whose text changed. The texts are the keys
/// (no hash to trust), so the cache costs about the files' size in memory;
/// each read keeps only the documents it saw.
#[derive(Debug, Default)]
pub struct ParseCache {
    /// text -> (its reading, the read that last saw it)
    readings: HashMap<String, (Reading, u64)>,
    reads: u64,
    parsed_last: usize,
    fingerprint_last: u64,
}

impl ParseCache {
    /// Documents held (for tests and figures).
    pub fn len(&self) -> usize {
        self.readings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.readings.is_empty()
    }

    /// Documents the last read parsed (the others it found here).
    pub fn parsed_last(&self) -> usize {
        self.parsed_last
    }

    /// [`fingerprint`] of what the last read read, taken from the same
    /// bytes (no second read of the files).
    pub fn fingerprint_last(&self) -> u64 {
        self.fingerprint_last
    }
}

/// Reads one document's text.
fn read_document(chunk: &str) -> Reading {
    match serde_yaml::from_str::<serde_yaml::Value>(chunk) {
        Ok(serde_yaml::Value::Null) => None,
        Ok(raw) => Some((
            strict_yaml::from_parsed(chunk, &raw).map(Arc::new),
            ignored_keys(&raw),
        )),
        Err(e) => Some((Err(e.to_string()), Vec::new())),
    }
}

/// [`read_documents`], parsing only the documents `cache` does not hold
/// from the last read; the cache then holds this read's documents.
pub fn read_documents_with(
    path: &Path,
    cache: &mut ParseCache,
) -> Result<Vec<Document>, ConfigError> {
    let mut docs = Vec::new();
    cache.reads += 1;
    let read = cache.reads;
    let mut parsed = 0;
    let mut print = DefaultHasher::new();
    for file in config_files(path)? {
        let bytes = fs::read(&file).map_err(io_error(&file))?;
        hash_file(&mut print, &file, &bytes);
        let name = file.display().to_string();
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                docs.push(Document {
                    source: format!("{name}#1"),
                    parsed: Err(format!("not UTF-8 text: {e}")),
                    ignored_keys: Vec::new(),
                });
                continue;
            }
        };
        let mut index = 0;
        for (lines_before, chunk) in split_documents(&text) {
            // One lookup by the borrowed text; a copy only for a new one.
            let reading = match cache.readings.get_mut(chunk.as_ref()) {
                Some((reading, seen)) => {
                    *seen = read;
                    reading.clone()
                }
                None => {
                    parsed += 1;
                    let reading = read_document(&chunk);
                    let entry = (reading.clone(), read);
                    cache.readings.insert(chunk.into_owned(), entry);
                    reading
                }
            };
            let Some((parsed, ignored_keys)) = reading else {
                continue;
            };
            index += 1;
            docs.push(Document {
                source: format!("{name}#{index}"),
                parsed: parsed.map_err(|e| at_file_lines(&e, lines_before)),
                ignored_keys,
            });
        }
    }
    // Only what this read saw is kept.
    cache.readings.retain(|_, (_, seen)| *seen == read);
    cache.parsed_last = parsed;
    cache.fingerprint_last = print.finish();
    Ok(docs)
}

/// Hash of the names and contents of everything [`read_documents`] would
/// read, for cheap change detection by polling. Contents rather than mtimes,
/// because a ConfigMap update swaps a symlink and need not change the mtimes
/// of the files seen through it. Only comparable within one process.
pub fn fingerprint(path: &Path) -> Result<u64, ConfigError> {
    let mut h = DefaultHasher::new();
    for file in config_files(path)? {
        let bytes = fs::read(&file).map_err(io_error(&file))?;
        hash_file(&mut h, &file, &bytes);
    }
    Ok(h.finish())
}

/// One file's part of a [`fingerprint`]: its name and contents.
fn hash_file(h: &mut DefaultHasher, file: &Path, bytes: &[u8]) {
    file.hash(h);
    bytes.hash(h);
}

/// The files to read, in the order their documents are returned.
fn config_files(path: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    // `metadata` follows symlinks: ConfigMap volumes expose each key as a
    // symlink into a hidden `..data` directory.
    let meta = fs::metadata(path).map_err(io_error(path))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    if !meta.is_dir() {
        return Err(ConfigError::NotFileOrDir {
            path: path.to_path_buf(),
        });
    }
    let mut files = Vec::new();
    for entry in fs::read_dir(path).map_err(io_error(path))? {
        let entry = entry.map_err(io_error(path))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        // Hidden files cover editor swap files and ConfigMap's `..data`
        // bookkeeping, which would otherwise duplicate every object.
        if name.starts_with('.') {
            continue;
        }
        let Some((_, ext)) = name.rsplit_once('.') else {
            continue;
        };
        if !ext.eq_ignore_ascii_case("yaml") && !ext.eq_ignore_ascii_case("yml") {
            continue;
        }
        let file = entry.path();
        // A file vanishing mid-read is an error, not an absent file: treating
        // it as absent would withdraw its services until the next poll.
        if fs::metadata(&file).map_err(io_error(&file))?.is_file() {
            files.push(file);
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A scratch directory removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            static N: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "ballast-config-{}-{tag}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn write(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
            let p = self.0.join(name);
            fs::write(&p, content).unwrap();
            p
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn vs(name: &str, vip: &str) -> String {
        format!(
            "apiVersion: ballast.dev/v1alpha1\nkind: VirtualServer\n\
             metadata: {{name: {name}, namespace: default}}\n\
             spec:\n  addresses: [{vip}]\n  ports: [{{port: 80}}]\n  \
             backends: {{static: [{{address: 198.51.100.11}}]}}\n"
        )
    }

    fn name_of(d: &Document) -> &str {
        d.parsed.as_ref().unwrap().metadata.name.as_deref().unwrap()
    }

    #[test]
    fn multi_document_file() {
        let dir = TempDir::new("multi");
        let text = format!(
            "# Ballast services\n# (header comment only)\n---\n{}---\n# nothing here\n---\n{}...\n---\n{}",
            vs("a", "203.0.113.1"),
            vs("b", "203.0.113.2").replace("kind: VirtualServer", "kind: Service"),
            vs("c", "203.0.113.3"),
        );
        let file = dir.write("all.yaml", text);
        let docs = read_documents(&file).unwrap();
        let sources: Vec<&str> = docs.iter().map(|d| d.source.as_str()).collect();
        let f = file.display().to_string();
        assert_eq!(
            sources,
            [format!("{f}#1"), format!("{f}#2"), format!("{f}#3")]
        );
        assert_eq!(name_of(&docs[0]), "a");
        let err = docs[1].parsed.as_ref().unwrap_err();
        assert!(err.contains("kind Service"), "{err}");
        assert_eq!(name_of(&docs[2]), "c");
    }

    #[test]
    fn a_reread_parses_only_changed_documents() {
        let dir = TempDir::new("cache");
        let a = vs("a", "203.0.113.1");
        let broken = vs("b", "203.0.113.2").replace("port: 80", "port: eighty");
        let file = dir.write("svc.yaml", format!("{a}---\n{broken}"));
        let mut cache = ParseCache::default();
        let first = read_documents_with(&file, &mut cache).unwrap();
        assert_eq!(cache.len(), 2);
        // A comment pushes both down two lines and `a` is changed: `a` is
        // read again, the broken one is reused and its error follows it.
        let a2 = vs("a", "203.0.113.9");
        dir.write("svc.yaml", format!("#\n#\n{a2}---\n{broken}"));
        let second = read_documents_with(&file, &mut cache).unwrap();
        assert_eq!(cache.parsed_last(), 1, "a2 alone");
        // The poll's fingerprint, from the bytes the read read.
        assert_eq!(cache.fingerprint_last(), fingerprint(&file).unwrap());
        assert_eq!(cache.fingerprint_last(), fingerprint(&dir.0).unwrap());
        let (Ok(a_then), Ok(a_now)) = (&first[0].parsed, &second[0].parsed) else {
            panic!("{first:?} {second:?}")
        };
        assert!(!Arc::ptr_eq(a_then, a_now));
        assert_eq!(a_now.spec.addresses, ["203.0.113.9".to_string()]);
        let then = first[1].parsed.as_ref().unwrap_err();
        let now = second[1].parsed.as_ref().unwrap_err();
        assert!(then.contains("at line 14 column"), "{then}");
        assert!(now.contains("at line 16 column"), "{now}");
        // Unchanged: the same reading, not a new parse; the cache keeps
        // only what the last read saw.
        let third = read_documents_with(&file, &mut cache).unwrap();
        assert_eq!(cache.parsed_last(), 0);
        let (Ok(before), Ok(after)) = (&second[0].parsed, &third[0].parsed) else {
            panic!("{third:?}")
        };
        assert!(Arc::ptr_eq(before, after));
        assert_eq!(third, second);
        assert_eq!(cache.len(), 2);
        dir.write("svc.yaml", a2);
        read_documents_with(&file, &mut cache).unwrap();
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn broken_document_does_not_hide_others() {
        let dir = TempDir::new("broken");
        let text = format!(
            "{}---\n{}---\n{}",
            vs("a", "203.0.113.1"),
            // Unclosed flow sequence on line 13 of the file.
            vs("b", "203.0.113.2").replace("[203.0.113.2]", "[203.0.113.2"),
            vs("c", "203.0.113.3").replace("port: 80", "port: eighty"),
        );
        let file = dir.write("svc.yml", text);
        let docs = read_documents(&file).unwrap();
        assert_eq!(docs.len(), 3);
        assert_eq!(name_of(&docs[0]), "a");
        let syntax = docs[1].parsed.as_ref().unwrap_err();
        assert!(syntax.contains("at line 13 column"), "{syntax}");
        let typed = docs[2].parsed.as_ref().unwrap_err();
        // The third document starts on line 17; `ports` is its 6th line.
        assert!(typed.contains("at line 22 column"), "{typed}");
    }

    #[test]
    fn line_numbers_are_file_absolute_with_crlf_and_inline_marker() {
        let dir = TempDir::new("crlf");
        let text = format!(
            "--- # first\n{}",
            vs("a", "203.0.113.1").replace("port: 80", "port: x")
        )
        .replace('\n', "\r\n");
        let file = dir.write("crlf.yaml", text);
        let docs = read_documents(&file).unwrap();
        assert_eq!(docs.len(), 1);
        let err = docs[0].parsed.as_ref().unwrap_err();
        assert!(err.contains("at line 7 column"), "{err}");
    }

    #[test]
    fn directory_is_read_sorted_and_filtered() {
        let dir = TempDir::new("dir");
        dir.write("b.yaml", vs("b", "203.0.113.2"));
        dir.write("a.yml", vs("a", "203.0.113.1"));
        dir.write("C.YAML", vs("upper", "203.0.113.4"));
        dir.write(".hidden.yaml", vs("hidden", "203.0.113.9"));
        dir.write("notes.txt", "not yaml");
        dir.write("empty.yaml", "# nothing yet\n");
        fs::create_dir(dir.0.join("nested.yaml")).unwrap();
        fs::create_dir(dir.0.join("sub")).unwrap();
        dir.write("sub/d.yaml", vs("nested", "203.0.113.5"));
        // ConfigMap layout: visible names are symlinks into a hidden directory.
        fs::create_dir(dir.0.join("..data")).unwrap();
        dir.write("..data/z.yaml", vs("z", "203.0.113.6"));
        std::os::unix::fs::symlink("..data/z.yaml", dir.0.join("z.yaml")).unwrap();

        let docs = read_documents(&dir.0).unwrap();
        let names: Vec<&str> = docs.iter().map(name_of).collect();
        assert_eq!(names, ["upper", "a", "b", "z"]);
        assert!(docs[1].source.ends_with("a.yml#1"), "{}", docs[1].source);
    }

    #[test]
    fn missing_and_odd_paths() {
        let dir = TempDir::new("missing");
        let missing = dir.0.join("nope.yaml");
        let err = read_documents(&missing).unwrap_err();
        assert!(matches!(err, ConfigError::Io { .. }));
        assert!(err.to_string().contains("nope.yaml"), "{err}");
        assert!(fingerprint(&missing).is_err());

        // A dangling symlink in a directory fails the read rather than
        // silently withdrawing that file's services.
        std::os::unix::fs::symlink("gone.yaml", dir.0.join("x.yaml")).unwrap();
        assert!(matches!(
            read_documents(&dir.0),
            Err(ConfigError::Io { .. })
        ));

        assert!(matches!(
            read_documents(Path::new("/dev/null")),
            Err(ConfigError::NotFileOrDir { .. })
        ));
    }

    #[test]
    fn empty_inputs() {
        let dir = TempDir::new("empty");
        assert!(read_documents(&dir.0).unwrap().is_empty());
        let f = dir.write("e.yaml", "");
        assert!(read_documents(&f).unwrap().is_empty());
        let f = dir.write("e.yaml", "---\n---\n# c\n...\n");
        assert!(read_documents(&f).unwrap().is_empty());
    }

    #[test]
    fn non_utf8_is_a_document_error() {
        let dir = TempDir::new("utf8");
        dir.write("bad.yaml", [0xff, 0xfe, b'a', b':', b' ', 0xc3]);
        dir.write("good.yaml", vs("good", "203.0.113.1"));
        let docs = read_documents(&dir.0).unwrap();
        assert_eq!(docs.len(), 2);
        assert!(docs[0].parsed.as_ref().unwrap_err().contains("UTF-8"));
        assert_eq!(name_of(&docs[1]), "good");
    }

    #[test]
    fn keys_outside_the_schema_are_collected() {
        let dir = TempDir::new("keys");
        let text = vs("a", "203.0.113.1")
            .replace(
                "namespace: default}",
                "namespace: default, lables: {app: web}, uid: x, generation: 3}",
            )
            .replace(
                "kind: VirtualServer\n",
                "kind: VirtualServer\nspecs: {}\n7: x\n",
            )
            + "status: {addresses: []}\n";
        let file = dir.write("a.yaml", text);
        let docs = read_documents(&file).unwrap();
        assert_eq!(name_of(&docs[0]), "a", "still parsed");
        assert_eq!(
            docs[0].ignored_keys,
            ["specs", "Number(7)", "metadata.lables"]
        );
        let file = dir.write("b.yaml", vs("b", "203.0.113.2"));
        assert!(read_documents(&file).unwrap()[0].ignored_keys.is_empty());
    }

    #[test]
    fn fingerprint_tracks_content() {
        let dir = TempDir::new("fp");
        let a = dir.write("a.yaml", vs("a", "203.0.113.1"));
        let f1 = fingerprint(&dir.0).unwrap();
        assert_eq!(f1, fingerprint(&dir.0).unwrap());

        dir.write("a.yaml", vs("a", "203.0.113.2"));
        let f2 = fingerprint(&dir.0).unwrap();
        assert_ne!(f1, f2);

        dir.write(".ignored.yaml", "x");
        dir.write("notes.txt", "x");
        assert_eq!(f2, fingerprint(&dir.0).unwrap());

        let b = dir.write("b.yaml", "");
        let f3 = fingerprint(&dir.0).unwrap();
        assert_ne!(f2, f3);
        fs::remove_file(b).unwrap();
        assert_eq!(f2, fingerprint(&dir.0).unwrap());

        // Renaming changes what is read (sources), so it changes the print.
        fs::rename(&a, dir.0.join("c.yaml")).unwrap();
        assert_ne!(f2, fingerprint(&dir.0).unwrap());

        let single = dir.0.join("c.yaml");
        assert_ne!(fingerprint(&single).unwrap(), 0);
    }
}

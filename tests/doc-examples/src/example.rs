//! One example a user reads: a fenced YAML block of the docs or a file of
//! `examples/`, its documents, and what it is meant to show, said by a
//! marker comment on its first line:
//!
//! - `# invalid: <field>: <reason>`: a refusal; validation must refuse it,
//!   naming `<field>` (e.g. `spec.clientAddress`);
//! - `# part of a <Kind>`: a fragment (a `status:`, a few fields), checked
//!   against the schema of `<Kind>` only;
//! - anything else: a whole object that must be accepted as it is.

use std::path::Path;

use serde_json::Value;

use crate::{markdown, markdown_files, repo_root};

/// Who reads the example: objects for a cluster, or files for an agent
/// without Kubernetes (the examples of `docs/standalone.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reader {
    Cluster,
    Standalone,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    Valid,
    Invalid { field: String, reason: String },
    Part { kind: String },
}

#[derive(Clone, Debug)]
pub struct Example {
    /// `docs/user-guide.md:42` (the opening fence) or `examples/x.yaml`.
    pub origin: String,
    pub reader: Reader,
    pub expect: Expect,
    /// The YAML documents, as JSON values (what a client sends).
    pub documents: Vec<Value>,
    /// The text as written (what an agent reads from a file).
    pub text: String,
}

impl Example {
    /// Parses `text` (one or more `---`-separated YAML documents).
    pub fn parse(origin: String, reader: Reader, text: &str) -> Result<Example, String> {
        let mut documents = Vec::new();
        for doc in serde_yaml::Deserializer::from_str(text) {
            let v: Value = serde::Deserialize::deserialize(doc)
                .map_err(|e| format!("{origin}: not YAML: {e}"))?;
            if !v.is_null() {
                documents.push(v);
            }
        }
        if documents.is_empty() {
            return Err(format!("{origin}: no YAML document"));
        }
        Ok(Example {
            expect: expect(text).map_err(|e| format!("{origin}: {e}"))?,
            origin,
            reader,
            documents,
            text: text.to_string(),
        })
    }

    /// `kind` of each document ("" when it has none).
    pub fn kinds(&self) -> Vec<&str> {
        self.documents
            .iter()
            .map(|d| d["kind"].as_str().unwrap_or(""))
            .collect()
    }
}

/// The marker of a block: its first non-empty line.
fn expect(text: &str) -> Result<Expect, String> {
    let first = text.lines().map(str::trim).find(|l| !l.is_empty());
    let Some(first) = first else {
        return Ok(Expect::Valid);
    };
    if let Some(rest) = first.strip_prefix("# invalid:") {
        let (field, reason) = rest
            .trim()
            .split_once(": ")
            .ok_or("an `# invalid:` marker needs `<field>: <reason>`")?;
        return Ok(Expect::Invalid {
            field: field.trim().to_string(),
            reason: reason.trim().to_string(),
        });
    }
    if let Some(rest) = first.strip_prefix("# part of a ") {
        let kind = rest
            .split(|c: char| !c.is_alphanumeric())
            .next()
            .unwrap_or("");
        if kind.is_empty() {
            return Err("a `# part of a` marker needs a kind".into());
        }
        return Ok(Expect::Part {
            kind: kind.to_string(),
        });
    }
    Ok(Expect::Valid)
}

fn reader_of(markdown: &Path) -> Reader {
    if markdown == Path::new("docs/standalone.md") {
        Reader::Standalone
    } else {
        Reader::Cluster
    }
}

/// Every YAML block of `README.md` and `docs/*.md`, then every file of
/// `examples/`; panics (naming it) at one that does not parse.
pub fn all_examples() -> Vec<Example> {
    let root = repo_root();
    let mut out = Vec::new();
    for md in markdown_files() {
        let text = std::fs::read_to_string(root.join(&md)).expect("readable");
        for block in markdown::code_blocks(&text) {
            if block.lang != "yaml" && block.lang != "yml" {
                continue;
            }
            let origin = format!("{}:{}", md.display(), block.line);
            out.push(
                Example::parse(origin, reader_of(&md), &block.text)
                    .unwrap_or_else(|e| panic!("{e}")),
            );
        }
    }
    let mut files: Vec<_> = std::fs::read_dir(root.join("examples"))
        .expect("examples/ exists")
        .map(|e| e.expect("readable").path())
        .collect();
    files.sort();
    for path in files {
        let origin = format!("examples/{}", path.file_name().unwrap().to_string_lossy());
        let text = std::fs::read_to_string(&path).expect("readable");
        out.push(Example::parse(origin, Reader::Cluster, &text).unwrap_or_else(|e| panic!("{e}")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers() {
        let ex = |t: &str| Example::parse("x".into(), Reader::Cluster, t);
        assert_eq!(ex("# web\na: 1\n").unwrap().expect, Expect::Valid);
        assert_eq!(
            ex("# invalid: spec.ports[0].port: out of range\na: 1\n")
                .unwrap()
                .expect,
            Expect::Invalid {
                field: "spec.ports[0].port".into(),
                reason: "out of range".into()
            }
        );
        assert_eq!(
            ex("# part of a VirtualServer: its status\nstatus: {}\n")
                .unwrap()
                .expect,
            Expect::Part {
                kind: "VirtualServer".into()
            }
        );
        assert!(ex("# invalid: no field\na: 1\n").is_err());
        assert!(ex("a: [\n").is_err());
        let two = ex("kind: A\n---\nkind: B\n").unwrap();
        assert_eq!(two.kinds(), ["A", "B"]);
    }
}

//! A YAML stream into its documents, each with the number of file lines
//! before it, and serde's error positions moved from the document's lines
//! to the file's.
use std::borrow::Cow;

/// Splits a YAML stream at `---` / `...` markers: each document with the
/// number of file lines before it, so that [`at_file_lines`] can make parse
/// errors name lines of the whole file. A document is a slice of the text
/// (no copy: a reload looks each one up in the parse cache, and most are
/// there), except one starting with content on its `---` line
/// (`--- {a: 1}`), which is copied with the marker turned to spaces so the
/// content keeps its column. Not by padding each document with newlines:
/// that made a file of 10k documents quadratic (seconds and a gigabyte to
/// read 4 MB).
///
/// The split is done here rather than with serde_yaml's multi-document
/// deserializer because that one cannot resynchronise after a syntax error:
/// every later document would report the same error.
pub(super) fn split_documents(text: &str) -> Vec<(usize, Cow<'_, str>)> {
    enum Chunk {
        /// From this byte offset to the next marker.
        Slice(usize),
        Owned(String),
    }
    let finish = |chunk: Chunk, end: usize| match chunk {
        Chunk::Slice(start) => Cow::Borrowed(&text[start..end]),
        Chunk::Owned(s) => Cow::Owned(s),
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut docs = Vec::new();
    let (mut cur, mut lines_before, mut at) = (Chunk::Slice(0), 0, 0);
    for (lineno, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end_matches(['\n', '\r']);
        let next = at + line.len();
        if is_marker(bare, "---") {
            let rest = &bare[3..];
            let (chunk, before) = if rest.trim().is_empty() {
                (Chunk::Slice(next), lineno + 1)
            } else {
                (Chunk::Owned(format!("   {rest}\n")), lineno)
            };
            docs.push((lines_before, finish(std::mem::replace(&mut cur, chunk), at)));
            lines_before = before;
        } else if is_marker(bare, "...") {
            docs.push((
                lines_before,
                finish(std::mem::replace(&mut cur, Chunk::Slice(next)), at),
            ));
            lines_before = lineno + 1;
        } else if let Chunk::Owned(s) = &mut cur {
            s.push_str(line);
        }
        at = next;
    }
    docs.push((lines_before, finish(cur, at)));
    docs
}

/// `message` (a serde_yaml error, `... at line L column C[, while ... at
/// line L2 column C2]`) with each line counted from the start of the file,
/// for a document that `lines_before` lines precede.
pub(super) fn at_file_lines(message: &str, lines_before: usize) -> String {
    const AT_LINE: &str = "at line ";
    let mut out = String::with_capacity(message.len() + 8);
    let mut rest = message;
    while let Some(i) = rest.find(AT_LINE) {
        let (head, tail) = rest.split_at(i + AT_LINE.len());
        out.push_str(head);
        let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
        match tail[..digits].parse::<usize>() {
            Ok(line) => out.push_str(&(line + lines_before).to_string()),
            Err(_) => out.push_str(&tail[..digits]),
        }
        rest = &tail[digits..];
    }
    out.push_str(rest);
    out
}

/// Markers only count at column 0; indented `---` is content (e.g. inside a
/// block scalar).
fn is_marker(line: &str, marker: &str) -> bool {
    line.strip_prefix(marker)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_lines_are_shifted_to_the_file() {
        assert_eq!(
            at_file_lines(
                "did not find expected ',' or ']' at line 3 column 1, while parsing a flow sequence at line 2 column 12",
                10
            ),
            "did not find expected ',' or ']' at line 13 column 1, while parsing a flow sequence at line 12 column 12"
        );
        assert_eq!(at_file_lines("missing kind", 10), "missing kind");
    }

    #[test]
    fn indented_marker_is_content() {
        let text = "a: |\n  ---\n  x\n---\nb: 1\n";
        let docs = split_documents(text);
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].0, 4, "four lines before the second document");
        let first: serde_yaml::Value = serde_yaml::from_str(&docs[0].1).unwrap();
        assert_eq!(first["a"].as_str(), Some("---\nx\n"));
    }
}

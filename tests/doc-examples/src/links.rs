//! Links between the docs: every relative link of `README.md` and
//! `docs/*.md` names a file that exists and, with `#anchor`, a heading of
//! that file (a Markdown file) that exists.

use std::path::{Component, Path, PathBuf};

use crate::{markdown, markdown_files, repo_root};

/// Every broken relative link, as `file:line: link: why`.
pub fn broken_links() -> Vec<String> {
    let root = repo_root();
    let mut out = Vec::new();
    for md in markdown_files() {
        let text = std::fs::read_to_string(root.join(&md)).expect("readable");
        for link in markdown::links(&text) {
            if let Err(why) = check(&root, &md, &text, &link.dest) {
                out.push(format!(
                    "{}:{}: {}: {why}",
                    md.display(),
                    link.line,
                    link.dest
                ));
            }
        }
    }
    out
}

/// Relative links (not `scheme:`), checked from the file `from` (relative
/// to `root`) whose text is `from_text`.
fn check(root: &Path, from: &Path, from_text: &str, dest: &str) -> Result<(), String> {
    if dest.contains("://") || dest.starts_with("mailto:") {
        return Ok(());
    }
    let (file, anchor) = match dest.split_once('#') {
        Some((f, a)) => (f, Some(a)),
        None => (dest, None),
    };
    let target = if file.is_empty() {
        from.to_path_buf()
    } else {
        normalise(&from.parent().unwrap_or(Path::new("")).join(file))
            .ok_or("leaves the repository")?
    };
    let path = root.join(&target);
    if !path.exists() {
        return Err(format!("{} does not exist", target.display()));
    }
    let Some(anchor) = anchor else { return Ok(()) };
    if path.extension().is_none_or(|e| e != "md") {
        return Err("an anchor into a file that is not Markdown".into());
    }
    let text = if file.is_empty() {
        from_text.to_string()
    } else {
        std::fs::read_to_string(&path).map_err(|e| e.to_string())?
    };
    if markdown::anchors(&text).iter().any(|a| a == anchor) {
        Ok(())
    } else {
        Err(format!("{} has no heading #{anchor}", target.display()))
    }
}

/// `a/b/../c` -> `a/c`; `None` above the root.
fn normalise(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_relative_paths_and_anchors() {
        let root = repo_root();
        let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
        let from = Path::new("docs/user-guide.md");
        assert_eq!(check(&root, from, "", "../README.md"), Ok(()));
        assert_eq!(check(&root, from, "", "https://example.com/x"), Ok(()));
        assert!(check(&root, from, "", "../nowhere.md").is_err());
        assert!(check(&root, from, "", "../../../etc/passwd").is_err());
        assert!(check(&root, from, "", "../README.md#no-such-heading").is_err());
        assert_eq!(
            check(&root, Path::new("README.md"), &readme, "#ballast"),
            Ok(())
        );
        assert_eq!(check(&root, from, "## A b\n", "#a-b"), Ok(()));
    }
}

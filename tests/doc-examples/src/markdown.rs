//! What the tests read out of a Markdown file: its fenced code blocks (with
//! the line they start on), its links and its headings' anchors, through a
//! real CommonMark parser (so a block inside a list item counts, and a
//! `# comment` inside a block is not a heading).

use std::collections::HashMap;

use pulldown_cmark::{CodeBlockKind, Event, Options, Parser, Tag, TagEnd};

/// A fenced code block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeBlock {
    /// The info string's first word (`yaml`, `sh`, ...), empty when none.
    pub lang: String,
    /// 1-based line of the opening fence.
    pub line: usize,
    pub text: String,
}

/// A link (inline, reference or autolink) to somewhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub dest: String,
    /// 1-based line where it appears.
    pub line: usize,
}

fn parser(text: &str) -> pulldown_cmark::OffsetIter<'_> {
    Parser::new_ext(
        text,
        Options::ENABLE_TABLES | Options::ENABLE_HEADING_ATTRIBUTES,
    )
    .into_offset_iter()
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset].bytes().filter(|b| *b == b'\n').count() + 1
}

/// Every fenced code block, in order.
pub fn code_blocks(text: &str) -> Vec<CodeBlock> {
    let mut out = Vec::new();
    let mut open: Option<CodeBlock> = None;
    for (event, range) in parser(text) {
        match event {
            Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(info))) => {
                open = Some(CodeBlock {
                    lang: info.split_whitespace().next().unwrap_or("").to_string(),
                    line: line_of(text, range.start),
                    text: String::new(),
                });
            }
            Event::Text(t) => {
                if let Some(b) = open.as_mut() {
                    b.text.push_str(&t);
                }
            }
            Event::End(TagEnd::CodeBlock) => out.extend(open.take()),
            _ => {}
        }
    }
    out
}

/// Every link, in order.
pub fn links(text: &str) -> Vec<Link> {
    parser(text)
        .filter_map(|(event, range)| match event {
            Event::Start(Tag::Link { dest_url, .. }) => Some(Link {
                dest: dest_url.to_string(),
                line: line_of(text, range.start),
            }),
            _ => None,
        })
        .collect()
}

/// The anchors GitHub gives the headings, in order (a repeated heading gets
/// `-1`, `-2`, ...).
pub fn anchors(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut repeats: HashMap<String, usize> = HashMap::new();
    let mut heading: Option<String> = None;
    for (event, _) in parser(text) {
        match event {
            Event::Start(Tag::Heading { .. }) => heading = Some(String::new()),
            Event::Text(t) | Event::Code(t) => {
                if let Some(h) = heading.as_mut() {
                    h.push_str(&t);
                }
            }
            Event::End(TagEnd::Heading(_)) => {
                if let Some(h) = heading.take() {
                    let base = slug(&h);
                    let n = repeats.entry(base.clone()).or_default();
                    out.push(if *n == 0 { base } else { format!("{base}-{n}") });
                    *n += 1;
                }
            }
            _ => {}
        }
    }
    out
}

/// GitHub's anchor for a heading's text: lower case, spaces to `-`, every
/// character other than letters, digits, `-` and `_` dropped.
pub fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "# Title\n\nSee [the guide](docs/x.md#a-b) and <https://example.com>.\n\n\
        - item\n\n  ```yaml\n  # a comment, not a heading\n  a: 1\n  ```\n\n\
        ## A `b` (c)!\n\n```sh\necho\n```\n\n## A `b` (c)!\n";

    #[test]
    fn blocks_in_list_items_and_their_lines() {
        let blocks = code_blocks(DOC);
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].lang, "yaml");
        assert_eq!(blocks[0].line, 7);
        assert_eq!(blocks[0].text, "# a comment, not a heading\na: 1\n");
        assert_eq!((blocks[1].lang.as_str(), blocks[1].line), ("sh", 14));
    }

    #[test]
    fn links_and_anchors() {
        let dests: Vec<_> = links(DOC).into_iter().map(|l| l.dest).collect();
        assert_eq!(dests, ["docs/x.md#a-b", "https://example.com"]);
        assert_eq!(anchors(DOC), ["title", "a-b-c", "a-b-c-1"]);
        assert_eq!(
            slug("Hot standby (migrating from keepalived vrrp_instance)"),
            "hot-standby-migrating-from-keepalived-vrrp_instance"
        );
    }
}

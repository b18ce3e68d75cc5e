//! Every relative link of README.md and docs/*.md resolves: the file exists
//! and, with an anchor, the heading does.

#[test]
fn links_between_the_docs_resolve() {
    let broken = ballast_doc_examples::links::broken_links();
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

//! Pure: a round whose documents are the last round's with a few edited in
//! place, after a round that ended clean (no error: every object served
//! with its own version), resolved from the edited documents alone. This
//! is a reload after one file edit, and what a full [`super::resolve`]
//! would spend on the unchanged objects (tens of ms at 10k) it decides the
//! same way: unchanged objects keep what they serve, and each edited one
//! takes its new version when it is valid and conflicts with nothing the
//! others hold, in name order, as ownership's first pass decides
//! ([`ownership::changes_fit`]). Anything else (a document added, removed,
//! renamed or broken, an edit that is invalid or contested) returns None:
//! the full resolve decides, and reports.
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use ballast_api::VirtualServer;

use super::super::ownership::{self, Version};
use super::{
    LastGood, ReloadOutcome, Valid, check_node, document_warnings, entries, not_yet_logged,
    object_of, same_document, served_warnings,
};
use crate::config_files::Document;

/// An edit at most this share of the documents (1/N) takes this path; a
/// larger one is resolved whole (its cost is then mostly the edits').
const MOST_EDITED: usize = 8;

/// The outcome of the round, with `last` moved to it; None (and `last`
/// untouched) when the full resolve must decide.
pub(super) fn resolve_edited(
    docs: &[Document],
    last: &mut LastGood,
    snat: &[Ipv4Addr],
) -> Option<ReloadOutcome> {
    if !last.errors.is_empty() || last.snat != snat || last.documents.len() != docs.len() {
        return None;
    }
    let mut edited: BTreeMap<String, (usize, &Arc<VirtualServer>, Version)> = BTreeMap::new();
    for (i, (was, now)) in last.documents.iter().zip(docs).enumerate() {
        if same_document(was, now) {
            continue;
        }
        let (Ok(was_vs), Ok(now_vs)) = (&was.parsed, &now.parsed) else {
            return None;
        };
        if was.source != now.source {
            return None;
        }
        let object = object_of(now_vs)?;
        if object_of(was_vs).as_ref() != Some(&object) || edited.len() * MOST_EDITED >= docs.len() {
            return None;
        }
        let specs = entries::validate(now_vs).ok()?;
        check_node(&specs, snat, last.standby).ok()?;
        edited.insert(object, (i, now_vs, specs.into()));
    }
    let wanted: BTreeMap<String, Version> = edited
        .iter()
        .map(|(object, (_, _, version))| (object.clone(), version.clone()))
        .collect();
    if !ownership::changes_fit(&last.served, &wanted) {
        return None;
    }

    // Warnings in the full resolve's order: every document's, then every
    // served version's; each logged once per version of its object.
    let mut warnings = Vec::new();
    for (object, (i, vs, _)) in &edited {
        for w in document_warnings(vs, &docs[*i]) {
            warnings.push((object.clone(), docs[*i].source.clone(), w));
        }
        last.warned.entry(object.clone()).or_default().saw(Some(vs));
    }
    for (object, (i, _, version)) in &edited {
        for w in served_warnings(version) {
            warnings.push((object.clone(), docs[*i].source.clone(), w));
        }
    }
    let mut out = ReloadOutcome {
        warnings: not_yet_logged(&mut last.warned, warnings),
        ..Default::default()
    };
    for (object, (i, vs, version)) in edited {
        let doc = &docs[i];
        let held = last.served.get(&object).cloned();
        if !held.as_ref().is_some_and(|h| ownership::same(&version, h)) {
            out.change
                .record(&object, held.as_deref().unwrap_or_default(), &version);
        }
        let valid = Valid {
            source: doc.source.clone(),
            from: Some(Arc::clone(vs)),
            version: version.clone(),
        };
        last.objects.insert(object.clone(), valid);
        last.served.insert(object, version);
        last.documents[i] = doc.clone();
    }
    Some(out)
}

#[cfg(test)]
mod tests;

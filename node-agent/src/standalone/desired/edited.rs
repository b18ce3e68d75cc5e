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

use super::super::file_errors::FileWarning;
use super::super::ownership::{self, Version};
use super::{
    LastGood, ReloadOutcome, Valid, Warned, check_node, document_warnings, entries, object_of,
    served_warnings,
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
        if was.source != now.source {
            return None;
        }
        let (Ok(was_vs), Ok(now_vs)) = (&was.parsed, &now.parsed) else {
            return None;
        };
        if Arc::ptr_eq(was_vs, now_vs) && was.ignored_keys == now.ignored_keys {
            continue;
        }
        let object = object_of(now_vs)?;
        if object_of(was_vs).as_ref() != Some(&object) || edited.len() * MOST_EDITED >= docs.len() {
            return None;
        }
        let specs = entries::validate(now_vs).ok()?;
        check_node(&specs, snat).ok()?;
        edited.insert(object, (i, now_vs, specs.into()));
    }
    let wanted: BTreeMap<String, Version> = edited
        .iter()
        .map(|(object, (_, _, version))| (object.clone(), version.clone()))
        .collect();
    if !ownership::changes_fit(&last.served, &wanted) {
        return None;
    }

    let mut out = ReloadOutcome::default();
    // Warnings in the full resolve's order: every document's, then every
    // served version's; each logged once per version of its object.
    let mut warnings = Vec::new();
    for (object, (i, vs, _)) in &edited {
        for w in document_warnings(vs, &docs[*i]) {
            warnings.push((object.clone(), *i, w));
        }
        // As `warn_once` does: what was logged for an equal document (the
        // same text read again) stays logged.
        let warned = last.warned.entry(object.clone()).or_default();
        if !warned
            .seen
            .as_ref()
            .is_some_and(|seen| Arc::ptr_eq(seen, vs) || seen == *vs)
        {
            *warned = Warned {
                seen: Some(Arc::clone(vs)),
                ..Default::default()
            };
        }
    }
    for (object, (i, _, version)) in &edited {
        for w in served_warnings(version) {
            warnings.push((object.clone(), *i, w));
        }
    }
    for (object, i, warning) in warnings {
        let messages = &mut last.warned.entry(object.clone()).or_default().messages;
        if messages.insert(format!("{}: {}", warning.field, warning.reason)) {
            out.warnings.push(FileWarning {
                document: docs[i].source.clone(),
                object,
                warning,
            });
        }
    }
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

//! LIST: resourceVersion semantics, selectors and `limit`/`continue` paging.
//!
//! Pages of one list are served from the same snapshot, as etcd does: the
//! continue token carries the snapshot's resourceVersion and the last key
//! returned, and later pages are rebuilt from the history at that version.
//! Once compaction dropped that history, the token is expired (410).

use std::sync::Arc;

use serde_json::Value;

use crate::resources::GroupResource;
use crate::selectors::Selectors;
use crate::status::ApiError;
use crate::store::{ObjectName, Store};

/// The apiserver's message for a continue token older than the compaction.
pub const CONTINUE_EXPIRED: &str = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.";

/// Query parameters of a list.
#[derive(Clone, Debug, Default)]
pub struct ListParams {
    /// `labelSelector` and `fieldSelector`.
    pub selectors: Selectors,
    /// `limit` (0 or absent: everything).
    pub limit: Option<usize>,
    /// `continue`.
    pub continue_token: Option<String>,
    /// `resourceVersion`.
    pub resource_version: Option<String>,
    /// `resourceVersionMatch`.
    pub version_match: Option<String>,
}

/// One page.
#[derive(Clone, Debug)]
pub struct ListPage {
    /// Selected objects, in key order.
    pub items: Vec<Arc<Value>>,
    /// The snapshot's resourceVersion (`metadata.resourceVersion` of the list).
    pub resource_version: u64,
    /// Token for the next page, if any.
    pub continue_token: Option<String>,
    /// `metadata.remainingItemCount`: only without selectors, like the apiserver.
    pub remaining: Option<usize>,
}

fn encode_continue(rv: u64, (ns, name): &ObjectName) -> String {
    format!("{rv}\n{ns}\n{name}")
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode_continue(token: &str) -> Option<(u64, ObjectName)> {
    if !token.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok())
        .collect();
    let text = String::from_utf8(bytes?).ok()?;
    let mut parts = text.splitn(3, '\n');
    let rv = parts.next()?.parse().ok()?;
    Some((rv, (parts.next()?.to_string(), parts.next()?.to_string())))
}

fn too_old(requested: u64, floor: u64) -> ApiError {
    ApiError::Expired(format!("too old resource version: {requested} ({floor})"))
}

/// Parses a resourceVersion parameter.
pub fn parse_rv(rv: &str) -> Result<u64, ApiError> {
    rv.parse()
        .map_err(|_| ApiError::BadRequest(format!("invalid resource version \"{rv}\"")))
}

/// Serves one page of a list of `gr` (optionally within one namespace).
pub fn list(
    store: &Store,
    gr: &GroupResource,
    namespace: Option<&str>,
    p: &ListParams,
) -> Result<ListPage, ApiError> {
    let current = store.current_rv();
    let rv_param = p.resource_version.as_deref().unwrap_or("");
    let exact = match p.version_match.as_deref().unwrap_or("") {
        "" | "NotOlderThan" => false,
        "Exact" => true,
        other => {
            return Err(ApiError::BadRequest(format!(
                "resourceVersionMatch: Unsupported value: \"{other}\": supported values: \"Exact\", \"NotOlderThan\""
            )));
        }
    };
    let (at, start_after) = if let Some(token) =
        p.continue_token.as_deref().filter(|t| !t.is_empty())
    {
        if !rv_param.is_empty() {
            return Err(ApiError::BadRequest(
                "specifying resource version is not allowed when using continue".into(),
            ));
        }
        let (rv, key) = decode_continue(token)
            .ok_or_else(|| ApiError::BadRequest("continue key is not valid".into()))?;
        if rv < store.floor() {
            return Err(ApiError::Expired(CONTINUE_EXPIRED.into()));
        }
        (rv, Some(key))
    } else if rv_param.is_empty() {
        if p.version_match.is_some() {
            return Err(ApiError::BadRequest(
                "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided".into(),
            ));
        }
        // Most recent: a consistent read.
        (current, None)
    } else if rv_param == "0" {
        if exact {
            return Err(ApiError::BadRequest(
                "resourceVersionMatch: Forbidden: resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"".into(),
            ));
        }
        // Any version: ours is always the freshest.
        (current, None)
    } else {
        let n = parse_rv(rv_param)?;
        if n > current {
            return Err(ApiError::TooLargeResourceVersion {
                requested: n,
                current,
            });
        }
        if exact {
            if n < store.floor() {
                return Err(too_old(n, store.floor()));
            }
            (n, None)
        } else {
            // Not older than n: the current state qualifies.
            (current, None)
        }
    };

    let selected = |(key, obj): &(ObjectName, Arc<Value>)| {
        namespace.is_none_or(|ns| key.0 == ns)
            && start_after.as_ref().is_none_or(|s| key > s)
            && p.selectors.matches(obj)
    };
    let objects: Vec<(ObjectName, Arc<Value>)> = if at == current {
        store
            .objects(gr, namespace)
            .map(|(k, o)| (k.clone(), Arc::clone(&o.value)))
            .filter(selected)
            .collect()
    } else {
        store
            .snapshot(gr, at)
            .into_iter()
            .filter(selected)
            .collect()
    };

    let limit = p.limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
    let total = objects.len();
    let mut items = Vec::with_capacity(total.min(limit));
    let mut last_key = None;
    for (key, obj) in objects.into_iter().take(limit) {
        items.push(obj);
        last_key = Some(key);
    }
    let (continue_token, remaining) = if total > items.len() {
        let token = encode_continue(at, last_key.as_ref().expect("a full page has a last key"));
        let remaining = p.selectors.is_empty().then_some(total - items.len());
        (Some(token), remaining)
    } else {
        (None, None)
    };
    Ok(ListPage {
        items,
        resource_version: at,
        continue_token,
        remaining,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::managed::ManagedFields;
    use crate::selectors::LabelSelector;
    use serde_json::json;

    fn gr() -> GroupResource {
        GroupResource::new("", "services")
    }

    fn store_with(n: usize) -> Store {
        let mut s = Store::default();
        for i in 0..n {
            let name = format!("s{i:03}");
            let v = json!({"metadata": {"name": name, "namespace": "ns", "labels": {"even": (i % 2 == 0).to_string()}}});
            s.insert(&gr(), "ns", &name, v, ManagedFields::default());
        }
        s
    }

    #[test]
    fn pages_come_from_one_snapshot() {
        let mut s = store_with(5);
        let p = ListParams {
            limit: Some(2),
            ..Default::default()
        };
        let first = list(&s, &gr(), None, &p).unwrap();
        assert_eq!(first.items.len(), 2);
        assert_eq!(first.remaining, Some(3));
        // Changes after the first page are not seen by later pages.
        s.remove(&gr(), "ns", "s004");
        s.insert(
            &gr(),
            "ns",
            "s005",
            json!({"metadata": {"name": "s005"}}),
            ManagedFields::default(),
        );
        let mut names = Vec::new();
        let mut token = first.continue_token.clone();
        while let Some(t) = token {
            let page = list(
                &s,
                &gr(),
                None,
                &ListParams {
                    continue_token: Some(t),
                    ..p.clone()
                },
            )
            .unwrap();
            assert_eq!(page.resource_version, first.resource_version);
            names.extend(
                page.items
                    .iter()
                    .map(|o| o["metadata"]["name"].as_str().unwrap().to_string()),
            );
            token = page.continue_token;
        }
        assert_eq!(names, ["s002", "s003", "s004"]);
    }

    #[test]
    fn compaction_expires_tokens_and_exact_versions() {
        let mut s = store_with(3);
        let p = ListParams {
            limit: Some(1),
            ..Default::default()
        };
        let first = list(&s, &gr(), None, &p).unwrap();
        s.compact();
        let err = list(
            &s,
            &gr(),
            None,
            &ListParams {
                continue_token: first.continue_token,
                ..p
            },
        )
        .unwrap_err();
        assert_eq!(err.code(), 410);
        let exact = ListParams {
            resource_version: Some("2".into()),
            version_match: Some("Exact".into()),
            ..Default::default()
        };
        assert_eq!(
            list(&s, &gr(), None, &exact).unwrap_err().reason(),
            "Expired"
        );
        let future = ListParams {
            resource_version: Some("99".into()),
            ..Default::default()
        };
        assert_eq!(list(&s, &gr(), None, &future).unwrap_err().code(), 504);
    }

    #[test]
    fn selectors_filter_before_paging_and_hide_remaining_count() {
        let s = store_with(6);
        let p = ListParams {
            limit: Some(2),
            selectors: Selectors {
                labels: LabelSelector::parse("even=true").unwrap(),
                ..Default::default()
            },
            ..Default::default()
        };
        let page = list(&s, &gr(), None, &p).unwrap();
        assert_eq!(page.items.len(), 2);
        assert_eq!(page.remaining, None);
        assert!(page.continue_token.is_some());
    }
}

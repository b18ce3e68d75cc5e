//! `metav1.LabelSelector` evaluation (namespace selectors of pools) and the
//! plain map selectors (`nodeSelector`).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

pub type Labels = BTreeMap<String, String>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectorError {
    #[error(
        "matchExpressions[{index}]: operator {operator:?} is not In, NotIn, Exists or DoesNotExist"
    )]
    UnknownOperator { index: usize, operator: String },
    #[error("matchExpressions[{index}]: operator {operator} needs at least one value")]
    MissingValues { index: usize, operator: String },
    #[error("matchExpressions[{index}]: operator {operator} takes no values")]
    UnexpectedValues { index: usize, operator: String },
}

/// Validates a selector without evaluating it.
pub fn check(sel: &LabelSelector) -> Result<(), SelectorError> {
    matches(sel, &Labels::new()).map(|_| ())
}

/// Whether `labels` satisfy `sel` (an empty selector matches everything, as
/// in Kubernetes).
pub fn matches(sel: &LabelSelector, labels: &Labels) -> Result<bool, SelectorError> {
    let mut ok = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    for (index, e) in sel.match_expressions.iter().flatten().enumerate() {
        let values = e.values.as_deref().unwrap_or_default();
        let value = labels.get(&e.key);
        let hit = match e.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                return Err(SelectorError::MissingValues {
                    index,
                    operator: e.operator.clone(),
                });
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                return Err(SelectorError::UnexpectedValues {
                    index,
                    operator: e.operator.clone(),
                });
            }
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => !value.is_some_and(|v| values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            other => {
                return Err(SelectorError::UnknownOperator {
                    index,
                    operator: other.to_string(),
                });
            }
        };
        ok &= hit;
    }
    Ok(ok)
}

/// A `nodeSelector`-style map: every pair must be present.
pub fn map_matches(selector: &BTreeMap<String, String>, labels: &Labels) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: if values.is_empty() {
                None
            } else {
                Some(values.iter().map(|s| s.to_string()).collect())
            },
        }
    }

    #[test]
    fn selector_table() {
        let team_a = labels(&[("team", "a"), ("env", "prod")]);
        let cases: &[(&str, LabelSelector, bool)] = &[
            ("empty matches all", LabelSelector::default(), true),
            (
                "matchLabels hit",
                LabelSelector {
                    match_labels: Some(labels(&[("team", "a")])),
                    ..Default::default()
                },
                true,
            ),
            (
                "matchLabels miss",
                LabelSelector {
                    match_labels: Some(labels(&[("team", "b")])),
                    ..Default::default()
                },
                false,
            ),
            (
                "In",
                LabelSelector {
                    match_expressions: Some(vec![expr("env", "In", &["prod", "stage"])]),
                    ..Default::default()
                },
                true,
            ),
            (
                "NotIn",
                LabelSelector {
                    match_expressions: Some(vec![expr("env", "NotIn", &["prod"])]),
                    ..Default::default()
                },
                false,
            ),
            (
                "DoesNotExist",
                LabelSelector {
                    match_expressions: Some(vec![expr("legacy", "DoesNotExist", &[])]),
                    ..Default::default()
                },
                true,
            ),
            (
                "all terms ANDed",
                LabelSelector {
                    match_labels: Some(labels(&[("team", "a")])),
                    match_expressions: Some(vec![
                        expr("env", "Exists", &[]),
                        expr("env", "In", &["dev"]),
                    ]),
                },
                false,
            ),
        ];
        for (case, sel, want) in cases {
            assert_eq!(matches(sel, &team_a).unwrap(), *want, "{case}");
        }
    }

    #[test]
    fn malformed_selectors_are_errors() {
        let bad = LabelSelector {
            match_expressions: Some(vec![expr("env", "Equals", &["x"])]),
            ..Default::default()
        };
        assert!(matches!(
            check(&bad),
            Err(SelectorError::UnknownOperator { index: 0, .. })
        ));
        let bad = LabelSelector {
            match_expressions: Some(vec![expr("env", "In", &[])]),
            ..Default::default()
        };
        assert!(matches!(
            check(&bad),
            Err(SelectorError::MissingValues { .. })
        ));
    }
}

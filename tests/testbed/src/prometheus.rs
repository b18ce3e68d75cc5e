//! The Prometheus text format as the agent's `/metrics` renders it, parsed
//! into samples keyed by name and labels.
use std::collections::BTreeMap;

/// Labels of one series, by name.
pub type Labels = BTreeMap<String, String>;

/// Samples: (name, labels) -> value.
pub type Samples = BTreeMap<(String, Labels), f64>;

/// Parses every sample line (comments and blank lines skipped); panics
/// naming the line on anything else.
pub fn parse(text: &str) -> Samples {
    let mut out = Samples::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect(line);
        let value: f64 = value.parse().expect(line);
        out.insert(parse_series(series), value);
    }
    out
}

/// `name` or `name{k="v",...}` into its name and labels.
pub fn parse_series(series: &str) -> (String, Labels) {
    match series.split_once('{') {
        None => (series.to_string(), Labels::new()),
        Some((name, rest)) => {
            let rest = rest.strip_suffix('}').expect(series);
            let labels = rest
                .split("\",")
                .filter(|kv| !kv.is_empty())
                .map(|kv| {
                    let (k, v) = kv.split_once("=\"").expect(series);
                    (k.to_string(), v.trim_end_matches('"').to_string())
                })
                .collect();
            (name.to_string(), labels)
        }
    }
}

/// The value of `name` with exactly `labels`; panics listing what there is.
pub fn sample(s: &Samples, name: &str, labels: &[(&str, &str)]) -> f64 {
    let key = (
        name.to_string(),
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    lookup(s, key)
}

/// The value of one series written as rendered (`name{k="v"}`).
pub fn series(s: &Samples, series: &str) -> f64 {
    lookup(s, parse_series(series))
}

fn lookup(s: &Samples, key: (String, Labels)) -> f64 {
    *s.get(&key)
        .unwrap_or_else(|| panic!("no sample {key:?} in {:#?}", s.keys().collect::<Vec<_>>()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_labels_and_values() {
        let s =
            parse("# HELP x y\n# TYPE a counter\na 3\nb{k=\"v\",t=\"conntrack\"} 1.5\n\nc{} 0\n");
        assert_eq!(sample(&s, "a", &[]), 3.0);
        assert_eq!(sample(&s, "b", &[("k", "v"), ("t", "conntrack")]), 1.5);
        assert_eq!(series(&s, r#"b{t="conntrack",k="v"}"#), 1.5);
        assert_eq!(series(&s, "c"), 0.0);
        assert_eq!(s.len(), 3);
    }
}

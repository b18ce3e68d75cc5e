//! The AddressPool the README's install creates: the chart's pool
//! (`charts/ballast/templates/addresspool.yaml`, its defaults from
//! `values.yaml`) with the addresses the README's `helm install` sets.
//! Every cluster example must work in a cluster holding only this pool.

use serde_json::{Value, json};

use crate::repo_root;

/// The pool, as the chart renders it; panics when the README's install no
/// longer creates one (the examples' tests then say what they rely on).
pub fn readme_pool() -> Value {
    let root = repo_root();
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let addresses = readme_pool_addresses(&readme).expect(
        "README.md's helm install sets addressPool.create=true and addressPool.addresses={...}",
    );
    let values: Value = serde_yaml::from_str(
        &std::fs::read_to_string(root.join("charts/ballast/values.yaml")).expect("values.yaml"),
    )
    .expect("values.yaml parses");
    let pool = &values["addressPool"];
    json!({
        "apiVersion": "ballast.dev/v1alpha1",
        "kind": "AddressPool",
        "metadata": {"name": pool["name"]},
        "spec": {
            "addresses": addresses,
            "autoAssign": pool["autoAssign"],
            "avoidBuggyIPs": pool["avoidBuggyIPs"],
            "shareByDefault": pool["shareByDefault"],
        },
    })
}

/// The `{a,b}` list of `--set 'addressPool.addresses={...}'` in the first
/// `helm install` command that also sets `addressPool.create=true`.
fn readme_pool_addresses(readme: &str) -> Option<Vec<String>> {
    let command = helm_install_command(readme)?;
    if !command.contains("addressPool.create=true") {
        return None;
    }
    let (_, rest) = command.split_once("addressPool.addresses={")?;
    let (list, _) = rest.split_once('}')?;
    Some(list.split(',').map(|a| a.trim().to_string()).collect())
}

/// The first `helm install` command, its continuation lines joined.
fn helm_install_command(readme: &str) -> Option<String> {
    let mut lines = readme
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("helm install"));
    let mut command = String::new();
    for line in lines.by_ref() {
        let (part, continued) = match line.trim_end().strip_suffix('\\') {
            Some(p) => (p, true),
            None => (line, false),
        };
        command.push_str(part);
        command.push(' ');
        if !continued {
            return Some(command);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_install_command() {
        let readme = "x\n```sh\nhelm install b charts/ballast \\\n  --set addressPool.create=true \\\n  \
                      --set 'addressPool.addresses={203.0.113.0/28, 2001:db8::/120}'\n```\n";
        assert_eq!(
            readme_pool_addresses(readme).unwrap(),
            ["203.0.113.0/28", "2001:db8::/120"]
        );
        assert_eq!(
            readme_pool_addresses("helm install b charts/ballast\n"),
            None
        );
    }

    #[test]
    fn the_readmes_pool() {
        let pool = readme_pool();
        assert_eq!(pool["metadata"]["name"], "default");
        assert!(
            pool["spec"]["addresses"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        );
        assert_eq!(pool["spec"]["autoAssign"], true);
    }
}

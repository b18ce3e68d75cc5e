//! Refuses to start without our CRDs, with a message saying how to fix it.

use kube::Client;
use kube::discovery::Discovery;

#[derive(Debug, thiserror::Error)]
pub enum CrdCheckError {
    #[error(
        "the Ballast CRDs are not installed ({missing} missing from API group ballast.dev/v1alpha1); \
         install them with `kubectl apply -f crds/` (or the Helm chart) and start the controller again"
    )]
    Missing { missing: String },
    #[error("API discovery failed: {0}")]
    Discovery(#[from] kube::Error),
}

pub async fn check(client: Client) -> Result<(), CrdCheckError> {
    let discovery = Discovery::new(client)
        .filter(&["ballast.dev"])
        .run()
        .await?;
    let mut missing = Vec::new();
    for plural in ["virtualservers", "addresspools"] {
        let found = discovery.groups().any(|g| {
            g.versioned_resources("v1alpha1")
                .iter()
                .any(|(r, _)| r.plural == plural)
        });
        if !found {
            missing.push(plural);
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(CrdCheckError::Missing {
            missing: missing.join(", "),
        })
    }
}

//! Where the agent dials. Each `--controller` entry (`https://host:port`)
//! is resolved again at every round of dials and every address it names is
//! tried in turn: behind a headless Service the controller's name resolves
//! to every ready replica, a standby refuses with UNAVAILABLE naming the
//! leader, and the agent moves on to the next address instead of waiting
//! for a Service to route it (a ClusterIP Service would pick a replica at
//! random, standby or not). Resolving at every round follows pods that
//! come and go. The TLS server name stays the entry's host (or
//! `--tls-server-name`), so dialling an address checks the same name.
//!
//! Entries keep their order; within one, addresses keep the resolver's.
//! The resolver is a parameter, so the expansion is tested without DNS.
use std::future::Future;
use std::net::SocketAddr;

use tonic::transport::Uri;

/// One `--controller` entry, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// As given, for logs.
    pub given: String,
    /// `https` or `http`.
    pub scheme: String,
    /// Host name or address literal (without IPv6 brackets).
    pub host: String,
    pub port: u16,
}

/// One address to dial.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The entry it came from, as given.
    pub entry: String,
    pub address: SocketAddr,
    /// `scheme://address`, what the channel dials.
    pub uri: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialError {
    #[error("--controller {entry}: {why}")]
    Entry { entry: String, why: String },
    #[error("--controller {entry}: resolving {host}: {why}")]
    Resolve {
        entry: String,
        host: String,
        why: String,
    },
    #[error("--controller {entry}: {host} resolves to no address")]
    NoAddress { entry: String, host: String },
}

impl Entry {
    /// Parses `scheme://host[:port]`; the port defaults to the scheme's.
    pub fn parse(given: &str) -> Result<Entry, DialError> {
        let bad = |why: &str| DialError::Entry {
            entry: given.into(),
            why: why.into(),
        };
        let uri: Uri = given.parse().map_err(|e| bad(&format!("{e}")))?;
        let scheme = uri
            .scheme_str()
            .ok_or_else(|| bad("no scheme (https://)"))?;
        let default_port = match scheme {
            "https" => 443,
            "http" => 80,
            _ => {
                return Err(bad(
                    "the scheme must be https:// (or http:// with --insecure)",
                ));
            }
        };
        if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
            return Err(bad("a controller address has no path"));
        }
        let host = uri.host().ok_or_else(|| bad("no host in it"))?;
        Ok(Entry {
            given: given.into(),
            scheme: scheme.into(),
            host: host.trim_start_matches('[').trim_end_matches(']').into(),
            port: uri.port_u16().unwrap_or(default_port),
        })
    }

    /// The addresses `resolved` gives for this entry as targets, each once,
    /// in the resolver's order.
    pub fn targets(&self, resolved: Vec<SocketAddr>) -> Result<Vec<Target>, DialError> {
        let mut out: Vec<Target> = Vec::with_capacity(resolved.len());
        for address in resolved {
            if out.iter().any(|t| t.address == address) {
                continue;
            }
            out.push(Target {
                entry: self.given.clone(),
                address,
                // SocketAddr's Display brackets IPv6: https://[2001:db8::1]:9443
                uri: format!("{}://{address}", self.scheme),
            });
        }
        if out.is_empty() {
            return Err(DialError::NoAddress {
                entry: self.given.clone(),
                host: self.host.clone(),
            });
        }
        Ok(out)
    }

    /// Resolves the entry with `resolve` (host, port) and expands it.
    pub async fn resolve<R, F>(&self, resolve: R) -> Result<Vec<Target>, DialError>
    where
        R: FnOnce(String, u16) -> F,
        F: Future<Output = std::io::Result<Vec<SocketAddr>>>,
    {
        let resolved =
            resolve(self.host.clone(), self.port)
                .await
                .map_err(|e| DialError::Resolve {
                    entry: self.given.clone(),
                    host: self.host.clone(),
                    why: e.to_string(),
                })?;
        self.targets(resolved)
    }
}

/// The system resolver (what a pod's /etc/resolv.conf says), as
/// [`Entry::resolve`] takes it.
pub async fn lookup(host: String, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    Ok(tokio::net::lookup_host((host.as_str(), port))
        .await?
        .collect())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::io;

    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// A resolver that knows `names`; any other host fails as DNS does.
    fn resolver(
        names: &BTreeMap<&str, Vec<&str>>,
    ) -> impl Fn(String, u16) -> std::future::Ready<io::Result<Vec<SocketAddr>>> {
        let names: BTreeMap<String, Vec<String>> = names
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|a| a.to_string()).collect()))
            .collect();
        move |host, port| {
            std::future::ready(match names.get(&host) {
                Some(ips) => Ok(ips
                    .iter()
                    .map(|ip| SocketAddr::new(ip.parse().unwrap(), port))
                    .collect()),
                None => Err(io::Error::other("no such host")),
            })
        }
    }

    #[test]
    fn entries_parse_into_scheme_host_and_port() {
        let ok = |s: &str| Entry::parse(s).unwrap();
        let e = ok("https://ballast-controller-link.ballast-system.svc:9443");
        assert_eq!(
            (e.scheme.as_str(), e.host.as_str(), e.port),
            ("https", "ballast-controller-link.ballast-system.svc", 9443)
        );
        assert_eq!(ok("https://controller").port, 443);
        assert_eq!(ok("http://10.0.0.1").port, 80);
        let v6 = ok("https://[2001:db8::1]:9443");
        assert_eq!((v6.host.as_str(), v6.port), ("2001:db8::1", 9443));
        for (bad, why) in [
            ("controller:9443", "scheme"),
            ("ftp://controller", "https://"),
            ("https://controller:9443/x", "no path"),
        ] {
            let err = Entry::parse(bad).unwrap_err().to_string();
            assert!(err.contains(bad) && err.contains(why), "{bad}: {err}");
        }
    }

    #[tokio::test]
    async fn a_name_expands_to_every_address_it_resolves_to_in_order() {
        let names = BTreeMap::from([
            (
                "link.ballast-system.svc",
                vec!["10.0.0.7", "10.0.0.3", "10.0.0.7"],
            ),
            ("v6.example", vec!["2001:db8::1"]),
            ("gone.example", vec![]),
        ]);
        let resolve = resolver(&names);
        let entry = Entry::parse("https://link.ballast-system.svc:9443").unwrap();
        let targets = entry.resolve(&resolve).await.unwrap();
        let got: Vec<(&str, SocketAddr, &str)> = targets
            .iter()
            .map(|t| (t.entry.as_str(), t.address, t.uri.as_str()))
            .collect();
        let entry = "https://link.ballast-system.svc:9443";
        assert_eq!(
            got,
            vec![
                (entry, sa("10.0.0.7:9443"), "https://10.0.0.7:9443"),
                (entry, sa("10.0.0.3:9443"), "https://10.0.0.3:9443"),
            ],
            "each address once, in the resolver's order"
        );

        let v6 = Entry::parse("http://v6.example:9443").unwrap();
        let targets = v6.resolve(&resolve).await.unwrap();
        assert_eq!(targets[0].uri, "http://[2001:db8::1]:9443");

        let gone = Entry::parse("https://gone.example:9443").unwrap();
        assert_eq!(
            gone.resolve(&resolve).await,
            Err(DialError::NoAddress {
                entry: "https://gone.example:9443".into(),
                host: "gone.example".into()
            })
        );
        let unknown = Entry::parse("https://unknown.example:9443").unwrap();
        let err = unknown.resolve(&resolve).await.unwrap_err().to_string();
        assert!(
            err.contains("resolving unknown.example: no such host"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn the_system_resolver_passes_address_literals_through() {
        let entry = Entry::parse("http://127.0.0.1:9443").unwrap();
        let targets = entry.resolve(lookup).await.unwrap();
        assert_eq!(targets.len(), 1);
        assert_eq!(targets[0].uri, "http://127.0.0.1:9443");
    }
}

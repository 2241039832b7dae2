//! The `--endpoint` list: the corrald nodes the CLI may talk to, in the order it tries them.
//! Parsing checks only the shape of each address; whether a node answers is decided when
//! connecting, never here.

use std::fmt;

use thiserror::Error;

/// The port corrald listens on unless told otherwise; used when an address has none.
pub const DEFAULT_PORT: u16 = 7001;

/// Why an `--endpoint` value was refused. The caller names the flag.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum EndpointError {
    #[error("no address given")]
    Empty,
    #[error("empty address in '{0}'")]
    EmptyEntry(String),
    #[error("'{0}' is not host:port")]
    Malformed(String),
    #[error("'{0}': the port must be a number from 1 to 65535")]
    BadPort(String),
    #[error("'{0}': write IPv6 addresses as [addr]:port")]
    BareIpv6(String),
    #[error("'{0}': TLS is not supported; give host:port")]
    Tls(String),
}

/// One node's address as `host:port`, without a scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    authority: String,
}

impl Endpoint {
    /// Parses `host:port`, `host` (port 7001), `[v6addr]:port` or `http://host:port`.
    pub fn parse(text: &str) -> Result<Self, EndpointError> {
        let original = text.trim();
        let malformed = || EndpointError::Malformed(original.to_string());
        if original.starts_with("https://") {
            return Err(EndpointError::Tls(original.to_string()));
        }
        let address = original.strip_prefix("http://").unwrap_or(original);
        let address = address.strip_suffix('/').unwrap_or(address);
        if address.is_empty() || address.chars().any(|c| c.is_whitespace() || matches!(c, '/' | '@' | '?' | '#')) {
            return Err(malformed());
        }

        let (host, port) = if let Some(rest) = address.strip_prefix('[') {
            let (v6, after) = rest.split_once(']').ok_or_else(malformed)?;
            if v6.is_empty() || !v6.contains(':') {
                return Err(malformed());
            }
            match after {
                "" => (format!("[{v6}]"), None),
                _ => (format!("[{v6}]"), Some(after.strip_prefix(':').ok_or_else(malformed)?)),
            }
        } else {
            match address.matches(':').count() {
                0 => (address.to_string(), None),
                1 => {
                    let (host, port) = address.split_once(':').ok_or_else(malformed)?;
                    (host.to_string(), Some(port))
                }
                _ => return Err(EndpointError::BareIpv6(original.to_string())),
            }
        };
        if host.is_empty() {
            return Err(malformed());
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => match p.parse::<u16>() {
                Ok(port) if port > 0 => port,
                _ => return Err(EndpointError::BadPort(original.to_string())),
            },
        };
        Ok(Endpoint { authority: format!("{host}:{port}") })
    }

    /// The URI tonic connects to.
    pub fn uri(&self) -> String {
        format!("http://{}", self.authority)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.authority)
    }
}

/// A non-empty, ordered list of endpoints, as given by `--endpoint a,b,c`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints(Vec<Endpoint>);

impl Endpoints {
    pub fn parse(text: &str) -> Result<Self, EndpointError> {
        if text.trim().is_empty() {
            return Err(EndpointError::Empty);
        }
        text.split(',')
            .map(|entry| match entry.trim() {
                "" => Err(EndpointError::EmptyEntry(text.to_string())),
                entry => Endpoint::parse(entry),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Endpoints)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Endpoint> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first address given: the node that requests about "this node" go to.
    pub fn first(&self) -> &Endpoint {
        // Never empty: `parse` refuses an empty list.
        &self.0[0]
    }

    /// The endpoints starting at `first` and wrapping around, so that a retry begins with
    /// the node after the one that failed.
    pub fn rotated(&self, first: usize) -> impl Iterator<Item = (usize, &Endpoint)> {
        let n = self.0.len();
        (0..n).map(move |k| {
            let i = (first + k) % n;
            (i, &self.0[i])
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(text: &str) -> Vec<String> {
        Endpoints::parse(text).unwrap().iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn one_address() {
        assert_eq!(list("127.0.0.1:7001"), ["127.0.0.1:7001"]);
        assert_eq!(Endpoint::parse("127.0.0.1:7001").unwrap().uri(), "http://127.0.0.1:7001");
    }

    #[test]
    fn comma_separated_list_keeps_its_order() {
        assert_eq!(
            list("127.0.0.1:7003, 127.0.0.1:7001 ,node2:7002"),
            ["127.0.0.1:7003", "127.0.0.1:7001", "node2:7002"]
        );
    }

    #[test]
    fn missing_port_means_the_default_port() {
        assert_eq!(list("node1,node2"), ["node1:7001", "node2:7001"]);
        assert_eq!(list("[::1]"), ["[::1]:7001"]);
    }

    #[test]
    fn accepts_http_scheme_and_ipv6() {
        assert_eq!(list("http://10.0.0.1:7001/"), ["10.0.0.1:7001"]);
        assert_eq!(list("[::1]:7002"), ["[::1]:7002"]);
        assert_eq!(list("[fe80::1]:7002"), ["[fe80::1]:7002"]);
    }

    #[test]
    fn refuses_bad_lists() {
        assert_eq!(Endpoints::parse(""), Err(EndpointError::Empty));
        assert_eq!(Endpoints::parse("  "), Err(EndpointError::Empty));
        assert_eq!(Endpoints::parse("a:1,,b:2"), Err(EndpointError::EmptyEntry("a:1,,b:2".into())));
        assert_eq!(Endpoints::parse("a:1,"), Err(EndpointError::EmptyEntry("a:1,".into())));
    }

    #[test]
    fn refuses_bad_addresses() {
        use EndpointError::*;
        let cases = [
            ("host:", BadPort("host:".into())),
            ("host:0", BadPort("host:0".into())),
            ("host:70000", BadPort("host:70000".into())),
            ("host:http", BadPort("host:http".into())),
            (":7001", Malformed(":7001".into())),
            ("::1", BareIpv6("::1".into())),
            ("[::1", Malformed("[::1".into())),
            ("[::1]7001", Malformed("[::1]7001".into())),
            ("[]:7001", Malformed("[]:7001".into())),
            ("a b:1", Malformed("a b:1".into())),
            ("host:1/path", Malformed("host:1/path".into())),
            ("https://host:1", Tls("https://host:1".into())),
        ];
        for (text, want) in cases {
            assert_eq!(Endpoints::parse(text), Err(want), "{text}");
        }
    }

    #[test]
    fn rotation_starts_after_the_failed_node() {
        let e = Endpoints::parse("a:1,b:2,c:3").unwrap();
        let order: Vec<_> = e.rotated(1).map(|(i, ep)| (i, ep.to_string())).collect();
        assert_eq!(order, [(1, "b:2".into()), (2, "c:3".into()), (0, "a:1".to_string())]);
    }
}

//! Join tokens: 32 random bytes shown once to the operator; the cluster stores only the SHA-256
//! of `corral-<secret>`, so a copy of the state (or a snapshot on disk) does not let anyone join.
//! A token of a cluster with a CA also carries the CA certificate's fingerprint
//! (`corral-<ca sha256>-<secret>`, as kubeadm's CA-cert hash and k3s's `K10<hash>::` tokens do):
//! the joining node checks the node it dials against it before it sends the secret.

use corral_raft::ClusterError;
use rand::RngCore;
use sha2::{Digest, Sha256};

const PREFIX: &str = "corral-";
/// Characters of a token's id: a prefix of its hash, enough to tell tokens apart.
const ID_LEN: usize = 12;

/// A new token; `ca` is the cluster CA's fingerprint (`sha256:HEX`) when the cluster has one.
pub fn generate(ca: Option<&str>) -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    match ca.and_then(|f| f.strip_prefix("sha256:")) {
        Some(pin) => format!("{PREFIX}{pin}-{}", hex::encode(bytes)),
        None => format!("{PREFIX}{}", hex::encode(bytes)),
    }
}

/// A token as given: its secret part (`corral-HEX`, what is hashed) and the CA fingerprint it
/// pins (`sha256:HEX`), if it carries one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub secret: String,
    pub ca: Option<String>,
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit())
}

pub fn parse(token: &str) -> Result<Token, ClusterError> {
    let t = token.trim();
    let bad = || {
        ClusterError::invalid(
            "token",
            format!(
                "'{}' is not a join token (corral-HEX, or corral-CAHASH-HEX; `cluster token create` makes one)",
                corral_raft::error::quote(t)
            ),
        )
    };
    let rest = t.strip_prefix(PREFIX).ok_or_else(bad)?;
    match rest.split_once('-') {
        None if is_hex64(rest) => Ok(Token { secret: t.to_string(), ca: None }),
        Some((pin, secret)) if is_hex64(pin) && is_hex64(secret) => Ok(Token {
            secret: format!("{PREFIX}{}", secret.to_ascii_lowercase()),
            ca: Some(format!("sha256:{}", pin.to_ascii_lowercase())),
        }),
        _ => Err(bad()),
    }
}

/// The hash stored for a token: of its secret part.
pub fn hash(token: &str) -> String {
    let secret = parse(token).map(|t| t.secret).unwrap_or_else(|_| token.trim().to_string());
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A token's id, from its hash: safe to show and to name in `token revoke`.
pub fn id(hash: &str) -> String {
    hash.chars().take(ID_LEN).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hashes_stable() {
        let (a, b) = (generate(None), generate(None));
        assert_ne!(a, b);
        assert_eq!(a.len(), PREFIX.len() + 64);
        assert_eq!(hash(&a), hash(&format!("{a}\n")));
        assert_ne!(hash(&a), hash(&b));
        assert!(!hash(&a).contains(&a[PREFIX.len()..]));
    }

    #[test]
    fn a_pinned_token_carries_the_ca_and_hashes_as_its_secret() {
        let ca = format!("sha256:{}", "ab".repeat(32));
        let t = generate(Some(&ca));
        let parsed = parse(&t).unwrap();
        assert_eq!(parsed.ca.as_deref(), Some(ca.as_str()));
        assert_eq!(hash(&t), hash(&parsed.secret));
        assert!(!parsed.secret.contains(&"ab".repeat(32)));
        assert_eq!(parse(&generate(None)).unwrap().ca, None);
        for bad in ["", "corral-", "corral-xyz", "token", &format!("corral-{}-zz", "ab".repeat(32))] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(id(&hash(&t)).len(), ID_LEN);
    }
}

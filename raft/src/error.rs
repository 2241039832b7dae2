//! The one error type that the state machine and the leader hand back to clients.
//! It crosses the wire between nodes (serde) and becomes a gRPC status in exactly one place,
//! in the node's API layer. Messages are whole sentences a user can act on.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ClusterError {
    /// The object named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// An object with that name already exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// A field broke a rule; the message names the field and the rule.
    #[error("{field}: {rule}")]
    InvalidArgument { field: String, rule: String },
    /// The request is well formed but a rule of the cluster refuses it now.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A token or credential was wrong or expired.
    #[error("{0}")]
    PermissionDenied(String),
    /// No leader, or the leader cannot be reached; retrying later may work.
    #[error("{0}")]
    Unavailable(String),
    /// A peer could not be connected to, so the request never reached it: safe to retry.
    #[error("{0}")]
    Unreachable(String),
    /// The caller's credentials are unknown, expired or revoked (log in again).
    #[error("{0}")]
    Unauthenticated(String),
    /// A fault inside the cluster that the caller cannot fix.
    #[error("{0}")]
    Internal(String),
}

impl ClusterError {
    pub fn invalid(field: &str, rule: impl Into<String>) -> Self {
        ClusterError::InvalidArgument { field: field.to_string(), rule: rule.into() }
    }

    pub fn vm_not_found(vm: &str) -> Self {
        ClusterError::NotFound(format!("vm '{}' not found", quote(vm)))
    }
}

/// The most characters of a caller's input that an error quotes (two UUIDs and a slash fit).
pub const QUOTE_CHARS: usize = 80;

/// `input` as an error may quote it: at most [`QUOTE_CHARS`] characters (then "..."), control
/// characters escaped, so that a huge or binary value neither floods an answer nor a terminal.
pub fn quote(input: &str) -> String {
    let mut out = String::new();
    for (i, c) in input.chars().enumerate() {
        if i == QUOTE_CHARS {
            out.push_str("...");
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_short_and_printable() {
        assert_eq!(quote("web1"), "web1");
        assert_eq!(quote("a\nb\u{1b}[2J"), "a\\nb\\u{1b}[2J");
        let long = "x".repeat(1_000_000);
        assert_eq!(quote(&long), format!("{}...", "x".repeat(QUOTE_CHARS)));
    }
}

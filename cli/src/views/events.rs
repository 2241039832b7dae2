//! `events`: the cluster's event log, one line per state-machine event.

use corral_proto::v1 as proto;
use serde::{Deserialize, Serialize};

use super::{rfc3339, word};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventView {
    pub index: u64,
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    pub kind: String,
    pub message: String,
    /// Whose request made it (a user, or root@localhost); empty for the cluster's own acts.
    #[serde(default)]
    pub user: String,
}

impl From<proto::Event> for EventView {
    fn from(e: proto::Event) -> Self {
        let kind = word::<proto::EventKind>(e.kind_enum, e.kind);
        EventView { index: e.index, time: rfc3339(e.time_unix_ms), kind, message: e.message, user: e.user }
    }
}

//! `affinity-group` and `affinity-label`: rules naming VMs and hosts by name, never by id.

use corral_proto::v1 as proto;
use serde::{Deserialize, Serialize};

use super::{rfc3339, word};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AffinityGroupView {
    pub name: String,
    /// "positive" or "negative".
    pub polarity: String,
    pub enforcing: bool,
    /// VM names.
    pub vms: Vec<String>,
    /// RFC 3339, UTC.
    pub created: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AffinityLabelView {
    pub name: String,
    pub vms: Vec<String>,
    pub hosts: Vec<String>,
    /// RFC 3339, UTC.
    pub created: String,
}

impl From<proto::AffinityGroup> for AffinityGroupView {
    fn from(g: proto::AffinityGroup) -> Self {
        AffinityGroupView {
            name: g.name,
            polarity: word::<proto::Polarity>(g.polarity_enum, g.polarity),
            enforcing: g.enforcing,
            vms: g.vms,
            created: rfc3339(g.created_unix_ms),
        }
    }
}

impl From<proto::AffinityLabel> for AffinityLabelView {
    fn from(l: proto::AffinityLabel) -> Self {
        AffinityLabelView { name: l.name, vms: l.vms, hosts: l.hosts, created: rfc3339(l.created_unix_ms) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affinity_json_has_names_not_ids() {
        let g = proto::AffinityGroup {
            name: "db-spread".into(),
            polarity: String::new(),
            polarity_enum: proto::Polarity::Negative.into(),
            enforcing: true,
            vms: vec!["db1".into(), "db2".into()],
            created_unix_ms: 0,
        };
        let json = serde_json::to_value(AffinityGroupView::from(g)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"name": "db-spread", "polarity": "negative", "enforcing": true,
                "vms": ["db1", "db2"], "created": "1970-01-01T00:00:00.000Z"})
        );
        let l = proto::AffinityLabel {
            name: "fast".into(),
            vms: vec!["db1".into()],
            hosts: vec!["host3".into()],
            created_unix_ms: 0,
        };
        let json = serde_json::to_value(AffinityLabelView::from(l)).unwrap();
        assert_eq!(json["hosts"], serde_json::json!(["host3"]));
    }
}

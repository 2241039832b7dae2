//! OVF documents: what `vm import` defined, where `vm export` wrote, and the entries of a node's
//! OVF store (`ovf list`, `ovf show`).

use corral_proto::v1 as proto;
use serde::{Deserialize, Serialize};

use super::vm::VmView;

/// `vm import`: the VM as defined, and the parts of the document Corral does not act on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportView {
    pub vm: VmView,
    pub ignored: Vec<String>,
}

/// `vm export -f FILE -o json`: where the document went (the XML itself is in the file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportView {
    pub vm_id: String,
    pub name: String,
    pub node: String,
    pub file: String,
    pub bytes: u64,
}

/// One VM's OVF document, and the node whose store or state it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OvfDocumentView {
    pub vm_id: String,
    pub name: String,
    pub node: String,
    pub xml: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OvfListView {
    /// The node whose store was read.
    pub node: String,
    pub entries: Vec<OvfEntryView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OvfEntryView {
    pub vm_id: String,
    pub name: String,
    pub hosted_engine: bool,
    /// Size of the document.
    pub bytes: u64,
}

impl From<proto::ImportVmResponse> for ImportView {
    fn from(r: proto::ImportVmResponse) -> Self {
        ImportView { vm: r.vm.unwrap_or_default().into(), ignored: r.ignored }
    }
}

impl From<proto::OvfDocument> for OvfDocumentView {
    fn from(d: proto::OvfDocument) -> Self {
        OvfDocumentView { vm_id: d.vm_id, name: d.name, node: d.node, xml: d.xml }
    }
}

impl From<proto::OvfListResponse> for OvfListView {
    fn from(r: proto::OvfListResponse) -> Self {
        OvfListView {
            node: r.node,
            entries: r
                .entries
                .into_iter()
                .map(|e| OvfEntryView { vm_id: e.vm_id, name: e.name, hosted_engine: e.hosted_engine, bytes: e.bytes })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_json_is_the_vm_and_what_was_ignored() {
        let response = proto::ImportVmResponse {
            vm: Some(proto::Vm { name: "web2".into(), ..Default::default() }),
            ignored: vec!["USB controller".into(), "sound card".into()],
        };
        let json = serde_json::to_value(ImportView::from(response)).unwrap();
        let keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["ignored", "vm"]);
        assert_eq!(json["vm"]["name"], "web2");
        assert_eq!(json["ignored"], serde_json::json!(["USB controller", "sound card"]));
    }
}

//! `corral ovf list | dump`: the OVF store, read through the cluster (as new as its last
//! committed write) or, with --local, on the first --endpoint node alone — which needs no
//! quorum, and must never be answered by another node's store.

use crate::connect::Channel;
use anyhow::Result;
use corral_proto::v1 as proto;
use proto::ovf_service_client::OvfServiceClient;

use super::Context;
use crate::args::OvfCommand;
use crate::output::{self, Format, Table};
use crate::views::{OvfDocumentView, OvfListView};

pub async fn run(ctx: &Context, command: OvfCommand) -> Result<()> {
    match command {
        OvfCommand::List { local } => list(ctx, local).await,
        OvfCommand::Dump { vm, local } => dump(ctx, vm, local).await,
    }
}

async fn list(ctx: &Context, local: bool) -> Result<()> {
    let request = proto::OvfListRequest { local };
    let rpc = |channel: Channel| async move {
        OvfServiceClient::new(channel).max_decoding_message_size(corral_proto::MAX_LIST_MESSAGE).list(request).await
    };
    let response = if local { ctx.nodes.read_here(rpc).await? } else { ctx.nodes.read(rpc).await? };
    let view = OvfListView::from(response);
    match ctx.format {
        Format::Json => output::print_json(&view)?,
        Format::Table => output::print(&list_table(&view, local))?,
    }
    Ok(())
}

fn list_table(view: &OvfListView, local: bool) -> String {
    let mut table = Table::new(&["NAME", "ID", "ENGINE", "BYTES"]);
    for e in &view.entries {
        let engine = if e.hosted_engine { "yes" } else { "-" };
        table.row(vec![e.name.clone(), e.vm_id.clone(), engine.to_string(), e.bytes.to_string()]);
    }
    let node = if view.node.is_empty() { "the answering node" } else { view.node.as_str() };
    let how = if local { "its local copy" } else { "as of the cluster's last committed write" };
    format!("{}(OVF store of node {node}, {how})\n", table.render())
}

async fn dump(ctx: &Context, vm: String, local: bool) -> Result<()> {
    let request = proto::OvfDumpRequest { vm, local };
    let rpc = |channel: Channel| {
        let request = request.clone();
        async move { OvfServiceClient::new(channel).dump(request).await }
    };
    let document = if local { ctx.nodes.read_here(rpc).await? } else { ctx.nodes.read(rpc).await? };
    print_document(ctx.format, document.into())
}

/// The XML as stored (ending in a newline for the terminal), or the whole document in JSON.
pub fn print_document(format: Format, document: OvfDocumentView) -> Result<()> {
    match format {
        Format::Json => output::print_json(&document)?,
        Format::Table => output::print(&with_newline(document.xml))?,
    }
    Ok(())
}

fn with_newline(mut text: String) -> String {
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> OvfListView {
        OvfListView::from(proto::OvfListResponse {
            entries: vec![
                proto::OvfEntry { vm_id: "e1".into(), name: "HostedEngine".into(), hosted_engine: true, bytes: 5120 },
                proto::OvfEntry { vm_id: "7f9c".into(), name: "web1".into(), hosted_engine: false, bytes: 2048 },
            ],
            node: "host2".into(),
        })
    }

    #[test]
    fn list_names_the_node_whose_store_was_read() {
        assert_eq!(
            list_table(&store(), true),
            "NAME          ID    ENGINE  BYTES\n\
             HostedEngine  e1    yes     5120\n\
             web1          7f9c  -       2048\n\
             (OVF store of node host2, its local copy)\n"
        );
        assert!(list_table(&store(), false)
            .ends_with("(OVF store of node host2, as of the cluster's last committed write)\n"));
    }

    #[test]
    fn list_json_has_the_node_and_entries() {
        assert_eq!(
            serde_json::to_value(store()).unwrap(),
            serde_json::json!({"node": "host2", "entries": [
                {"vm_id": "e1", "name": "HostedEngine", "hosted_engine": true, "bytes": 5120},
                {"vm_id": "7f9c", "name": "web1", "hosted_engine": false, "bytes": 2048},
            ]})
        );
    }

    #[test]
    fn documents_print_as_stored() {
        assert_eq!(with_newline("<Envelope/>".into()), "<Envelope/>\n");
        assert_eq!(with_newline("<Envelope/>\n".into()), "<Envelope/>\n");
        let doc =
            proto::OvfDocument { vm_id: "7f9c".into(), name: "web1".into(), xml: "<x/>".into(), node: "host1".into() };
        assert_eq!(
            serde_json::to_value(OvfDocumentView::from(doc)).unwrap(),
            serde_json::json!({"vm_id": "7f9c", "name": "web1", "node": "host1", "xml": "<x/>"})
        );
    }
}

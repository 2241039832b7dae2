//! `corral engine status | maintenance | start --local`: the hosted engine VM, where it runs,
//! how each host scores for it, and maintenance. A request about "this node" (local
//! maintenance without --host, a local start) goes to the first --endpoint node and no other.

use crate::connect::Channel;
use anyhow::{bail, Result};
use corral_proto::v1 as proto;
use corral_proto::Word;
use proto::engine_service_client::EngineServiceClient;

use super::Context;
use crate::args::{EngineCommand, EngineMode};
use crate::output::{self, Fields, Format, Table};
use crate::views::{EngineStartView, EngineStatusView};

pub async fn run(ctx: &Context, command: EngineCommand) -> Result<()> {
    match command {
        EngineCommand::Status => {
            let request = proto::EngineStatusRequest { stale: ctx.stale };
            let status = ctx
                .nodes
                .read(|channel| async move { EngineServiceClient::new(channel).status(request).await })
                .await?;
            print_status(ctx.format, status.into())
        }
        EngineCommand::Maintenance { mode, host } => maintenance(ctx, mode, host).await,
        EngineCommand::Start { local, force } => start(ctx, local, force).await,
    }
}

/// Whether `host` makes sense with `mode`, and whether the request is about the node that
/// answers (and so must go to the first --endpoint node alone).
fn about_this_node(mode: EngineMode, host: Option<&str>) -> Result<bool> {
    match (mode, host) {
        (EngineMode::Global, Some(_)) => {
            bail!("--host: global maintenance covers every host; give --host only with --mode local or none")
        }
        // Unspecified is never parsed from a command line (clap skips it).
        (EngineMode::Global | EngineMode::Unspecified, None) | (_, Some(_)) => Ok(false),
        (EngineMode::Local | EngineMode::None, None) => Ok(true),
    }
}

async fn maintenance(ctx: &Context, mode: EngineMode, host: Option<String>) -> Result<()> {
    let here = about_this_node(mode, host.as_deref())?;
    let request = proto::EngineMaintenanceRequest {
        mode: mode.word().to_string(),
        mode_enum: mode.into(),
        host: host.unwrap_or_default(),
    };
    let rpc = |channel: Channel, id: &crate::connect::RequestId| {
        let request = id.tag(request.clone());
        async move { EngineServiceClient::new(channel).maintenance(request).await }
    };
    // Without --host the node that answers is the host meant: another one must not answer.
    let status = if here { ctx.nodes.write_here(rpc).await? } else { ctx.nodes.write(rpc).await? };
    print_status(ctx.format, status.into())
}

fn check_start(local: bool) -> Result<()> {
    if !local {
        bail!(
            "--local: engine start acts on one node, starting the engine VM from that node's own OVF \
             store copy; give --local (a cluster with quorum starts the engine itself)"
        );
    }
    Ok(())
}

async fn start(ctx: &Context, local: bool, force: bool) -> Result<()> {
    check_start(local)?;
    let request = proto::EngineStartLocalRequest { force };
    // Not tagged: with no quorum there is no cluster to remember a request id.
    let response = ctx
        .nodes
        .write_here(|channel, _| async move { EngineServiceClient::new(channel).start_local(request).await })
        .await?;
    let view = EngineStartView::from(response);
    match ctx.format {
        Format::Json => output::print_json(&view)?,
        Format::Table => output::print(&start_text(&view))?,
    }
    Ok(())
}

fn start_text(view: &EngineStartView) -> String {
    let mut text = format!("Engine VM {} started on host {}\n", view.vm, view.host);
    for note in &view.notes {
        text.push_str(&format!("note: {note}\n"));
    }
    text
}

fn print_status(format: Format, view: EngineStatusView) -> Result<()> {
    match format {
        Format::Json => output::print_json(&view)?,
        Format::Table => output::print(&status_text(&view))?,
    }
    Ok(())
}

fn yes_no(value: bool) -> String {
    if value { "yes" } else { "no" }.to_string()
}

fn status_text(view: &EngineStatusView) -> String {
    let vm = if view.vm_id.is_empty() { view.vm.clone() } else { format!("{} ({})", view.vm, view.vm_id) };
    let fields = Fields::new()
        .add("engine vm", vm)
        .add("host", view.host.clone().unwrap_or_else(|| "-".to_string()))
        .add("state", &view.state)
        .add("global maintenance", yes_no(view.global_maintenance));
    let mut hosts = Table::new(&["HOST", "STATE", "SCORE", "LOCAL MAINTENANCE", "ENGINE HERE", "PENALTIES"]);
    for h in &view.hosts {
        hosts.row(vec![
            h.host.clone(),
            h.state.clone(),
            h.score.map_or("-".to_string(), |s| s.to_string()),
            yes_no(h.local_maintenance),
            yes_no(h.engine_here),
            if h.penalties.is_empty() { "-".to_string() } else { h.penalties.join("; ") },
        ]);
    }
    format!("{}\n{}", fields.render(), hosts.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> EngineStatusView {
        EngineStatusView::from(proto::EngineStatus {
            vm: "HostedEngine".into(),
            vm_id: "e1".into(),
            host: Some("host1".into()),
            state: "up".into(),
            global_maintenance: false,
            hosts: vec![
                proto::EngineHost {
                    host: "host1".into(),
                    state: String::new(),
                    state_enum: proto::HostState::Up.into(),
                    score: Some(proto::EngineScore { score: 3400, penalties: vec![], measured_unix_ms: 5 }),
                    local_maintenance: false,
                    engine_here: true,
                },
                proto::EngineHost {
                    host: "host2".into(),
                    state: "up".into(),
                    score: Some(proto::EngineScore {
                        score: 1800,
                        penalties: vec!["gateway 10.0.0.1 unreachable: -1600".into()],
                        measured_unix_ms: 5,
                    }),
                    local_maintenance: true,
                    engine_here: false,
                    ..Default::default()
                },
                proto::EngineHost { host: "host3".into(), state: "down".into(), ..Default::default() },
            ],
            ..Default::default()
        })
    }

    #[test]
    fn status_json_has_the_documented_shape() {
        assert_eq!(
            serde_json::to_value(status()).unwrap(),
            serde_json::json!({
                "vm": "HostedEngine", "vm_id": "e1", "host": "host1", "state": "up", "global_maintenance": false,
                "hosts": [
                    {"host": "host1", "state": "up", "score": 3400, "penalties": [],
                     "local_maintenance": false, "engine_here": true},
                    {"host": "host2", "state": "up", "score": 1800,
                     "penalties": ["gateway 10.0.0.1 unreachable: -1600"],
                     "local_maintenance": true, "engine_here": false},
                    {"host": "host3", "state": "down", "score": null, "penalties": [],
                     "local_maintenance": false, "engine_here": false},
                ]
            })
        );
        let nowhere = EngineStatusView::from(proto::EngineStatus { host: Some(String::new()), ..Default::default() });
        assert_eq!(serde_json::to_value(nowhere).unwrap()["host"], serde_json::Value::Null);
    }

    #[test]
    fn status_table_has_the_engine_then_a_row_per_host() {
        assert_eq!(
            status_text(&status()),
            "engine vm:           HostedEngine (e1)\n\
             host:                host1\n\
             state:               up\n\
             global maintenance:  no\n\
             \n\
             HOST   STATE  SCORE  LOCAL MAINTENANCE  ENGINE HERE  PENALTIES\n\
             host1  up     3400   no                 yes          -\n\
             host2  up     1800   yes                no           gateway 10.0.0.1 unreachable: -1600\n\
             host3  down   -      no                 no           -\n"
        );
    }

    #[test]
    fn maintenance_without_host_is_about_the_answering_node() {
        assert!(!about_this_node(EngineMode::Global, None).unwrap());
        assert!(about_this_node(EngineMode::Local, None).unwrap());
        assert!(about_this_node(EngineMode::None, None).unwrap());
        assert!(!about_this_node(EngineMode::Local, Some("host2")).unwrap());
        let err = about_this_node(EngineMode::Global, Some("host2")).unwrap_err();
        assert!(err.to_string().starts_with("--host: global maintenance covers every host"), "{err}");
    }

    #[test]
    fn start_needs_local_and_prints_its_notes() {
        assert!(check_start(false).unwrap_err().to_string().contains("give --local"));
        check_start(true).unwrap();
        let view = EngineStartView {
            vm: "HostedEngine".into(),
            host: "host2".into(),
            notes: vec!["no other node answered; started without --force".into()],
        };
        assert_eq!(
            start_text(&view),
            "Engine VM HostedEngine started on host host2\nnote: no other node answered; started without --force\n"
        );
    }
}

//! `corral affinity-group ...` and `corral affinity-label ...`: the VM-to-VM and VM-to-host
//! rules the scheduler obeys. Every command that changes a rule prints it as the cluster
//! stored it, exactly as `show` would.

use anyhow::{bail, Result};
use corral_proto::v1 as proto;
use corral_proto::Word;
use proto::affinity_service_client::AffinityServiceClient;

use super::Context;
use crate::args::{AffinityGroupCommand, AffinityLabelCommand};
use crate::output::{self, Fields, Format, Table};
use crate::views::{AffinityGroupView, AffinityLabelView};

pub async fn run_group(ctx: &Context, command: AffinityGroupCommand) -> Result<()> {
    match command {
        AffinityGroupCommand::Create { name, polarity, enforcing, vms } => {
            let request = proto::CreateAffinityGroupRequest {
                name,
                polarity: polarity.word().to_string(),
                polarity_enum: polarity.into(),
                enforcing,
                vms,
            };
            let group = ctx
                .nodes
                .write(|channel, id| {
                    let request = id.tag(request.clone());
                    async move { AffinityServiceClient::new(channel).create_group(request).await }
                })
                .await?;
            print_group(ctx.format, group.into())
        }
        AffinityGroupCommand::List => {
            let request = proto::ListAffinityRequest { stale: ctx.stale };
            let response = ctx
                .nodes
                .read(|channel| async move { AffinityServiceClient::new(channel).list_groups(request).await })
                .await?;
            print_groups(ctx.format, response.groups.into_iter().map(Into::into).collect())
        }
        AffinityGroupCommand::Show { name } => {
            let request = proto::GetAffinityRequest { name, stale: ctx.stale };
            let group = ctx
                .nodes
                .read(|channel| {
                    let request = request.clone();
                    async move { AffinityServiceClient::new(channel).get_group(request).await }
                })
                .await?;
            print_group(ctx.format, group.into())
        }
        AffinityGroupCommand::Edit { name, add_vms, remove_vms, enforcing, polarity } => {
            if add_vms.is_empty() && remove_vms.is_empty() && enforcing.is_none() && polarity.is_none() {
                bail!("nothing to change: give at least one of --add-vm, --remove-vm, --enforcing, --polarity");
            }
            let request = proto::EditAffinityGroupRequest {
                name,
                add_vms,
                remove_vms,
                enforcing,
                polarity: polarity.map(|p| p.word().to_string()),
                polarity_enum: polarity.map(i32::from).unwrap_or_default(),
            };
            let group = ctx
                .nodes
                .write(|channel, id| {
                    let request = id.tag(request.clone());
                    async move { AffinityServiceClient::new(channel).edit_group(request).await }
                })
                .await?;
            print_group(ctx.format, group.into())
        }
        AffinityGroupCommand::Delete { name } => {
            let request = proto::DeleteAffinityRequest { name };
            let response = ctx
                .nodes
                .write(|channel, id| {
                    let request = id.tag(request.clone());
                    async move { AffinityServiceClient::new(channel).delete_group(request).await }
                })
                .await?;
            print_deleted(ctx.format, "affinity group", &response.name)
        }
    }
}

fn print_groups(format: Format, groups: Vec<AffinityGroupView>) -> Result<()> {
    match format {
        Format::Json => output::print_json(&groups)?,
        Format::Table => {
            let mut table = Table::new(&["NAME", "POLARITY", "ENFORCING", "VMS"]);
            for g in groups {
                let enforcing = if g.enforcing { "yes" } else { "no (soft)" };
                table.row(vec![g.name, g.polarity, enforcing.to_string(), list_or_dash(&g.vms)]);
            }
            output::print(&table.render())?;
        }
    }
    Ok(())
}

pub async fn run_label(ctx: &Context, command: AffinityLabelCommand) -> Result<()> {
    match command {
        AffinityLabelCommand::Create { name, vms, hosts } => {
            let request = proto::CreateAffinityLabelRequest { name, vms, hosts };
            let label = ctx
                .nodes
                .write(|channel, id| {
                    let request = id.tag(request.clone());
                    async move { AffinityServiceClient::new(channel).create_label(request).await }
                })
                .await?;
            print_label(ctx.format, label.into())
        }
        AffinityLabelCommand::List => {
            let request = proto::ListAffinityRequest { stale: ctx.stale };
            let response = ctx
                .nodes
                .read(|channel| async move { AffinityServiceClient::new(channel).list_labels(request).await })
                .await?;
            let labels: Vec<AffinityLabelView> = response.labels.into_iter().map(Into::into).collect();
            match ctx.format {
                Format::Json => output::print_json(&labels)?,
                Format::Table => {
                    let mut table = Table::new(&["NAME", "VMS", "HOSTS"]);
                    for l in labels {
                        table.row(vec![l.name, list_or_dash(&l.vms), list_or_dash(&l.hosts)]);
                    }
                    output::print(&table.render())?;
                }
            }
            Ok(())
        }
        AffinityLabelCommand::Show { name } => {
            let request = proto::GetAffinityRequest { name, stale: ctx.stale };
            let label = ctx
                .nodes
                .read(|channel| {
                    let request = request.clone();
                    async move { AffinityServiceClient::new(channel).get_label(request).await }
                })
                .await?;
            print_label(ctx.format, label.into())
        }
        AffinityLabelCommand::Edit { name, add_vms, remove_vms, add_hosts, remove_hosts } => {
            if add_vms.is_empty() && remove_vms.is_empty() && add_hosts.is_empty() && remove_hosts.is_empty() {
                bail!("nothing to change: give at least one of --add-vm, --remove-vm, --add-host, --remove-host");
            }
            let request = proto::EditAffinityLabelRequest { name, add_vms, remove_vms, add_hosts, remove_hosts };
            let label = ctx
                .nodes
                .write(|channel, id| {
                    let request = id.tag(request.clone());
                    async move { AffinityServiceClient::new(channel).edit_label(request).await }
                })
                .await?;
            print_label(ctx.format, label.into())
        }
        AffinityLabelCommand::Delete { name } => {
            let request = proto::DeleteAffinityRequest { name };
            let response = ctx
                .nodes
                .write(|channel, id| {
                    let request = id.tag(request.clone());
                    async move { AffinityServiceClient::new(channel).delete_label(request).await }
                })
                .await?;
            print_deleted(ctx.format, "affinity label", &response.name)
        }
    }
}

fn list_or_dash(names: &[String]) -> String {
    if names.is_empty() {
        "-".to_string()
    } else {
        names.join(",")
    }
}

fn print_deleted(format: Format, what: &str, name: &str) -> Result<()> {
    match format {
        Format::Json => output::print_json(&serde_json::json!({ "name": name, "deleted": true }))?,
        Format::Table => output::print(&format!("{what} {name} deleted\n"))?,
    }
    Ok(())
}

fn group_fields(g: AffinityGroupView) -> Fields {
    let rule = if g.enforcing { "enforcing (hard)" } else { "soft (a preference)" };
    Fields::new()
        .add("name", g.name)
        .add("polarity", g.polarity)
        .add("rule", rule)
        .add_list("vms", g.vms, "-")
        .add("created", g.created)
}

fn print_group(format: Format, g: AffinityGroupView) -> Result<()> {
    match format {
        Format::Json => output::print_json(&g)?,
        Format::Table => output::print(&group_fields(g).render())?,
    }
    Ok(())
}

fn print_label(format: Format, l: AffinityLabelView) -> Result<()> {
    match format {
        Format::Json => output::print_json(&l)?,
        Format::Table => {
            let fields = Fields::new()
                .add("name", l.name)
                .add_list("vms", l.vms, "-")
                .add_list("hosts", l.hosts, "-")
                .add("created", l.created);
            output::print(&fields.render())?
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_table_says_whether_the_rule_is_hard() {
        let g = AffinityGroupView {
            name: "db-spread".into(),
            polarity: "negative".into(),
            enforcing: true,
            vms: vec!["db1".into(), "db2".into()],
            created: "1970-01-01T00:00:00.000Z".into(),
        };
        let text = group_fields(g).render();
        assert!(text.contains("rule:      enforcing (hard)\n"), "{text}");
        assert!(text.contains("vms:       db1\n           db2\n"), "{text}");
    }
}

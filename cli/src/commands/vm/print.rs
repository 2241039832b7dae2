//! A VM as `vm show` prints it: JSON as the view is, or a table of the fields an operator
//! reads, omitting the ones that do not apply.

use anyhow::Result;

use super::migrate::pass;
use crate::output::{self, Fields, Format};
use crate::size::format_mib;
use crate::views::VmView;

pub(super) fn print_vm(format: Format, vm: VmView) -> Result<()> {
    match format {
        Format::Json => output::print_json(&vm)?,
        Format::Table => {
            let notes: Vec<String> = vm.notes.iter().map(|n| format!("note: {n}\n")).collect();
            output::print(&vm_fields(vm).render())?;
            for n in notes {
                output::print(&n)?;
            }
        }
    }
    Ok(())
}

pub(in crate::commands) fn vm_fields(vm: VmView) -> Fields {
    let ha = if vm.ha.enabled { format!("on, priority {}", vm.ha.priority) } else { "off".to_string() };
    let disks = vm
        .disks
        .iter()
        .map(|d| {
            let mut how = vec![d.interface.as_str()];
            how.extend(["unplugged"].into_iter().filter(|_| !d.plugged));
            how.extend(["bootable"].into_iter().filter(|_| d.bootable));
            how.extend(["optional"].into_iter().filter(|_| d.optional));
            format!("{} {} {} ({})", d.name, format_mib(d.size_mib), how.join(" "), d.path)
        })
        .collect();
    let nics = vm
        .nics
        .iter()
        .map(|n| format!("{} {} {}{}", n.name, n.network, n.mac, if n.plugged { "" } else { " unplugged" }))
        .collect();
    let mut fields = Fields::new().add("name", vm.name).add("id", vm.id).add("status", vm.status);
    if vm.hosted_engine {
        fields = fields.add("hosted engine", "yes");
    }
    if vm.delete_protected {
        fields = fields.add("delete protected", "yes");
    }
    if let Some(reason) = vm.stop_reason {
        fields = fields.add("stop reason", reason);
    }
    fields = fields.add("host", vm.host.unwrap_or_else(|| "-".to_string()));
    if let Some(to) = vm.migrating_to {
        fields = fields.add("migrating to", to);
    }
    if let Some(job) = vm.migration {
        let by = if job.automatic { "ordered by the cluster" } else { "ordered by an operator" };
        let state = match job.progress {
            _ if job.cancelling => "cancelling".to_string(),
            None => "queued".to_string(),
            Some(p) => format!(
                "{}% ({} of {} left{})",
                p.percent,
                format_mib(p.memory_remaining_mib),
                format_mib(p.memory_total_mib),
                pass(p.iteration)
            ),
        };
        fields = fields.add("migration job", format!("{state}, {by}"));
    }
    fields = fields.add("memory", format_mib(vm.memory_mib)).add("vcpus", vm.vcpus.to_string());
    if let Some(domain_type) = vm.domain_type {
        fields = fields.add("domain type", domain_type);
    }
    if let Some(os) = vm.os {
        fields = fields.add("os", os);
    }
    if let Some(t) = &vm.template {
        fields = fields.add("template", format!("{t} ({})", if vm.thin { "thin" } else { "clone" }));
    }
    if let Some(o) = &vm.offering {
        fields = fields.add("offering", o.clone());
    }
    if vm.stateless {
        fields = fields.add("stateless", "yes");
    }
    if !vm.boot.is_empty() {
        fields = fields.add("boot", vm.boot.join(","));
    }
    if vm.cloud_init {
        fields = fields.add("cloud-init", "yes");
    }
    if let Some(cdrom) = vm.cdrom {
        let cdrom = match &vm.iso {
            Some(iso) => format!("{iso} ({cdrom})"),
            None => cdrom,
        };
        fields = fields.add("cdrom", cdrom);
    }
    if let Some(next) = vm.next_run {
        let mut what = Vec::new();
        if let Some(m) = next.memory_mib {
            what.push(format!("memory {}", format_mib(m)));
        }
        if let Some(v) = next.vcpus {
            what.push(format!("{v} vcpus"));
        }
        if let Some(t) = next.domain_type {
            what.push(format!("domain type {t}"));
        }
        if let Some(os) = next.os {
            what.push(format!("os {os}"));
        }
        if let Some(m) = next.max_vcpus {
            what.push(format!("max {m} vcpus"));
        }
        if let Some(m) = next.max_memory_mib {
            what.push(format!("max memory {}", format_mib(m)));
        }
        if next.cdrom_ejected {
            what.push("cdrom ejected".to_string());
        } else if let Some(cd) = next.cdrom {
            what.push(format!("cdrom {cd}"));
        }
        fields = fields.add("next run", what.join(", "));
    }
    if vm.max_vcpus.is_some() || vm.max_memory_mib.is_some() {
        let limits = format!(
            "{} vcpus, {}",
            vm.max_vcpus.map_or_else(|| "-".to_string(), |v| v.to_string()),
            vm.max_memory_mib.map_or_else(|| "-".to_string(), format_mib)
        );
        fields = fields.add("hot-plug max", limits);
    }
    if let Some(e) = vm.hot_error {
        fields = fields.add("last change failed", e);
    }
    if let Some(r) = vm.ha_restart {
        let why = r.last_error.map(|e| format!(": {e}")).unwrap_or_default();
        let waiting = format!("failed {}, {} attempt(s), next {}{why}", r.failed, r.attempts, r.next_try);
        fields = fields.add("ha restart", waiting);
    }
    let pinned = if vm.pinned_hosts.is_empty() { "-".to_string() } else { vm.pinned_hosts.join(", ") };
    let tags = if vm.host_tags.is_empty() { "-".to_string() } else { vm.host_tags.join(", ") };
    fields
        .add_list("disks", disks, "-")
        .add_list("nics", nics, "-")
        .add("ha", ha)
        .add("on io error", vm.resume_behavior)
        .add("host tags", tags)
        .add("pinned to", pinned)
        .add("migration", vm.migration_policy)
        .add("description", vm.description)
        .add("comment", vm.comment)
        .add("created", vm.created)
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_proto::v1 as proto;

    #[test]
    fn vm_table_shows_disks_nics_and_lifecycle_fields() {
        let vm = proto::Vm {
            name: "web1".into(),
            id: "7f9c".into(),
            status: "down".into(),
            memory_mib: 256,
            vcpus: 1,
            disks: vec![
                proto::Disk {
                    name: "web1-disk0".into(),
                    size_mib: 1024,
                    path: "/img/a.qcow2".into(),
                    ..Default::default()
                },
                proto::Disk {
                    name: "web1-disk1".into(),
                    size_mib: 512,
                    path: "/img/b.qcow2".into(),
                    ..Default::default()
                },
            ],
            nics: vec![proto::Nic {
                network: "default".into(),
                mac: "52:54:00:aa:bb:cc".into(),
                name: "nic1".into(),
                plugged: true,
            }],
            stop_reason: Some("kernel update".into()),
            domain_type: "qemu".into(),
            ..Default::default()
        };
        let text = vm_fields(vm.into()).render();
        assert!(text.contains("stop reason:  kernel update\n"), "{text}");
        assert!(text.contains("domain type:  qemu\n"), "{text}");
        assert!(
            text.contains(
                "disks:        web1-disk0 1 GiB virtio (/img/a.qcow2)\n              web1-disk1 512 MiB virtio (/img/b.qcow2)\n"
            ),
            "{text}"
        );
        assert!(text.contains("nics:         nic1 default 52:54:00:aa:bb:cc\n"), "{text}");
        assert!(!text.contains("migrating to"), "{text}");
        assert!(text.contains("pinned to:    -\n"), "{text}");
        assert!(!text.contains("hosted engine") && !text.contains("delete protected"), "{text}");
    }

    #[test]
    fn vm_table_marks_the_engine_and_delete_protection() {
        let vm = crate::views::fixtures::engine_vm();
        let text = vm_fields(vm.into()).render();
        for line in [
            "hosted engine:     yes\n",
            "delete protected:  yes\n",
            "os:                other_linux\n",
            "cdrom:             tools.iso\n",
        ] {
            assert!(text.contains(line), "{line:?} in {text}");
        }
    }
}

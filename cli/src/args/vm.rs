//! `corral vm`: defining, changing, powering, migrating, exporting and importing VMs.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::parse::{
    one_of, parse_bool, parse_list, parse_memory, parse_override_bool, parse_override_millis, parse_override_number,
    parse_timeout, parse_vcpus, DiskInterface, DomainType, HaPriority, Migration, NameList, ResumeBehavior,
};

#[derive(Debug, Subcommand)]
pub enum VmCommand {
    /// Define a new VM
    Create(CreateVmArgs),
    /// List the VMs
    List,
    /// Show one VM
    Show {
        /// VM name or id
        vm: String,
        /// The configuration it gets at its next run (its pending changes applied)
        #[arg(long)]
        next_run: bool,
    },
    /// Change a VM's settings (a running VM: at once, by hot-plug, or at its next run)
    #[command(after_help = corral_proto::fields::help())]
    Edit(EditVmArgs),
    /// Add, attach, detach, plug and unplug a VM's disks
    #[command(subcommand)]
    Disk(VmDiskCommand),
    /// Add, remove, plug and unplug a VM's network interfaces
    #[command(subcommand)]
    Nic(VmNicCommand),
    /// Take, list, preview, commit, undo, restore and delete a VM's snapshots
    #[command(subcommand)]
    Snapshot(VmSnapshotCommand),
    /// Insert an ISO into the VM's CD-ROM drive, or eject it (at once while it runs)
    Cd {
        /// VM name or id
        vm: String,
        /// An ISO of the library (`corral iso list`), or a path inside the storage domain
        #[arg(long, value_name = "PATH", required_unless_present = "eject", conflicts_with = "eject")]
        iso: Option<String>,
        /// Empty the drive
        #[arg(long)]
        eject: bool,
        /// Only at its next run
        #[arg(long)]
        next_run: bool,
    },
    /// Delete a VM and its disks
    Delete {
        /// VM name or id
        vm: String,
        /// Keep the VM's disks as floating disks instead of deleting them
        #[arg(long)]
        keep_disks: bool,
    },
    /// Define a new VM as a copy of another, with copies of its disks
    Clone {
        /// Name or id of the VM to copy
        source: String,
        /// Name of the new VM
        name: String,
        /// Copy this snapshot of it (its configuration and disks as they were); the source may run
        #[arg(long, value_name = "SNAP")]
        from_snapshot: Option<String>,
        /// Show progress (what is copied, the time so far) on stderr while the disks are copied;
        /// the command returns once the clone is made either way
        #[arg(long)]
        wait: bool,
    },
    /// Power a VM up
    Start {
        /// VM name or id
        vm: String,
        /// Host to start it on (default: the leader picks one)
        #[arg(long)]
        host: Option<String>,
    },
    /// Ask a VM's guest to shut down (ACPI), and power it off if it has not after the timeout
    Shutdown {
        /// VM name or id
        vm: String,
        /// Why, for the event log and `vm show`
        #[arg(long)]
        reason: Option<String>,
        /// How long the guest gets before it is powered off, e.g. 30s, 2m (default: the server's, 120s)
        #[arg(long, value_parser = parse_timeout)]
        timeout: Option<Duration>,
    },
    /// Power a VM off at once
    Stop {
        /// VM name or id
        vm: String,
        /// Why, for the event log and `vm show`
        #[arg(long)]
        reason: Option<String>,
    },
    /// Reboot a running VM
    Reboot {
        /// VM name or id
        vm: String,
    },
    /// Pause a running VM, keeping its memory
    Suspend {
        /// VM name or id
        vm: String,
    },
    /// Resume a suspended VM
    Resume {
        /// VM name or id
        vm: String,
    },
    /// Open a running VM's serial console (Ctrl-] leaves), or with --vnc print a VNC address
    /// and a one-time password for its display
    Console {
        /// VM name or id
        vm: String,
        /// Print vnc://HOST:PORT and a password valid for a short while, instead
        #[arg(long)]
        vnc: bool,
    },
    /// Live-migrate a running VM to another host
    Migrate {
        /// VM name or id
        vm: String,
        /// Host to move it to (default: the leader picks one)
        #[arg(long)]
        to: Option<String>,
        /// Wait until the migration has ended, showing its progress, and fail if the VM
        /// stayed where it was
        #[arg(long)]
        wait: bool,
    },
    /// Cancel a queued or running migration; the VM keeps running where it is
    MigrateCancel {
        /// VM name or id
        vm: String,
    },
    /// Write a VM's OVF document (its disks stay in the storage domain)
    Export {
        /// VM name or id
        vm: String,
        /// Write it to this file instead of stdout
        #[arg(short, long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// Overwrite FILE if it exists
        #[arg(long, requires = "file")]
        force: bool,
    },
    /// Define a VM from an OVF document (Corral's or oVirt's)
    Import {
        /// The OVF document
        file: PathBuf,
        /// A new name instead of the document's
        #[arg(long)]
        name: Option<String>,
        /// A new id and new MACs, with copies of the disks (for a second VM from one document)
        #[arg(long)]
        clone: bool,
        /// Show progress on stderr while it is imported; the command returns once it is either way
        #[arg(long)]
        wait: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum VmSnapshotCommand {
    /// Take a snapshot of the VM's disks (and memory); prints its id as the last word
    Create {
        /// VM name or id
        vm: String,
        #[arg(long, default_value = "")]
        description: String,
        /// Save the running guest's memory too: restoring it resumes the guest (it pauses while saved)
        #[arg(long)]
        memory: bool,
        /// Only these disks (names or ids, comma-separated); default: all of them
        #[arg(long, value_name = "D1,D2", value_delimiter = ',', num_args = 0..)]
        disks: Option<Vec<String>>,
        /// Show progress from the start (it always waits until its host is done; without this
        /// flag, progress shows only once it takes over a second)
        #[arg(long)]
        wait: bool,
    },
    /// The VM's snapshots as a tree, and where the VM is now
    List {
        /// VM name or id
        vm: String,
    },
    /// One snapshot: its configuration, disks and size
    Show {
        /// VM name or id
        vm: String,
        /// Snapshot id (or a unique start of it)
        snapshot: String,
    },
    /// Run the VM (down) from a snapshot until commit or undo; then `vm start`
    Preview {
        /// VM name or id
        vm: String,
        /// Snapshot id (or a unique start of it)
        snapshot: String,
        /// Resume from its memory at the next start (with its configuration and every disk)
        #[arg(long)]
        memory: bool,
        /// Only these disks (names or ids, comma-separated)
        #[arg(long, value_name = "D1,D2", value_delimiter = ',', num_args = 0..)]
        disks: Option<Vec<String>>,
        /// Its configuration (with neither flag: its configuration and every disk)
        #[arg(long)]
        config: bool,
    },
    /// Keep the preview (snapshots taken after it are erased)
    Commit {
        /// VM name or id
        vm: String,
    },
    /// End the preview: the VM is as it was before it
    Undo {
        /// VM name or id
        vm: String,
    },
    /// Bring the VM (down) back to a snapshot; one with memory starts it from there. Other snapshots stay
    Restore {
        /// VM name or id
        vm: String,
        /// Snapshot id (or a unique start of it)
        snapshot: String,
    },
    /// Delete a snapshot (also while the VM runs)
    Delete {
        /// VM name or id
        vm: String,
        /// Snapshot id (or a unique start of it)
        snapshot: String,
        /// Wait until it is gone, showing progress
        #[arg(long)]
        wait: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum VmDiskCommand {
    /// Create a disk, attach it and plug it (hot-plugged into a running VM)
    Add {
        /// VM name or id
        vm: String,
        /// Size, e.g. 10G
        #[arg(long, value_name = "SIZE", value_parser = parse_memory, allow_hyphen_values = true)]
        size: u64,
        /// The disk's name (default: VM-diskN)
        #[arg(long)]
        name: Option<String>,
        /// Image format: qcow2 (default) or raw
        #[arg(long, value_name = "qcow2|raw")]
        format: Option<String>,
        /// The bus the guest sees it on (default: virtio)
        #[arg(long, value_parser = one_of::<DiskInterface>())]
        interface: Option<DiskInterface>,
        /// The VM boots from it
        #[arg(long)]
        bootable: bool,
        /// The VM starts without it when its image cannot be opened
        #[arg(long)]
        optional: bool,
    },
    /// Attach a floating disk (plugged, unless --unplugged)
    Attach {
        /// VM name or id
        vm: String,
        /// Disk name or id
        disk: String,
        #[arg(long, value_parser = one_of::<DiskInterface>())]
        interface: Option<DiskInterface>,
        #[arg(long)]
        bootable: bool,
        #[arg(long)]
        optional: bool,
        /// Attach it without plugging it
        #[arg(long)]
        unplugged: bool,
    },
    /// Detach a disk: it floats again (unplug it first while the VM runs)
    Detach {
        /// VM name or id
        vm: String,
        /// Disk name or id
        disk: String,
    },
    /// Plug an attached disk into the VM (hot-plug while it runs)
    Plug { vm: String, disk: String },
    /// Unplug a disk from the VM (hot-unplug while it runs); it stays attached
    Unplug { vm: String, disk: String },
}

#[derive(Debug, Subcommand)]
pub enum VmNicCommand {
    /// Add a NIC (nic1, nic2, ...), plugged (hot-plugged into a running VM)
    Add {
        /// VM name or id
        vm: String,
        /// The libvirt network it connects to
        #[arg(long, value_name = "NET")]
        network: String,
        /// Its MAC address (default: a random one in 52:54:00)
        #[arg(long, value_name = "M")]
        mac: Option<String>,
    },
    /// Remove a NIC (unplug it first while the VM runs)
    Remove {
        vm: String,
        /// The NIC's name: nic1, nic2, ...
        nic: String,
    },
    /// Plug a NIC into the VM (hot-plug while it runs)
    Plug { vm: String, nic: String },
    /// Unplug a NIC from the VM (hot-unplug while it runs); it stays configured
    Unplug { vm: String, nic: String },
}

#[derive(Debug, Args)]
pub struct CreateVmArgs {
    /// Name of the VM, unique in the cluster
    pub name: String,
    /// Memory, e.g. 512M, 4G, 1.5G (a plain number means MiB) [default: the template's, else 1G]
    #[arg(long, value_name = "SIZE", value_parser = parse_memory, allow_hyphen_values = true)]
    pub memory: Option<u64>,
    /// Number of virtual CPUs [default: the template's, else 1]
    #[arg(long, value_name = "N", value_parser = parse_vcpus, allow_hyphen_values = true)]
    pub vcpus: Option<u32>,
    /// What the VM is for
    #[arg(long, default_value = "")]
    pub description: String,
    /// A free-form note for operators
    #[arg(long, default_value = "")]
    pub comment: String,
    /// Restart the VM elsewhere when its host fails
    #[arg(long)]
    pub ha: bool,
    /// Order in which HA VMs are restarted (default: medium)
    #[arg(long, value_parser = one_of::<HaPriority>(), requires = "ha")]
    pub ha_priority: Option<HaPriority>,
    /// A new disk of this size, e.g. 10G (repeat for more disks, in the order the guest sees them)
    #[arg(long = "disk", value_name = "SIZE", value_parser = parse_memory, allow_hyphen_values = true)]
    pub disks: Vec<u64>,
    /// A network interface on this libvirt network (repeat for more)
    #[arg(long = "nic", value_name = "NETWORK")]
    pub nics: Vec<String>,
    /// Start the VM once it is defined
    #[arg(long)]
    pub start: bool,
    /// Host to start it on (default: the leader picks one)
    #[arg(long, requires = "start")]
    pub host: Option<String>,
    /// Hypervisor: kvm (hardware) or qemu (software emulation) (default: the host's)
    #[arg(long, value_parser = one_of::<DomainType>())]
    pub domain_type: Option<DomainType>,
    /// Boot this kernel directly (a path in the storage directory, or absolute)
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<String>,
    /// Initial ramdisk for --kernel
    #[arg(long, value_name = "PATH", requires = "kernel")]
    pub initrd: Option<String>,
    /// Kernel command line for --kernel, e.g. "console=ttyS0"
    #[arg(long, value_name = "TEXT", requires = "kernel", allow_hyphen_values = true)]
    pub cmdline: Option<String>,
    /// After a storage I/O error pause: resume when the storage answers, leave it paused, or
    /// kill it (an HA VM is then restarted) (default: auto_resume)
    #[arg(long, value_parser = one_of::<ResumeBehavior>())]
    pub resume_behavior: Option<ResumeBehavior>,
    /// Most vCPUs it may be given while it runs (default: the largest host's CPUs)
    #[arg(long, value_name = "N", value_parser = parse_vcpus, allow_hyphen_values = true)]
    pub max_vcpus: Option<u32>,
    /// Most memory it may be given while it runs (default: 4x --memory)
    #[arg(long, value_name = "SIZE", value_parser = parse_memory, allow_hyphen_values = true)]
    pub max_memory: Option<u64>,
    /// Make it from this template: its configuration, and its disks as overlays (--thin, the
    /// default) or copies (--clone) of the template's bases
    #[arg(long, value_name = "TEMPLATE")]
    pub template: Option<String>,
    /// Its disks are qcow2 overlays on the template's bases (fast; the template must stay)
    #[arg(long, requires = "template", conflicts_with = "clone")]
    pub thin: bool,
    /// Its disks are full copies of the template's bases
    #[arg(long, requires = "template")]
    pub clone: bool,
    /// Its size (vCPUs, memory) and HA from this service offering
    #[arg(long, value_name = "OFFERING", conflicts_with_all = ["memory", "vcpus"])]
    pub offering: Option<String>,
    /// An ISO of the library (`corral iso list`), or a path in the storage domain, in its CD-ROM drive
    #[arg(long, value_name = "NAME")]
    pub iso: Option<String>,
    /// Boot order, e.g. cdrom,disk (default with --iso: cdrom,disk; else disk)
    #[arg(long, value_name = "DEV[,DEV]")]
    pub boot: Option<String>,
    /// cloud-init user-data (a #cloud-config YAML file, or a script); a NoCloud seed is attached as a CD
    #[arg(long, value_name = "FILE")]
    pub cloud_init: Option<std::path::PathBuf>,
    /// A public SSH key file for cloud-init (repeat for more)
    #[arg(long = "ssh-key", value_name = "FILE", requires = "cloud_init")]
    pub ssh_keys: Vec<std::path::PathBuf>,
    /// The guest's host name for cloud-init (default: the VM's name)
    #[arg(long, value_name = "NAME", requires = "cloud_init")]
    pub hostname: Option<String>,
    /// cloud-init network-config (YAML file)
    #[arg(long, value_name = "FILE", requires = "cloud_init")]
    pub network_config: Option<std::path::PathBuf>,
    /// Discard every change to its disks at each stop (oVirt's stateless VM)
    #[arg(long)]
    pub stateless: bool,
    /// Guest OS as oVirt names it (default: the template's or the ISO's, else other_linux)
    #[arg(long, value_name = "OS")]
    pub os: Option<String>,
}

#[derive(Debug, Args)]
pub struct EditVmArgs {
    /// VM name or id
    pub vm: String,
    /// New name
    #[arg(long)]
    pub name: Option<String>,
    /// Memory, e.g. 512M, 4G, 1.5G (a plain number means MiB)
    #[arg(long, value_name = "SIZE", value_parser = parse_memory, allow_hyphen_values = true)]
    pub memory: Option<u64>,
    /// Number of virtual CPUs
    #[arg(long, value_name = "N", value_parser = parse_vcpus, allow_hyphen_values = true)]
    pub vcpus: Option<u32>,
    /// What the VM is for ("" clears it)
    #[arg(long)]
    pub description: Option<String>,
    /// A free-form note for operators ("" clears it)
    #[arg(long)]
    pub comment: Option<String>,
    /// Restart the VM elsewhere when its host fails
    #[arg(long, value_name = "true|false", value_parser = parse_bool)]
    pub ha: Option<bool>,
    /// Order in which HA VMs are restarted
    #[arg(long, value_parser = one_of::<HaPriority>())]
    pub ha_priority: Option<HaPriority>,
    /// Hypervisor: kvm (hardware) or qemu (software emulation)
    #[arg(long, value_parser = one_of::<DomainType>())]
    pub domain_type: Option<DomainType>,
    /// After a storage I/O error pause: resume when the storage answers, leave it paused, or
    /// kill it
    #[arg(long, value_parser = one_of::<ResumeBehavior>())]
    pub resume_behavior: Option<ResumeBehavior>,
    /// This VM's migrations throttle its vCPUs if needed ("cluster": follow the cluster's setting)
    #[arg(long, value_name = "true|false|cluster", value_parser = parse_override_bool)]
    pub auto_converge: Option<String>,
    /// This VM's migrations compress repeated pages ("cluster": follow the cluster's setting)
    #[arg(long, value_name = "true|false|cluster", value_parser = parse_override_bool)]
    pub compression: Option<String>,
    /// Longest pause at this VM's migration switch-over, e.g. 200ms ("cluster": the cluster's)
    #[arg(long, value_name = "DURATION|cluster", value_parser = parse_override_millis)]
    pub max_downtime: Option<String>,
    /// Bandwidth cap for this VM's migrations in MiB/s ("cluster": the cluster's)
    #[arg(long, value_name = "MIB_PER_S|cluster", value_parser = parse_override_number)]
    pub bandwidth: Option<String>,
    /// Tags a host must all have to run the VM, e.g. ssd,gpu ('' clears them)
    #[arg(long, value_name = "TAG[,...]", value_parser = parse_list)]
    pub host_tags: Option<NameList>,
    /// The only hosts the VM may run on ('' unpins it)
    #[arg(long, value_name = "HOST[,...]", value_parser = parse_list)]
    pub pin: Option<NameList>,
    /// Who may migrate the VM: allow (anyone), manual (operators only), none
    #[arg(long, value_parser = one_of::<Migration>())]
    pub migration: Option<Migration>,
    /// Refuse to delete the VM (or its disks) while true
    #[arg(long, value_name = "true|false", value_parser = parse_bool)]
    pub delete_protected: Option<bool>,
    /// Guest OS as oVirt names it, e.g. other_linux, rhel_9x64 (at the next run)
    #[arg(long, value_name = "NAME")]
    pub os: Option<String>,
    /// Most vCPUs it may be given while it runs (at the next run)
    #[arg(long, value_name = "N", value_parser = parse_vcpus, allow_hyphen_values = true)]
    pub max_vcpus: Option<u32>,
    /// Most memory it may be given while it runs (at the next run)
    #[arg(long, value_name = "SIZE", value_parser = parse_memory, allow_hyphen_values = true)]
    pub max_memory: Option<u64>,
    /// Hot-plug fields (memory, vCPUs) wait for its next run instead of changing it now
    #[arg(long)]
    pub next_run: bool,
    /// Take this offering's size and HA (live where the hot-plug rules allow)
    #[arg(long, value_name = "OFFERING", conflicts_with_all = ["memory", "vcpus"])]
    pub offering: Option<String>,
    /// Discard every change to its disks at each stop (from its next run while it runs)
    #[arg(long, value_name = "true|false", value_parser = parse_bool)]
    pub stateless: Option<bool>,
    /// Boot order, e.g. cdrom,disk ("" for the default)
    #[arg(long, value_name = "DEV[,DEV]")]
    pub boot: Option<String>,
}

impl EditVmArgs {
    pub fn changes_nothing(&self) -> bool {
        self.name.is_none()
            && self.memory.is_none()
            && self.vcpus.is_none()
            && self.description.is_none()
            && self.comment.is_none()
            && self.ha.is_none()
            && self.ha_priority.is_none()
            && self.domain_type.is_none()
            && self.resume_behavior.is_none()
            && !self.edits_migration()
            && self.host_tags.is_none()
            && self.pin.is_none()
            && self.migration.is_none()
            && self.delete_protected.is_none()
            && self.os.is_none()
            && self.max_vcpus.is_none()
            && self.max_memory.is_none()
            && self.offering.is_none()
            && self.stateless.is_none()
            && self.boot.is_none()
    }

    pub fn edits_migration(&self) -> bool {
        self.auto_converge.is_some()
            || self.compression.is_some()
            || self.max_downtime.is_some()
            || self.bandwidth.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::testing::{parse, refusal};
    use crate::args::Command;

    #[test]
    fn negative_sizes_reach_the_size_parser() {
        let err = parse(&["vm", "create", "w", "--memory", "-1G", "--vcpus", "1"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
    }

    fn create(args: &[&str]) -> Result<CreateVmArgs, clap::Error> {
        let all: Vec<&str> =
            ["vm", "create", "web1", "--memory", "256M", "--vcpus", "1"].iter().chain(args).copied().collect();
        match parse(&all)?.command {
            Command::Vm(VmCommand::Create(args)) => Ok(args),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn disks_repeat_and_use_the_size_parser() {
        assert_eq!(create(&["--disk", "1G", "--disk", "512M"]).unwrap().disks, vec![1024, 512]);
        assert!(create(&[]).unwrap().disks.is_empty());
        let err = create(&["--disk", "abc"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
        assert_eq!(refusal(&err), ("--disk".to_string(), "'abc' is not a size (use e.g. 512M, 4G)".to_string()));
        let err = create(&["--disk", "-1G"]).unwrap_err();
        assert_eq!(refusal(&err).0, "--disk");
    }

    #[test]
    fn create_takes_nics_start_host_and_boot_settings() {
        let args = create(&[
            "--nic",
            "default",
            "--nic",
            "lan",
            "--start",
            "--host",
            "host2",
            "--domain-type",
            "qemu",
            "--kernel",
            "vmlinuz",
            "--initrd",
            "initrd.img",
            "--cmdline",
            "console=ttyS0",
        ])
        .unwrap();
        assert_eq!(args.nics, vec!["default", "lan"]);
        assert!(args.start);
        assert_eq!(args.host.as_deref(), Some("host2"));
        assert_eq!(args.domain_type, Some(DomainType::Qemu));
        assert_eq!(args.kernel.as_deref(), Some("vmlinuz"));
        assert_eq!(args.initrd.as_deref(), Some("initrd.img"));
        assert_eq!(args.cmdline.as_deref(), Some("console=ttyS0"));

        let args = create(&["--start"]).unwrap();
        assert!(args.start && args.host.is_none() && args.domain_type.is_none());
    }

    #[test]
    fn create_refuses_host_without_start_and_boot_files_without_kernel() {
        for args in [&["--host", "host2"][..], &["--initrd", "i"], &["--cmdline", "console=ttyS0"]] {
            let err = create(args).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument, "{args:?}");
        }
        let err = create(&["--domain-type", "xen"]).unwrap_err();
        assert_eq!(refusal(&err), ("--domain-type".to_string(), "'xen' is not one of kvm, qemu".to_string()));
    }

    #[test]
    fn lifecycle_commands_parse() {
        match parse(&["vm", "shutdown", "web1", "--reason", "kernel update", "--timeout", "2m"]).unwrap().command {
            Command::Vm(VmCommand::Shutdown { vm, reason, timeout }) => {
                assert_eq!(vm, "web1");
                assert_eq!(reason.as_deref(), Some("kernel update"));
                assert_eq!(timeout, Some(Duration::from_secs(120)));
            }
            other => panic!("parsed as {other:?}"),
        }
        match parse(&["vm", "shutdown", "web1"]).unwrap().command {
            Command::Vm(VmCommand::Shutdown { timeout: None, reason: None, .. }) => {}
            other => panic!("parsed as {other:?}"),
        }
        let err = parse(&["vm", "shutdown", "web1", "--timeout", "soon"]).unwrap_err();
        assert_eq!(refusal(&err).0, "--timeout");
        match parse(&["vm", "start", "web1", "--host", "host2"]).unwrap().command {
            Command::Vm(VmCommand::Start { vm, host }) => {
                assert_eq!((vm.as_str(), host.as_deref()), ("web1", Some("host2")))
            }
            other => panic!("parsed as {other:?}"),
        }
        match parse(&["vm", "stop", "web1", "--reason", "hung"]).unwrap().command {
            Command::Vm(VmCommand::Stop { reason, .. }) => assert_eq!(reason.as_deref(), Some("hung")),
            other => panic!("parsed as {other:?}"),
        }
        for verb in ["reboot", "suspend", "resume"] {
            parse(&["vm", verb, "web1"]).unwrap();
        }
        match parse(&["vm", "clone", "web1", "web2"]).unwrap().command {
            Command::Vm(VmCommand::Clone { source, name, .. }) => {
                assert_eq!((source.as_str(), name.as_str()), ("web1", "web2"))
            }
            other => panic!("parsed as {other:?}"),
        }
        match parse(&["vm", "migrate", "web1", "--to", "host2", "--wait"]).unwrap().command {
            Command::Vm(VmCommand::Migrate { to, wait, .. }) => {
                assert_eq!((to.as_deref(), wait), (Some("host2"), true))
            }
            other => panic!("parsed as {other:?}"),
        }
        match parse(&["vm", "delete", "web1", "--keep-disks"]).unwrap().command {
            Command::Vm(VmCommand::Delete { keep_disks, .. }) => assert!(keep_disks),
            other => panic!("parsed as {other:?}"),
        }
        match parse(&["vm", "edit", "web1", "--domain-type", "kvm"]).unwrap().command {
            Command::Vm(VmCommand::Edit(args)) => {
                assert_eq!(args.domain_type, Some(DomainType::Kvm));
                assert!(!args.changes_nothing());
            }
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn scheduling_settings_of_vms_hosts_and_the_cluster_parse() {
        match parse(&["vm", "edit", "web1", "--host-tags", "ssd, gpu", "--pin", "host1,host2", "--migration", "manual"])
            .unwrap()
            .command
        {
            Command::Vm(VmCommand::Edit(args)) => {
                assert_eq!(args.host_tags, Some(NameList(vec!["ssd".into(), "gpu".into()])));
                assert_eq!(args.pin, Some(NameList(vec!["host1".into(), "host2".into()])));
                assert_eq!(args.migration, Some(Migration::Manual));
                assert!(!args.changes_nothing());
            }
            other => panic!("parsed as {other:?}"),
        }
        match parse(&["vm", "edit", "web1", "--host-tags", "", "--pin", ""]).unwrap().command {
            Command::Vm(VmCommand::Edit(args)) => {
                assert_eq!((args.host_tags, args.pin), (Some(NameList(vec![])), Some(NameList(vec![]))))
            }
            other => panic!("parsed as {other:?}"),
        }
        let err = parse(&["vm", "edit", "web1", "--migration", "sometimes"]).unwrap_err();
        assert_eq!(
            refusal(&err),
            ("--migration".to_string(), "'sometimes' is not one of allow, manual, none".to_string())
        );
    }

    #[test]
    fn console_parses() {
        match parse(&["vm", "console", "web1"]).unwrap().command {
            Command::Vm(VmCommand::Console { vm, vnc: false }) => assert_eq!(vm, "web1"),
            other => panic!("parsed as {other:?}"),
        }
        match parse(&["vm", "console", "web1", "--vnc"]).unwrap().command {
            Command::Vm(VmCommand::Console { vnc: true, .. }) => {}
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn export_and_import_parse() {
        match parse(&["vm", "export", "web1", "-f", "web1.ovf", "--force"]).unwrap().command {
            Command::Vm(VmCommand::Export { vm, file, force }) => {
                assert_eq!((vm.as_str(), file, force), ("web1", Some(PathBuf::from("web1.ovf")), true))
            }
            other => panic!("parsed as {other:?}"),
        }
        match parse(&["vm", "export", "web1"]).unwrap().command {
            Command::Vm(VmCommand::Export { file: None, force: false, .. }) => {}
            other => panic!("parsed as {other:?}"),
        }
        let err = parse(&["vm", "export", "web1", "--force"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        match parse(&["vm", "import", "web1.ovf", "--name", "web2", "--clone"]).unwrap().command {
            Command::Vm(VmCommand::Import { file, name, clone, .. }) => {
                assert_eq!((file, name.as_deref(), clone), (PathBuf::from("web1.ovf"), Some("web2"), true))
            }
            other => panic!("parsed as {other:?}"),
        }
        assert!(parse(&["vm", "import"]).is_err());
    }

    #[test]
    fn edit_takes_delete_protection_and_os() {
        match parse(&["vm", "edit", "web1", "--delete-protected", "true", "--os", "other_linux"]).unwrap().command {
            Command::Vm(VmCommand::Edit(args)) => {
                assert_eq!((args.delete_protected, args.os.as_deref()), (Some(true), Some("other_linux")));
                assert!(!args.changes_nothing());
            }
            other => panic!("parsed as {other:?}"),
        }
        match parse(&["vm", "edit", "web1", "--delete-protected", "no"]).unwrap().command {
            Command::Vm(VmCommand::Edit(args)) => assert_eq!(args.delete_protected, Some(false)),
            other => panic!("parsed as {other:?}"),
        }
        let err = parse(&["vm", "edit", "web1", "--delete-protected", "maybe"]).unwrap_err();
        assert_eq!(refusal(&err), ("--delete-protected".to_string(), "'maybe' is not true or false".to_string()));
    }
}

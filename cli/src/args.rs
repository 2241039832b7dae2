//! The command line grammar: global flags, subcommands, and the parsers for their values.
//! Value parsers return messages that name the rule; `main` prefixes the flag, so a bad value
//! reads `error: --memory: 'abc' is not a size (use e.g. 512M, 4G)`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand};

use crate::endpoints::{Endpoint, EndpointError, Endpoints};
use crate::output::Format;
use crate::size::{self, SizeError};

#[derive(Debug, Parser)]
#[command(name = "corral", version, about = "Command line of a Corral VM cluster")]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Nodes to talk to, tried in order until one can be reached (comma-separated host:port)
    #[arg(
        long,
        global = true,
        env = "CORRAL_ENDPOINT",
        default_value = "127.0.0.1:7001",
        value_name = "HOST:PORT[,...]",
        value_parser = parse_endpoints
    )]
    pub endpoint: Endpoints,

    /// Output format
    #[arg(short, long, global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,

    /// Read the node's local copy instead of a linearizable read through the leader
    #[arg(long, global = true)]
    pub stale: bool,
}

#[derive(Debug, Subcommand)]
// Parsed once per run: the size of the biggest subcommand's arguments costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Form, join and inspect the cluster
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Create, inspect, change and delete virtual machines
    #[command(subcommand)]
    Vm(VmCommand),
    /// Inspect the hosts of the cluster
    #[command(subcommand)]
    Host(HostCommand),
    /// Inspect the disks of the cluster's VMs
    #[command(subcommand)]
    Disk(DiskCommand),
    /// Keep VMs together or apart (VM-to-VM rules the scheduler obeys)
    #[command(subcommand)]
    AffinityGroup(AffinityGroupCommand),
    /// Keep VMs on chosen hosts (hard VM-to-host rules)
    #[command(subcommand)]
    AffinityLabel(AffinityLabelCommand),
    /// Show the cluster's event log
    Events(EventsArgs),
    /// Read the OVF store: the last committed OVF document of every VM, kept by every node
    #[command(subcommand)]
    Ovf(OvfCommand),
    /// The hosted engine: its VM, where it runs, each host's score, and maintenance
    #[command(subcommand)]
    Engine(EngineCommand),
}

#[derive(Debug, Subcommand)]
pub enum OvfCommand {
    /// List the documents in the store
    List {
        /// Read the store of the first --endpoint node only, as it is on that node (needs no
        /// quorum; never asks another node)
        #[arg(long)]
        local: bool,
    },
    /// Print one VM's document as stored
    Dump {
        /// VM name or id
        vm: String,
        /// Read the store of the first --endpoint node only, as it is on that node (needs no
        /// quorum; never asks another node)
        #[arg(long)]
        local: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum EngineCommand {
    /// Show the engine VM, where it runs, and each host's score and maintenance
    Status,
    /// Put the engine into maintenance: global (the cluster leaves it alone), local (one
    /// host will not run it) or none
    Maintenance {
        #[arg(long, value_name = "global|local|none", value_parser = parse_engine_mode)]
        mode: EngineMode,
        /// The host for local or none (default: the first --endpoint node)
        #[arg(long)]
        host: Option<String>,
    },
    /// Start the engine VM on the first --endpoint node from that node's OVF store, for a
    /// cluster that lost quorum
    Start {
        /// Required: the engine is started on this one node, from its own copy
        #[arg(long)]
        local: bool,
        /// Start it even if the node's checks say another node may run it
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineMode {
    Global,
    Local,
    None,
}

impl EngineMode {
    pub fn as_str(self) -> &'static str {
        match self {
            EngineMode::Global => "global",
            EngineMode::Local => "local",
            EngineMode::None => "none",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum AffinityGroupCommand {
    /// Create a group of VMs that run together (positive) or apart (negative)
    Create {
        /// Name of the group
        name: String,
        /// positive: on one host; negative: each on a different host
        #[arg(long, value_name = "positive|negative", value_parser = parse_polarity)]
        polarity: Polarity,
        /// A hard rule: a host that breaks it is never chosen (default: a preference)
        #[arg(long)]
        enforcing: bool,
        /// Member VMs (names or ids, comma-separated)
        #[arg(long, value_name = "VM[,...]", value_delimiter = ',')]
        vms: Vec<String>,
    },
    /// List the groups
    List,
    /// Show one group
    Show {
        /// Group name
        name: String,
    },
    /// Add or remove members, or change the rule
    Edit {
        /// Group name
        name: String,
        /// Add these VMs (comma-separated or repeated)
        #[arg(long = "add-vm", value_name = "VM", value_delimiter = ',')]
        add_vms: Vec<String>,
        /// Remove these VMs (comma-separated or repeated)
        #[arg(long = "remove-vm", value_name = "VM", value_delimiter = ',')]
        remove_vms: Vec<String>,
        /// Make the rule hard (true) or a preference (false)
        #[arg(long, value_name = "true|false", value_parser = parse_bool)]
        enforcing: Option<bool>,
        #[arg(long, value_name = "positive|negative", value_parser = parse_polarity)]
        polarity: Option<Polarity>,
    },
    /// Delete a group (its VMs stay as they are)
    Delete {
        /// Group name
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AffinityLabelCommand {
    /// Create a label: its VMs run only on its hosts
    Create {
        /// Name of the label
        name: String,
        /// VMs (names or ids, comma-separated)
        #[arg(long, value_name = "VM[,...]", value_delimiter = ',')]
        vms: Vec<String>,
        /// Hosts (comma-separated)
        #[arg(long, value_name = "HOST[,...]", value_delimiter = ',')]
        hosts: Vec<String>,
    },
    /// List the labels
    List,
    /// Show one label
    Show {
        /// Label name
        name: String,
    },
    /// Add or remove VMs and hosts
    Edit {
        /// Label name
        name: String,
        #[arg(long = "add-vm", value_name = "VM", value_delimiter = ',')]
        add_vms: Vec<String>,
        #[arg(long = "remove-vm", value_name = "VM", value_delimiter = ',')]
        remove_vms: Vec<String>,
        #[arg(long = "add-host", value_name = "HOST", value_delimiter = ',')]
        add_hosts: Vec<String>,
        #[arg(long = "remove-host", value_name = "HOST", value_delimiter = ',')]
        remove_hosts: Vec<String>,
    },
    /// Delete a label (its VMs may then run anywhere)
    Delete {
        /// Label name
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Turn an uninitialized node into a one-node cluster and print its first join token;
    /// with --engine-image or --engine-ovf, also make and start the hosted engine VM there
    Bootstrap(BootstrapArgs),
    /// Make an uninitialized node join the cluster that PEER belongs to
    Join {
        /// Address of any member of the cluster to join
        #[arg(long, value_name = "HOST:PORT", value_parser = parse_peer)]
        peer: Endpoint,
        /// Join token from `cluster bootstrap` or `cluster token create`
        #[arg(long)]
        token: String,
    },
    /// Show the members, the leader, the term and the scheduling settings
    Status,
    /// Change cluster-wide settings: scheduling and live migration
    Edit(EditClusterArgs),
    /// Raise the cluster level (oVirt's compatibility version) once every member runs a build
    /// that supports it; refused, naming the members still on an older version
    Upgrade,
    /// Save a consistent copy of the replicated state (VMs, hosts, rules, events) to FILE, for
    /// `corrald --restore FILE`
    Backup {
        /// Where to write the backup
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: PathBuf,
        /// Overwrite FILE if it exists
        #[arg(long)]
        force: bool,
    },
    /// Manage join tokens
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("engine").args(["engine_image", "engine_ovf"]).multiple(false)))]
pub struct BootstrapArgs {
    /// Name of the new cluster
    #[arg(long)]
    pub name: String,
    /// The engine VM's disk image, a path on the node's machine (copied into its storage)
    #[arg(long, value_name = "PATH")]
    pub engine_image: Option<PathBuf>,
    /// The engine VM from an OVF document (this file is read here and its text sent)
    #[arg(long, value_name = "FILE")]
    pub engine_ovf: Option<PathBuf>,
    /// Engine VM memory, e.g. 4G (default: 4G; with --engine-ovf, the document's)
    #[arg(long, value_name = "SIZE", value_parser = parse_memory, allow_hyphen_values = true, requires = "engine")]
    pub engine_memory: Option<u64>,
    /// Engine VM virtual CPUs (default: 2; with --engine-ovf, the document's)
    #[arg(long, value_name = "N", value_parser = parse_vcpus, allow_hyphen_values = true, requires = "engine")]
    pub engine_vcpus: Option<u32>,
    /// Name of the engine VM (default: hosted-engine)
    #[arg(long, value_name = "NAME", requires = "engine")]
    pub engine_name: Option<String>,
    /// Engine VM hypervisor: kvm (hardware) or qemu (software emulation)
    #[arg(long, value_name = "kvm|qemu", value_parser = parse_domain_type, requires = "engine")]
    pub engine_domain_type: Option<DomainType>,
    /// Boot the engine VM from this kernel directly (a path in the storage directory, or absolute)
    #[arg(long, value_name = "PATH", requires = "engine")]
    pub engine_kernel: Option<String>,
    /// Initial ramdisk for --engine-kernel
    #[arg(long, value_name = "PATH", requires = "engine_kernel")]
    pub engine_initrd: Option<String>,
    /// Kernel command line for --engine-kernel, e.g. "console=ttyS0"
    #[arg(long, value_name = "TEXT", requires = "engine_kernel", allow_hyphen_values = true)]
    pub engine_cmdline: Option<String>,
    /// A network interface of the engine VM on this libvirt network (repeat for more; with
    /// --engine-ovf, the document's NICs)
    #[arg(long = "engine-nic", value_name = "NETWORK", requires = "engine", conflicts_with = "engine_ovf")]
    pub engine_nics: Vec<String>,
}

#[derive(Debug, Args)]
pub struct EditClusterArgs {
    /// even: spread VMs over the hosts; pack: fill few hosts (power saving)
    #[arg(long, value_name = "even|pack", value_parser = parse_scheduling)]
    pub scheduling: Option<Scheduling>,
    /// vCPUs a host may hand out per physical CPU
    #[arg(long, value_name = "N", value_parser = parse_overcommit)]
    pub cpu_overcommit: Option<u32>,
    /// Throttle a guest's vCPUs when it dirties memory faster than migration sends it
    #[arg(long, value_name = "true|false", value_parser = parse_bool)]
    pub auto_converge: Option<bool>,
    /// Compress repeated memory pages while migrating (xbzrle)
    #[arg(long, value_name = "true|false", value_parser = parse_bool)]
    pub compression: Option<bool>,
    /// Longest pause at a migration's switch-over, e.g. 300ms, 1s (0: libvirt's default)
    #[arg(long, value_name = "DURATION", value_parser = parse_millis)]
    pub max_downtime: Option<u64>,
    /// Bandwidth cap per migration in MiB/s (0: unlimited)
    #[arg(long, value_name = "MIB_PER_S")]
    pub bandwidth: Option<u64>,
    /// Migrations one host runs at once; the others wait in its queue by VM priority
    #[arg(long, value_name = "N", value_parser = parse_count)]
    pub migrations_per_host: Option<u32>,
}

impl EditClusterArgs {
    pub fn changes_nothing(&self) -> bool {
        self.scheduling.is_none()
            && self.cpu_overcommit.is_none()
            && self.auto_converge.is_none()
            && self.compression.is_none()
            && self.max_downtime.is_none()
            && self.bandwidth.is_none()
            && self.migrations_per_host.is_none()
    }
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a join token and print it
    Create {
        /// How long the token stays valid, e.g. 30m, 1h, 7d (default: the server's, 24h)
        #[arg(long, value_parser = parse_ttl)]
        ttl: Option<Duration>,
    },
}

#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// List the hosts
    List,
    /// Change a host's tags
    Edit {
        /// Host name
        host: String,
        /// What the host offers, e.g. ssd,gpu (replaces its tags; '' clears them)
        #[arg(long, value_name = "TAG[,...]", value_parser = parse_list)]
        tags: Option<NameList>,
    },
    /// Take a host that runs no VM out of the cluster (a learner replaces a leaving voter)
    Remove {
        /// Host name
        host: String,
    },
    /// Show one host, and in maintenance what keeps it from entering it
    Show {
        /// Host name
        host: String,
    },
    /// Move every VM away (highest priority first) and keep the host out of placement
    Maintenance {
        /// Host name
        host: String,
        /// Why, for the event log and `host show`
        #[arg(long)]
        reason: Option<String>,
        /// Wait until the host is in maintenance
        #[arg(long)]
        wait: bool,
    },
    /// Take a host out of maintenance
    Activate {
        /// Host name
        host: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DiskCommand {
    /// List the disks, attached or floating
    List,
}

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
    },
    /// Change a VM's settings
    Edit(EditVmArgs),
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
    },
}

#[derive(Debug, Args)]
pub struct CreateVmArgs {
    /// Name of the VM, unique in the cluster
    pub name: String,
    /// Memory, e.g. 512M, 4G, 1.5G (a plain number means MiB)
    #[arg(long, value_name = "SIZE", value_parser = parse_memory, allow_hyphen_values = true, default_value = "1G")]
    pub memory: u64,
    /// Number of virtual CPUs
    #[arg(long, value_name = "N", value_parser = parse_vcpus, allow_hyphen_values = true, default_value = "1")]
    pub vcpus: u32,
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
    #[arg(long, value_name = "low|medium|high", value_parser = parse_priority, requires = "ha")]
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
    #[arg(long, value_name = "kvm|qemu", value_parser = parse_domain_type)]
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
    #[arg(long, value_parser = RESUME_BEHAVIORS)]
    pub resume_behavior: Option<String>,
}

const RESUME_BEHAVIORS: [&str; 3] = ["auto_resume", "leave_paused", "kill"];

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
    #[arg(long, value_name = "low|medium|high", value_parser = parse_priority)]
    pub ha_priority: Option<HaPriority>,
    /// Hypervisor: kvm (hardware) or qemu (software emulation)
    #[arg(long, value_name = "kvm|qemu", value_parser = parse_domain_type)]
    pub domain_type: Option<DomainType>,
    /// After a storage I/O error pause: auto_resume, leave_paused or kill
    #[arg(long, value_parser = RESUME_BEHAVIORS)]
    pub resume_behavior: Option<String>,
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
    #[arg(long, value_name = "allow|manual|none", value_parser = parse_migration)]
    pub migration: Option<Migration>,
    /// Refuse to delete the VM (or its disks) while true
    #[arg(long, value_name = "true|false", value_parser = parse_bool)]
    pub delete_protected: Option<bool>,
    /// Guest OS as oVirt names it, e.g. other_linux, rhel_9x64
    #[arg(long, value_name = "NAME")]
    pub os: Option<String>,
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
    }

    pub fn edits_migration(&self) -> bool {
        self.auto_converge.is_some()
            || self.compression.is_some()
            || self.max_downtime.is_some()
            || self.bandwidth.is_some()
    }
}

/// A comma-separated list given as one value, so that '' can mean "none".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameList(pub Vec<String>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Polarity {
    Positive,
    Negative,
}

impl Polarity {
    pub fn as_str(self) -> &'static str {
        match self {
            Polarity::Positive => "positive",
            Polarity::Negative => "negative",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheduling {
    Even,
    Pack,
}

impl Scheduling {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheduling::Even => "even",
            Scheduling::Pack => "pack",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migration {
    Allow,
    Manual,
    None,
}

impl Migration {
    pub fn as_str(self) -> &'static str {
        match self {
            Migration::Allow => "allow",
            Migration::Manual => "manual",
            Migration::None => "none",
        }
    }
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Keep printing new events as they are committed, until interrupted
    #[arg(long)]
    pub follow: bool,
    /// Show only the last N events (with --follow: before following)
    #[arg(long, value_name = "N", value_parser = parse_count)]
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HaPriority {
    Low,
    Medium,
    High,
}

impl HaPriority {
    pub fn as_str(self) -> &'static str {
        match self {
            HaPriority::Low => "low",
            HaPriority::Medium => "medium",
            HaPriority::High => "high",
        }
    }
}

/// The hypervisor a VM runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainType {
    Kvm,
    Qemu,
}

impl DomainType {
    pub fn as_str(self) -> &'static str {
        match self {
            DomainType::Kvm => "kvm",
            DomainType::Qemu => "qemu",
        }
    }
}

fn parse_endpoints(text: &str) -> Result<Endpoints, EndpointError> {
    Endpoints::parse(text)
}

fn parse_peer(text: &str) -> Result<Endpoint, EndpointError> {
    Endpoint::parse(text)
}

fn parse_memory(text: &str) -> Result<u64, SizeError> {
    size::parse_mib(text)
}

fn parse_vcpus(text: &str) -> Result<u32, String> {
    match text.trim().parse::<u32>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("'{text}' is not a whole number")),
    }
}

fn parse_count(text: &str) -> Result<u32, String> {
    text.trim().parse::<u32>().map_err(|_| format!("'{text}' is not a whole number"))
}

/// A duration in whole milliseconds, e.g. 300ms, 1s, or a plain number of milliseconds.
fn parse_millis(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if let Ok(ms) = t.parse::<u64>() {
        return Ok(ms);
    }
    let d = humantime::parse_duration(t).map_err(|_| format!("'{text}' is not a duration (use e.g. 300ms, 1s)"))?;
    Ok(d.as_millis() as u64)
}

fn parse_override_bool(text: &str) -> Result<String, String> {
    match text.trim() {
        "cluster" => Ok("cluster".into()),
        t => parse_bool(t).map(|b| b.to_string()),
    }
}

fn parse_override_millis(text: &str) -> Result<String, String> {
    match text.trim() {
        "cluster" => Ok("cluster".into()),
        t => match parse_millis(t)? {
            0 => Err("must be more than 0 ms (or 'cluster')".into()),
            ms => Ok(ms.to_string()),
        },
    }
}

fn parse_override_number(text: &str) -> Result<String, String> {
    match text.trim() {
        "cluster" => Ok("cluster".into()),
        t => match t.parse::<u64>() {
            Ok(0) | Err(_) => Err(format!("'{text}' is not a positive whole number (or 'cluster')")),
            Ok(n) => Ok(n.to_string()),
        },
    }
}

fn parse_bool(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" => Ok(true),
        "false" | "no" | "off" => Ok(false),
        _ => Err(format!("'{text}' is not true or false")),
    }
}

fn parse_priority(text: &str) -> Result<HaPriority, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "low" => Ok(HaPriority::Low),
        "medium" => Ok(HaPriority::Medium),
        "high" => Ok(HaPriority::High),
        _ => Err(format!("'{text}' is not one of low, medium, high")),
    }
}

fn parse_domain_type(text: &str) -> Result<DomainType, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "kvm" => Ok(DomainType::Kvm),
        "qemu" => Ok(DomainType::Qemu),
        _ => Err(format!("'{text}' is not one of kvm, qemu")),
    }
}

fn parse_engine_mode(text: &str) -> Result<EngineMode, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "global" => Ok(EngineMode::Global),
        "local" => Ok(EngineMode::Local),
        "none" => Ok(EngineMode::None),
        _ => Err(format!("'{text}' is not one of global, local, none")),
    }
}

fn parse_list(text: &str) -> Result<NameList, String> {
    Ok(NameList(text.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_string).collect()))
}

fn parse_polarity(text: &str) -> Result<Polarity, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "positive" => Ok(Polarity::Positive),
        "negative" => Ok(Polarity::Negative),
        _ => Err(format!("'{text}' is not one of positive, negative")),
    }
}

fn parse_scheduling(text: &str) -> Result<Scheduling, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "even" => Ok(Scheduling::Even),
        "pack" => Ok(Scheduling::Pack),
        _ => Err(format!("'{text}' is not one of even, pack")),
    }
}

fn parse_migration(text: &str) -> Result<Migration, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "allow" => Ok(Migration::Allow),
        "manual" => Ok(Migration::Manual),
        "none" => Ok(Migration::None),
        _ => Err(format!("'{text}' is not one of allow, manual, none")),
    }
}

fn parse_overcommit(text: &str) -> Result<u32, String> {
    match text.trim().parse::<u32>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("'{text}' is not a whole number")),
    }
}

/// A shutdown timeout: whole seconds, at least one, as the API takes it.
fn parse_timeout(text: &str) -> Result<Duration, String> {
    let timeout =
        humantime::parse_duration(text.trim()).map_err(|_| format!("'{text}' is not a duration (use e.g. 30s, 2m)"))?;
    if timeout < Duration::from_secs(1) {
        return Err("must be at least 1s".to_string());
    }
    if timeout.subsec_nanos() != 0 {
        return Err(format!("'{text}' is not a whole number of seconds"));
    }
    Ok(timeout)
}

fn parse_ttl(text: &str) -> Result<Duration, String> {
    let ttl = humantime::parse_duration(text.trim())
        .map_err(|_| format!("'{text}' is not a duration (use e.g. 30m, 1h, 7d)"))?;
    if ttl < Duration::from_secs(1) {
        return Err("must be at least 1s".to_string());
    }
    Ok(ttl)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn grammar_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_before_or_after_the_subcommand() {
        let before = Cli::try_parse_from(["corral", "-o", "json", "--stale", "vm", "list"]).unwrap();
        let after = Cli::try_parse_from(["corral", "vm", "list", "--stale", "-o", "json"]).unwrap();
        for cli in [before, after] {
            assert_eq!(cli.global.output, Format::Json);
            assert!(cli.global.stale);
        }
    }

    #[test]
    fn negative_sizes_reach_the_size_parser() {
        let err = Cli::try_parse_from(["corral", "vm", "create", "w", "--memory", "-1G", "--vcpus", "1"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
    }

    #[test]
    fn value_parsers_name_the_rule() {
        assert_eq!(parse_vcpus("0").unwrap_err(), "must be at least 1");
        assert_eq!(parse_vcpus("x").unwrap_err(), "'x' is not a whole number");
        assert_eq!(parse_ttl("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_ttl("soon").is_err());
        assert_eq!(parse_bool("False"), Ok(false));
        assert_eq!(parse_priority("HIGH"), Ok(HaPriority::High));
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("corral").chain(args.iter().copied()))
    }

    fn create(args: &[&str]) -> Result<CreateVmArgs, clap::Error> {
        let all: Vec<&str> =
            ["vm", "create", "web1", "--memory", "256M", "--vcpus", "1"].iter().chain(args).copied().collect();
        match parse(&all)?.command {
            Command::Vm(VmCommand::Create(args)) => Ok(args),
            other => panic!("parsed as {other:?}"),
        }
    }

    /// The flag `main` names in `error: --flag: <rule>`, and the rule.
    fn refusal(error: &clap::Error) -> (String, String) {
        use clap::error::{ContextKind, ContextValue};
        use std::error::Error as _;
        let flag = match error.get(ContextKind::InvalidArg) {
            Some(ContextValue::String(arg)) => arg.split_whitespace().next().unwrap_or_default().to_string(),
            other => panic!("no invalid arg in {other:?}"),
        };
        (flag, error.source().map(|e| e.to_string()).unwrap_or_default())
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
            Command::Vm(VmCommand::Clone { source, name }) => {
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
        assert!(matches!(parse(&["disk", "list"]).unwrap().command, Command::Disk(DiskCommand::List)));
        assert!(matches!(parse(&["host", "list"]).unwrap().command, Command::Host(HostCommand::List)));
    }

    #[test]
    fn affinity_commands_parse() {
        match parse(&[
            "affinity-group",
            "create",
            "db-spread",
            "--polarity",
            "negative",
            "--enforcing",
            "--vms",
            "a,b,c",
        ])
        .unwrap()
        .command
        {
            Command::AffinityGroup(AffinityGroupCommand::Create { name, polarity, enforcing, vms }) => {
                assert_eq!((name.as_str(), polarity, enforcing), ("db-spread", Polarity::Negative, true));
                assert_eq!(vms, ["a", "b", "c"]);
            }
            other => panic!("parsed as {other:?}"),
        }
        let err = parse(&["affinity-group", "create", "g", "--polarity", "sideways"]).unwrap_err();
        assert_eq!(
            refusal(&err),
            ("--polarity".to_string(), "'sideways' is not one of positive, negative".to_string())
        );
        match parse(&["affinity-group", "edit", "g", "--add-vm", "x", "--add-vm", "y,z", "--remove-vm", "w"])
            .unwrap()
            .command
        {
            Command::AffinityGroup(AffinityGroupCommand::Edit { add_vms, remove_vms, enforcing, polarity, .. }) => {
                assert_eq!((add_vms, remove_vms), (vec!["x".into(), "y".into(), "z".into()], vec!["w".to_string()]));
                assert_eq!((enforcing, polarity), (None, None));
            }
            other => panic!("parsed as {other:?}"),
        }
        for verb in [&["list"][..], &["show", "g"], &["delete", "g"]] {
            parse(&[&["affinity-group"][..], verb].concat()).unwrap();
            parse(&[&["affinity-label"][..], verb].concat()).unwrap();
        }
        match parse(&["affinity-label", "create", "fast", "--vms", "db1", "--hosts", "host1,host2"]).unwrap().command {
            Command::AffinityLabel(AffinityLabelCommand::Create { vms, hosts, .. }) => {
                assert_eq!((vms, hosts), (vec!["db1".to_string()], vec!["host1".to_string(), "host2".to_string()]))
            }
            other => panic!("parsed as {other:?}"),
        }
        match parse(&["affinity-label", "edit", "fast", "--add-host", "host3", "--remove-vm", "db1"]).unwrap().command {
            Command::AffinityLabel(AffinityLabelCommand::Edit { add_hosts, remove_vms, .. }) => {
                assert_eq!((add_hosts, remove_vms), (vec!["host3".to_string()], vec!["db1".to_string()]))
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
        match parse(&["host", "edit", "host1", "--tags", "ssd"]).unwrap().command {
            Command::Host(HostCommand::Edit { host, tags }) => {
                assert_eq!((host.as_str(), tags), ("host1", Some(NameList(vec!["ssd".into()]))))
            }
            other => panic!("parsed as {other:?}"),
        }
        match parse(&["cluster", "edit", "--scheduling", "pack", "--cpu-overcommit", "8"]).unwrap().command {
            Command::Cluster(ClusterCommand::Edit(a)) => {
                assert_eq!((a.scheduling, a.cpu_overcommit), (Some(Scheduling::Pack), Some(8)))
            }
            other => panic!("parsed as {other:?}"),
        }
        let err = parse(&["cluster", "edit", "--cpu-overcommit", "0"]).unwrap_err();
        assert_eq!(refusal(&err), ("--cpu-overcommit".to_string(), "must be at least 1".to_string()));
    }

    fn bootstrap(args: &[&str]) -> Result<BootstrapArgs, clap::Error> {
        let all: Vec<&str> = ["cluster", "bootstrap", "--name", "lab"].iter().chain(args).copied().collect();
        match parse(&all)?.command {
            Command::Cluster(ClusterCommand::Bootstrap(args)) => Ok(args),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn bootstrap_takes_an_engine_image_or_document_not_both() {
        let plain = bootstrap(&[]).unwrap();
        assert_eq!(plain.name, "lab");
        assert!(plain.engine_image.is_none() && plain.engine_ovf.is_none() && plain.engine_memory.is_none());
        let args = bootstrap(&[
            "--engine-image",
            "engine.qcow2",
            "--engine-memory",
            "2G",
            "--engine-vcpus",
            "4",
            "--engine-name",
            "engine",
            "--engine-domain-type",
            "qemu",
            "--engine-kernel",
            "vmlinuz",
            "--engine-initrd",
            "initrd.img",
            "--engine-cmdline",
            "console=ttyS0",
        ])
        .unwrap();
        assert_eq!(args.engine_image.as_deref(), Some(std::path::Path::new("engine.qcow2")));
        assert_eq!((args.engine_memory, args.engine_vcpus), (Some(2048), Some(4)));
        assert_eq!(args.engine_name.as_deref(), Some("engine"));
        assert_eq!(args.engine_domain_type, Some(DomainType::Qemu));
        assert_eq!(args.engine_cmdline.as_deref(), Some("console=ttyS0"));
        assert!(bootstrap(&["--engine-ovf", "engine.ovf"]).unwrap().engine_ovf.is_some());

        let err = bootstrap(&["--engine-image", "a.qcow2", "--engine-ovf", "b.ovf"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
        for alone in [&["--engine-memory", "2G"][..], &["--engine-vcpus", "2"], &["--engine-name", "e"]] {
            let err = bootstrap(alone).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument, "{alone:?}");
        }
        let err = bootstrap(&["--engine-image", "a.qcow2", "--engine-initrd", "i"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        let nics = bootstrap(&["--engine-image", "a.qcow2", "--engine-nic", "mgmt", "--engine-nic", "storage"]);
        assert_eq!(nics.unwrap().engine_nics, ["mgmt", "storage"]);
        let err = bootstrap(&["--engine-ovf", "e.ovf", "--engine-nic", "mgmt"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict, "an OVF brings its own NICs");
        let err = bootstrap(&["--engine-nic", "mgmt"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        let err = bootstrap(&["--engine-image", "a.qcow2", "--engine-memory", "lots"]).unwrap_err();
        assert_eq!(
            refusal(&err),
            ("--engine-memory".to_string(), "'lots' is not a size (use e.g. 512M, 4G)".to_string())
        );
        let err = bootstrap(&["--engine-image", "a.qcow2", "--engine-vcpus", "0"]).unwrap_err();
        assert_eq!(refusal(&err), ("--engine-vcpus".to_string(), "must be at least 1".to_string()));
    }

    #[test]
    fn ovf_commands_parse() {
        assert!(matches!(parse(&["ovf", "list"]).unwrap().command, Command::Ovf(OvfCommand::List { local: false })));
        assert!(matches!(
            parse(&["ovf", "list", "--local"]).unwrap().command,
            Command::Ovf(OvfCommand::List { local: true })
        ));
        match parse(&["ovf", "dump", "web1", "--local"]).unwrap().command {
            Command::Ovf(OvfCommand::Dump { vm, local }) => assert_eq!((vm.as_str(), local), ("web1", true)),
            other => panic!("parsed as {other:?}"),
        }
        assert!(parse(&["ovf", "dump"]).is_err());
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
            Command::Vm(VmCommand::Import { file, name, clone }) => {
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

    #[test]
    fn engine_commands_parse() {
        assert!(matches!(parse(&["engine", "status"]).unwrap().command, Command::Engine(EngineCommand::Status)));
        match parse(&["engine", "maintenance", "--mode", "local", "--host", "host2"]).unwrap().command {
            Command::Engine(EngineCommand::Maintenance { mode, host }) => {
                assert_eq!((mode, host.as_deref()), (EngineMode::Local, Some("host2")))
            }
            other => panic!("parsed as {other:?}"),
        }
        let err = parse(&["engine", "maintenance"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        let err = parse(&["engine", "maintenance", "--mode", "partial"]).unwrap_err();
        assert_eq!(refusal(&err), ("--mode".to_string(), "'partial' is not one of global, local, none".to_string()));
        match parse(&["engine", "start", "--local", "--force"]).unwrap().command {
            Command::Engine(EngineCommand::Start { local, force }) => assert!(local && force),
            other => panic!("parsed as {other:?}"),
        }
        // Parsed so that the command itself can say why --local is needed.
        assert!(matches!(
            parse(&["engine", "start"]).unwrap().command,
            Command::Engine(EngineCommand::Start { local: false, force: false })
        ));
    }

    #[test]
    fn timeouts_are_whole_seconds() {
        assert_eq!(parse_timeout("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_timeout("120s"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_timeout("0s").unwrap_err(), "must be at least 1s");
        assert_eq!(parse_timeout("1500ms").unwrap_err(), "'1500ms' is not a whole number of seconds");
        assert!(parse_timeout("soon").is_err());
    }
}

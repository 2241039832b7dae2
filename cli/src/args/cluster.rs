//! `corral cluster`: forming, joining, inspecting, tuning, upgrading and backing up the cluster,
//! and its join tokens.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args, Subcommand};

use super::parse::{
    one_of, parse_bool, parse_count, parse_memory, parse_millis, parse_overcommit, parse_peer, parse_ttl, parse_vcpus,
    DomainType, Scheduling,
};
use crate::endpoints::Endpoint;

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Turn an uninitialized node into a one-node cluster and print its first join token;
    /// with --engine-image or --engine-ovf, also make and start the hosted engine VM there
    Bootstrap(BootstrapArgs),
    /// Make an uninitialized node join the cluster that PEER belongs to (over its local socket)
    #[command(group(ArgGroup::new("join_token").args(["token", "token_file"]).required(true)))]
    Join {
        /// Address of any member of the cluster to join
        #[arg(long, value_name = "HOST:PORT", value_parser = parse_peer)]
        peer: Endpoint,
        /// Join token from `cluster bootstrap` or `cluster token create` (visible in `ps`:
        /// prefer --token-file)
        #[arg(long)]
        token: Option<String>,
        /// Read the join token from FILE, or from standard input with -
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
    },
    /// Write an admin's credentials (client certificate, its key and the cluster CA, PEM, mode
    /// 0600) for `--credentials`; the key is made here and never sent
    Credentials {
        /// Where to write them
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: PathBuf,
        /// The user the certificate names (admin: a superuser)
        #[arg(long, default_value = "admin")]
        user: String,
        /// Overwrite FILE if it exists
        #[arg(long)]
        force: bool,
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
    /// Write the cluster CA's certificate (PEM) to FILE, for users' machines (`login --ca-file`)
    Ca {
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: PathBuf,
        /// Overwrite FILE if it exists
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("engine").args(["engine_image", "engine_ovf"]).multiple(false)))]
pub struct BootstrapArgs {
    /// Name of the new cluster
    #[arg(long)]
    pub name: String,
    /// Start at an older cluster level: 1 (no CA, plaintext between nodes and clients); the
    /// default is the newest, 2 (TLS). `cluster upgrade` raises it later
    #[arg(long, value_name = "N")]
    pub level: Option<u32>,
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
    #[arg(long, value_parser = one_of::<DomainType>(), requires = "engine")]
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
    #[arg(long, value_parser = one_of::<Scheduling>())]
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
    /// Snapshots kept per VM (0: no cap); taking one more removes the oldest
    #[arg(long, value_name = "N")]
    pub max_snapshots: Option<u32>,
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
            && self.max_snapshots.is_none()
    }
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a join token and print its id and the token (last line)
    Create {
        /// How long the token stays valid, e.g. 30m, 1h, 7d (default: the server's, 24h)
        #[arg(long, value_parser = parse_ttl)]
        ttl: Option<Duration>,
    },
    /// List the join tokens that are valid: ids, expiry and use (never the tokens)
    List,
    /// Revoke a join token by its id
    Revoke {
        /// The token's id, from `cluster token list`
        id: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::testing::{parse, refusal};
    use crate::args::Command;

    #[test]
    fn edit_takes_scheduling_settings() {
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
}

//! corrald's settings: command-line flags over a TOML file (`--config`) over defaults.
//! Every setting has one name, used both as a flag (`--snapshot-every`) and as a TOML key
//! (`snapshot_every`).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use clap::Parser;
use corral_raft::model::DomainType;
use serde::Deserialize;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7001";

#[derive(Debug, Parser, Default)]
#[command(name = "corrald", version, about = "The Corral daemon: one per KVM host")]
pub struct Args {
    /// TOML file with any of the settings below (flags win over the file).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// This host's name in the cluster (default: the machine's hostname).
    #[arg(long)]
    pub name: Option<String>,
    /// Address of the gRPC listener, for the CLI and for other nodes; port 0 lets the kernel
    /// pick a free port (see --listen-file) [default: 127.0.0.1:7001].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Address other nodes dial to reach this one [default: the listen address, with the port
    /// the kernel picked for port 0].
    #[arg(long)]
    pub advertise: Option<String>,
    /// Once the listener is bound, and before it serves, write its address (HOST:PORT and a
    /// newline) to this file, replacing it atomically: how a script or test that started
    /// corrald with --listen HOST:0 learns the port [default: none].
    #[arg(long, value_name = "FILE")]
    pub listen_file: Option<PathBuf>,
    /// Where the Raft log, snapshots and node identity are kept [default: /var/lib/corral].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The local socket (mode 0600) on which this host's root bootstraps, joins and runs any
    /// command as a superuser, with no credentials [default: <data-dir>/corrald.sock].
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// How long the certificates the cluster signs are valid, in days: nodes renew theirs when a
    /// third of that is left [default: 365].
    #[arg(long, value_name = "DAYS")]
    pub cert_days: Option<u32>,
    /// The hypervisor this host drives [default: qemu:///system].
    #[arg(long)]
    pub libvirt_uri: Option<String>,
    /// Voters the cluster keeps when this node bootstraps it: 3 or 5 [default: 3].
    #[arg(long)]
    pub voters: Option<u8>,
    /// Take a state-machine snapshot every N log entries and purge the log behind it [default: 1000].
    #[arg(long)]
    pub snapshot_every: Option<u64>,
    /// Log entries kept behind a snapshot for followers that lag a little [default: 200].
    #[arg(long)]
    pub keep_logs: Option<u64>,
    /// Raft heartbeat interval in milliseconds [default: 100].
    #[arg(long)]
    pub heartbeat_ms: Option<u64>,
    /// The storage domain: a directory every host sees (NFS in production) where disk images
    /// live [default: <data-dir>/images, fine for a one-host cluster only].
    #[arg(long)]
    pub storage_dir: Option<PathBuf>,
    /// How this host runs VMs: kvm, or qemu (software emulation) [default: kvm when /dev/kvm
    /// works, else qemu; test on libvirt's test driver].
    #[arg(long)]
    pub domain_type: Option<String>,
    /// Lower bound of the Raft election timeout in milliseconds [default: 300].
    #[arg(long)]
    pub election_timeout_ms: Option<u64>,
    /// How often this host renews its lease, in milliseconds (not Raft's heartbeat_ms)
    /// [default: 500].
    #[arg(long)]
    pub host_heartbeat_ms: Option<u64>,
    /// How long a host's lease lasts after its last renewal, in milliseconds; a host that cannot
    /// renew destroys its VMs before it ends [default: 3000].
    #[arg(long)]
    pub lease_ms: Option<u64>,
    /// How long past a lease's end the leader waits before it declares the host dead, for clock
    /// rates and delays, in milliseconds [default: 1000].
    #[arg(long)]
    pub lease_margin_ms: Option<u64>,
    /// Command the leader runs to fence a dead host (IPMI, Redfish), through `sh -c`
    /// [default: none].
    #[arg(long)]
    pub fence_command: Option<String>,
    /// After this many milliseconds down, a voter is replaced by a healthy learner
    /// [default: 30000].
    #[arg(long)]
    pub voter_down_ms: Option<u64>,
    /// When more than this percentage of the hosts are silent at once, the leader declares none
    /// of them down and runs no fence agent (a broken switch is likelier than that many dead
    /// hosts); an event says so. 100 turns the check off [default: 50].
    #[arg(long)]
    pub skip_fencing_percent: Option<u64>,
    /// The watchdog's timeout in milliseconds, as its driver is set (corrald cannot set it):
    /// corrald feeds it only while a freeze from then on would power the host off before the
    /// leader may declare it down [default: 2000].
    #[arg(long)]
    pub watchdog_timeout_ms: Option<u64>,
    /// Watchdog to arm and feed: /dev/watchdog, or the sandbox host's FIFO. Its timeout (set in
    /// the driver, e.g. `modprobe softdog soft_margin=2`) must be shorter than lease_ms
    /// [default: none].
    #[arg(long)]
    pub watchdog: Option<PathBuf>,
    /// Hosted engine: an address this host pings to prove its network (ovirt-hosted-engine-ha's
    /// gateway check), or ADDRESS:PORT to connect to over TCP instead; its engine score loses
    /// 1600 while it does not answer [default: none].
    #[arg(long)]
    pub engine_gateway: Option<String>,
    /// Hosted engine: how often this host measures its engine score, in milliseconds
    /// [default: 2000].
    #[arg(long)]
    pub engine_score_ms: Option<u64>,
    /// Sync the store's file after every flush (fdatasync) [default: true]. `false` only to
    /// measure what the sync costs: a power loss then loses acknowledged writes.
    #[arg(long)]
    pub fsync: Option<bool>,
    /// The address VMs on this host show their VNC display on (`vm console --vnc`), e.g. the
    /// host's management address; without it VMs here have no VNC display [default: none].
    #[arg(long)]
    pub vnc_listen: Option<IpAddr>,
    /// The web console's built files, served at `/` [default: /usr/share/corral/web, else the
    /// source tree's web/dist when corrald runs from a build of it].
    #[arg(long, value_name = "DIR")]
    pub web_root: Option<PathBuf>,
    /// Wipe this node's local state (kept aside as db.damaged-TIME) and catch up from the
    /// cluster as the same member; refused unless the cluster still lists it.
    #[arg(long, conflicts_with_all = ["restore", "force_new_cluster"])]
    pub rejoin: bool,
    /// With --rejoin: a member to ask (default: the members this node last knew).
    #[arg(long, requires = "rejoin")]
    pub peer: Option<String>,
    /// With --rejoin, when this node's key or certificate is missing or damaged too: a join
    /// token (`cluster token create`) that gets it a new certificate; read from a file, or
    /// standard input with -, so that it does not show in `ps`.
    #[arg(long, value_name = "FILE", requires = "rejoin")]
    pub token_file: Option<PathBuf>,
    /// Make a new one-node cluster from a backup (`corral cluster backup`): same cluster, same
    /// VMs and rules; this node takes the place of the backup's host named --name, and the
    /// other hosts join it again. The data dir must be empty.
    #[arg(long, value_name = "FILE", conflicts_with = "force_new_cluster")]
    pub restore: Option<PathBuf>,
    /// Make this node, a lone survivor whose cluster lost its majority for good, a one-node
    /// cluster with everything it holds. Refused while another member answers.
    #[arg(long)]
    pub force_new_cluster: bool,
}

/// The longest path a unix socket can have (sun_path is 108 bytes with its NUL).
pub const MAX_SOCKET_PATH: usize = 107;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    name: Option<String>,
    listen: Option<SocketAddr>,
    advertise: Option<String>,
    listen_file: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    socket: Option<PathBuf>,
    cert_days: Option<u32>,
    libvirt_uri: Option<String>,
    voters: Option<u8>,
    snapshot_every: Option<u64>,
    keep_logs: Option<u64>,
    heartbeat_ms: Option<u64>,
    election_timeout_ms: Option<u64>,
    storage_dir: Option<PathBuf>,
    domain_type: Option<String>,
    host_heartbeat_ms: Option<u64>,
    lease_ms: Option<u64>,
    lease_margin_ms: Option<u64>,
    fence_command: Option<String>,
    voter_down_ms: Option<u64>,
    skip_fencing_percent: Option<u64>,
    watchdog_timeout_ms: Option<u64>,
    watchdog: Option<PathBuf>,
    engine_gateway: Option<String>,
    engine_score_ms: Option<u64>,
    fsync: Option<bool>,
    vnc_listen: Option<IpAddr>,
    web_root: Option<PathBuf>,
}

/// The settings in force, after merging.
#[derive(Debug, Clone)]
pub struct Config {
    pub name: String,
    pub listen: SocketAddr,
    pub advertise: String,
    /// Where the bound listener's address is written, if anywhere.
    pub listen_file: Option<PathBuf>,
    pub data_dir: PathBuf,
    /// The local socket for this host's root.
    pub socket: PathBuf,
    /// The lifetime of certificates this node signs (days).
    pub cert_days: u32,
    pub libvirt_uri: String,
    pub voters: u8,
    pub snapshot_every: u64,
    pub keep_logs: u64,
    pub heartbeat_ms: u64,
    pub election_timeout_ms: u64,
    pub storage_dir: PathBuf,
    pub domain_type: DomainType,
    /// How often this host renews its lease (ms). Raft's own is `heartbeat_ms`.
    pub host_heartbeat_ms: u64,
    /// A lease's length after its last renewal (ms).
    pub lease_ms: u64,
    /// Extra wait past a lease's end before the host is declared dead (ms).
    pub lease_margin_ms: u64,
    /// Shell command the leader runs to fence a host, if any.
    pub fence_command: Option<String>,
    /// Address pinged for the engine score's gateway check.
    pub engine_gateway: Option<String>,
    /// How often the engine score is measured (ms).
    pub engine_score_ms: u64,
    /// How long a voter may be down before a learner replaces it (ms).
    pub voter_down_ms: u64,
    /// Above this share of silent hosts (percent), none is declared down or fenced.
    pub skip_fencing_percent: u64,
    pub watchdog_timeout_ms: u64,
    /// The watchdog device or FIFO, if any; its timeout must be shorter than `lease_ms`.
    pub watchdog: Option<PathBuf>,
    /// fdatasync the store after each flush.
    pub fsync: bool,
    /// Where VMs started here listen for VNC; None: they have no VNC display.
    pub vnc_listen: Option<IpAddr>,
    /// The web console's files (None: none found; `/` says how to build them).
    pub web_root: Option<PathBuf>,
}

/// Where the web console's files are looked for when no --web-root is given: the package's
/// place, then the source tree this binary was built from (`make web` builds web/dist).
fn default_web_root() -> Option<PathBuf> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/dist");
    [PathBuf::from("/usr/share/corral/web"), source].into_iter().find(|d| d.join("index.html").is_file())
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("{setting}: {rule}")]
    Invalid { setting: &'static str, rule: String },
    #[error("cannot write the listen address to {path}")]
    ListenFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Config {
    pub fn load(args: Args) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let ha = ha_settings(&args, &file)?;
        let listen = args
            .listen
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("default listen address parses"));
        let recorded_before_listening = args.rejoin || args.restore.is_some() || args.force_new_cluster;
        let advertise = advertise_address(args.advertise.or(file.advertise), listen, recorded_before_listening)?;
        let name = match args.name.or(file.name) {
            Some(n) => n,
            None => hostname(),
        };
        corral_raft::validate::name("name", &name)
            .map_err(|e| ConfigError::Invalid { setting: "name", rule: e.to_string() })?;
        let voters = args.voters.or(file.voters).unwrap_or(3);
        if voters != 3 && voters != 5 {
            return Err(ConfigError::Invalid { setting: "voters", rule: format!("must be 3 or 5 (got {voters})") });
        }
        let snapshot_every = args.snapshot_every.or(file.snapshot_every).unwrap_or(1000);
        if snapshot_every == 0 {
            return Err(ConfigError::Invalid { setting: "snapshot_every", rule: "must be at least 1".into() });
        }
        let heartbeat_ms = args.heartbeat_ms.or(file.heartbeat_ms).unwrap_or(100);
        let election_timeout_ms = args.election_timeout_ms.or(file.election_timeout_ms).unwrap_or(300);
        if heartbeat_ms == 0 || election_timeout_ms <= heartbeat_ms * 2 {
            return Err(ConfigError::Invalid {
                setting: "election_timeout_ms",
                rule: format!("must be more than twice heartbeat_ms ({heartbeat_ms})"),
            });
        }
        let data_dir = args.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from("/var/lib/corral"));
        let socket = args.socket.or(file.socket).unwrap_or_else(|| data_dir.join("corrald.sock"));
        // sun_path holds 108 bytes, the last a NUL.
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(ConfigError::Invalid {
                setting: "socket",
                rule: format!(
                    "{} is {} bytes long; a unix socket path has at most {MAX_SOCKET_PATH} (give a shorter --socket, or \
                     a shallower --data-dir)",
                    socket.display(),
                    socket.as_os_str().len()
                ),
            });
        }
        let cert_days = args.cert_days.or(file.cert_days).unwrap_or(365);
        if !(1..=3650).contains(&cert_days) {
            return Err(ConfigError::Invalid {
                setting: "cert_days",
                rule: format!("must be 1 to 3650 (got {cert_days})"),
            });
        }
        let libvirt_uri = args.libvirt_uri.or(file.libvirt_uri).unwrap_or_else(|| "qemu:///system".into());
        let domain_type = host_domain_type(args.domain_type.or(file.domain_type), &libvirt_uri)?;
        Ok(Config {
            name,
            listen,
            advertise,
            listen_file: args.listen_file.or(file.listen_file),
            storage_dir: args.storage_dir.or(file.storage_dir).unwrap_or_else(|| data_dir.join("images")),
            data_dir,
            socket,
            cert_days,
            libvirt_uri,
            domain_type,
            voters,
            snapshot_every,
            keep_logs: args.keep_logs.or(file.keep_logs).unwrap_or(200),
            heartbeat_ms,
            election_timeout_ms,
            host_heartbeat_ms: ha.host_heartbeat_ms,
            lease_ms: ha.lease_ms,
            lease_margin_ms: ha.lease_margin_ms,
            fence_command: ha.fence_command,
            voter_down_ms: ha.voter_down_ms,
            skip_fencing_percent: ha.skip_fencing_percent,
            watchdog_timeout_ms: ha.watchdog_timeout_ms,
            watchdog: args.watchdog.or(file.watchdog),
            engine_gateway: args.engine_gateway.or(file.engine_gateway).filter(|g| !g.trim().is_empty()),
            engine_score_ms: args.engine_score_ms.or(file.engine_score_ms).unwrap_or(2000).max(100),
            fsync: args.fsync.or(file.fsync).unwrap_or(true),
            vnc_listen: args.vnc_listen.or(file.vnc_listen),
            web_root: args.web_root.or(file.web_root).or_else(default_web_root),
        })
    }

    /// Takes the address the listener was bound to: with port 0 it is the kernel's choice, which
    /// also becomes the advertised address if that was left to default to the listen address.
    /// Then writes it to the listen file, if there is one (a temporary file renamed over it, so
    /// a reader never sees half an address).
    pub fn bound(&mut self, local: SocketAddr) -> Result<(), ConfigError> {
        if self.listen.port() == 0 && self.advertise == self.listen.to_string() {
            self.advertise = local.to_string();
        }
        self.listen = local;
        let Some(path) = &self.listen_file else { return Ok(()) };
        let failed = |source| ConfigError::ListenFile { path: path.clone(), source };
        let mut tmp = path.clone().into_os_string();
        tmp.push(".tmp");
        std::fs::write(&tmp, format!("{local}\n")).map_err(failed)?;
        std::fs::rename(&tmp, path).map_err(failed)
    }
}

/// The lease settings, merged and checked together (they only make sense relative to each other).
struct HaSettings {
    host_heartbeat_ms: u64,
    lease_ms: u64,
    lease_margin_ms: u64,
    fence_command: Option<String>,
    voter_down_ms: u64,
    skip_fencing_percent: u64,
    watchdog_timeout_ms: u64,
}

fn ha_settings(args: &Args, file: &FileConfig) -> Result<HaSettings, ConfigError> {
    let invalid = |setting, rule: String| Err(ConfigError::Invalid { setting, rule });
    let host_heartbeat_ms = args.host_heartbeat_ms.or(file.host_heartbeat_ms).unwrap_or(500);
    let lease_ms = args.lease_ms.or(file.lease_ms).unwrap_or(3000);
    let lease_margin_ms = args.lease_margin_ms.or(file.lease_margin_ms).unwrap_or(1000);
    let voter_down_ms = args.voter_down_ms.or(file.voter_down_ms).unwrap_or(30_000);
    let fence_command = args.fence_command.clone().or_else(|| file.fence_command.clone());
    let skip_fencing_percent = args.skip_fencing_percent.or(file.skip_fencing_percent).unwrap_or(50);
    if skip_fencing_percent > 100 {
        return invalid("skip_fencing_percent", format!("must be a percentage (0 to 100), got {skip_fencing_percent}"));
    }
    let watchdog_timeout_ms = args.watchdog_timeout_ms.or(file.watchdog_timeout_ms).unwrap_or(2000);
    // At least two renewals per lease, so that one lost heartbeat does not cost the lease.
    if host_heartbeat_ms == 0 || host_heartbeat_ms * 2 >= lease_ms {
        return invalid(
            "host_heartbeat_ms",
            format!("must be more than 0 and less than half of lease_ms ({lease_ms}), got {host_heartbeat_ms}"),
        );
    }
    // A deposed leader may still acknowledge heartbeats for about one heartbeat interval after
    // its last quorum contact; the margin covers that, and clock rates on top.
    if lease_margin_ms < host_heartbeat_ms {
        return invalid(
            "lease_margin_ms",
            format!("must be at least host_heartbeat_ms ({host_heartbeat_ms}), got {lease_margin_ms}"),
        );
    }
    // A freshly renewed lease must leave room to feed the watchdog (see lease.rs).
    if watchdog_timeout_ms == 0
        || watchdog_timeout_ms.saturating_sub(lease_margin_ms) + 2 * host_heartbeat_ms > lease_ms
    {
        return invalid(
            "watchdog_timeout_ms",
            format!(
                "must be more than 0 and at most lease_ms - 2 x host_heartbeat_ms + lease_margin_ms ({}), got \
                 {watchdog_timeout_ms}",
                (lease_ms + lease_margin_ms).saturating_sub(2 * host_heartbeat_ms)
            ),
        );
    }
    // A voter is replaced only after its host is certainly dead.
    if voter_down_ms < lease_ms + lease_margin_ms {
        return invalid(
            "voter_down_ms",
            format!(
                "must be at least lease_ms + lease_margin_ms ({}), got {voter_down_ms}",
                lease_ms + lease_margin_ms
            ),
        );
    }
    if fence_command.as_deref().is_some_and(|c| c.trim().is_empty()) {
        return invalid("fence_command", "must not be empty (leave it out for none)".into());
    }
    Ok(HaSettings {
        host_heartbeat_ms,
        lease_ms,
        lease_margin_ms,
        fence_command,
        voter_down_ms,
        skip_fencing_percent,
        watchdog_timeout_ms,
    })
}

/// The address other nodes dial: given, or the listen address (with port 0, a placeholder
/// until `Config::bound` knows the port).
fn advertise_address(
    given: Option<String>,
    listen: SocketAddr,
    recorded_before_listening: bool,
) -> Result<String, ConfigError> {
    match given {
        Some(a) => Ok(a),
        None if listen.ip().is_unspecified() => Err(ConfigError::Invalid {
            setting: "advertise",
            rule: format!("must be given when listening on {listen} (other nodes need a routable address)"),
        }),
        None if listen.port() == 0 && recorded_before_listening => Err(ConfigError::Invalid {
            setting: "listen",
            rule: format!(
                "port 0 is refused with --rejoin, --restore and --force-new-cluster, which record this \
                 node's address before it listens: give a port, or an advertise address (got {listen})"
            ),
        }),
        None => Ok(listen.to_string()),
    }
}

/// The domain type this host runs VMs as: given, or what the host can (KVM when usable); on
/// libvirt's test driver always `test`.
fn host_domain_type(given: Option<String>, libvirt_uri: &str) -> Result<DomainType, ConfigError> {
    match (given, libvirt_uri.starts_with("test:")) {
        (None, true) => Ok(DomainType::Test),
        (Some(t), true) if t != DomainType::Test.as_str() => Err(ConfigError::Invalid {
            setting: "domain_type",
            rule: format!("libvirt's test driver only runs domains of type test (got '{t}')"),
        }),
        (Some(t), _) => t.parse().map_err(|e: corral_raft::ClusterError| ConfigError::Invalid {
            setting: "domain_type",
            rule: e.to_string().trim_start_matches("domain_type: ").to_string(),
        }),
        (None, false) if kvm_usable() => Ok(DomainType::Kvm),
        (None, false) => Ok(DomainType::Qemu),
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.into(), source })
}

/// Whether /dev/kvm can be opened for reading and writing, as QEMU needs.
fn kvm_usable() -> bool {
    std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_lowercase())
        .unwrap_or_else(|_| "corral".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_defaults_fill_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("corrald.toml");
        std::fs::write(&path, "name = \"from-file\"\nlisten = \"127.0.0.1:7100\"\nsnapshot_every = 50\n").unwrap();
        let args = Args { config: Some(path), name: Some("from-flag".into()), ..Default::default() };
        let c = Config::load(args).unwrap();
        assert_eq!(c.name, "from-flag");
        assert_eq!(c.listen.to_string(), "127.0.0.1:7100");
        assert_eq!(c.advertise, "127.0.0.1:7100");
        assert_eq!(c.snapshot_every, 50);
        assert_eq!(c.voters, 3);
    }

    #[test]
    fn port_0_takes_the_bound_port_for_advertise_and_the_listen_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("listen-address");
        let listen = Some("127.0.0.1:0".parse().unwrap());
        let args = Args { name: Some("h".into()), listen, listen_file: Some(file.clone()), ..Default::default() };
        let mut c = Config::load(args).unwrap();
        c.bound("127.0.0.1:41234".parse().unwrap()).unwrap();
        assert_eq!((c.listen.to_string(), c.advertise.as_str()), ("127.0.0.1:41234".into(), "127.0.0.1:41234"));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "127.0.0.1:41234\n");

        let advertise = Some("192.0.2.1:7001".to_string());
        let mut c = Config::load(Args { name: Some("h".into()), listen, advertise, ..Default::default() }).unwrap();
        c.bound("127.0.0.1:41235".parse().unwrap()).unwrap();
        assert_eq!(c.advertise, "192.0.2.1:7001", "a given advertise address stays");

        let err =
            Config::load(Args { name: Some("h".into()), listen, rejoin: true, ..Default::default() }).unwrap_err();
        assert!(err.to_string().starts_with("listen: port 0 is refused with --rejoin"), "{err}");
    }

    #[test]
    fn bad_settings_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "nmae = \"x\"\n").unwrap();
        let err = Config::load(Args { config: Some(path), ..Default::default() }).unwrap_err();
        assert!(err.to_string().starts_with("config file"), "{err}");
        let err = Config::load(Args { name: Some("h".into()), voters: Some(4), ..Default::default() }).unwrap_err();
        assert_eq!(err.to_string(), "voters: must be 3 or 5 (got 4)");
        let args = Args { name: Some("h".into()), listen: Some("0.0.0.0:7001".parse().unwrap()), ..Default::default() };
        assert!(Config::load(args).unwrap_err().to_string().starts_with("advertise:"));
    }

    #[test]
    fn lease_settings_default_and_come_from_the_file_or_flags() {
        let c = Config::load(Args { name: Some("h".into()), ..Default::default() }).unwrap();
        assert_eq!((c.host_heartbeat_ms, c.lease_ms, c.lease_margin_ms, c.voter_down_ms), (500, 3000, 1000, 30_000));
        assert_eq!((c.fence_command, c.watchdog), (None, None));
        assert_eq!(c.heartbeat_ms, 100, "Raft's heartbeat is a separate setting");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("corrald.toml");
        std::fs::write(
            &path,
            "name = \"h\"\nlease_ms = 4000\nhost_heartbeat_ms = 250\nfence_command = \"ipmitool power off\"\n\
             watchdog = \"/dev/watchdog\"\nvoter_down_ms = 60000\n",
        )
        .unwrap();
        let args = Args { config: Some(path), lease_margin_ms: Some(500), ..Default::default() };
        let c = Config::load(args).unwrap();
        assert_eq!((c.host_heartbeat_ms, c.lease_ms, c.lease_margin_ms, c.voter_down_ms), (250, 4000, 500, 60_000));
        assert_eq!(c.fence_command.as_deref(), Some("ipmitool power off"));
        assert_eq!(c.watchdog, Some(PathBuf::from("/dev/watchdog")));
    }

    #[test]
    fn vnc_listen_is_an_address_from_the_file_or_a_flag() {
        let c = Config::load(Args { name: Some("h".into()), ..Default::default() }).unwrap();
        assert_eq!(c.vnc_listen, None, "no VNC displays unless asked for");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("corrald.toml");
        std::fs::write(&path, "name = \"h\"\nvnc_listen = \"10.213.0.2\"\n").unwrap();
        let c = Config::load(Args { config: Some(path.clone()), ..Default::default() }).unwrap();
        assert_eq!(c.vnc_listen, Some("10.213.0.2".parse().unwrap()));
        let flag = Args { config: Some(path.clone()), vnc_listen: Some("::1".parse().unwrap()), ..Default::default() };
        assert_eq!(Config::load(flag).unwrap().vnc_listen, Some("::1".parse().unwrap()), "the flag wins");
        std::fs::write(&path, "name = \"h\"\nvnc_listen = \"host1\"\n").unwrap();
        assert!(Config::load(Args { config: Some(path), ..Default::default() }).is_err(), "an address, not a name");
    }

    #[test]
    fn the_example_config_is_valid() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/corrald.toml");
        let c = Config::load(Args { config: Some(example), ..Default::default() }).unwrap();
        assert_eq!((c.host_heartbeat_ms, c.lease_ms, c.lease_margin_ms, c.voter_down_ms), (500, 3000, 1000, 30_000));
    }

    #[test]
    fn lease_settings_are_checked_against_each_other() {
        let load = |args: Args| Config::load(Args { name: Some("h".into()), ..args }).unwrap_err().to_string();
        assert_eq!(
            load(Args { host_heartbeat_ms: Some(1500), ..Default::default() }),
            "host_heartbeat_ms: must be more than 0 and less than half of lease_ms (3000), got 1500"
        );
        assert!(load(Args { host_heartbeat_ms: Some(0), ..Default::default() }).starts_with("host_heartbeat_ms:"));
        assert!(load(Args { lease_ms: Some(900), ..Default::default() }).starts_with("host_heartbeat_ms:"));
        assert_eq!(
            load(Args { lease_margin_ms: Some(0), ..Default::default() }),
            "lease_margin_ms: must be at least host_heartbeat_ms (500), got 0"
        );
        assert_eq!(
            load(Args { watchdog_timeout_ms: Some(3100), ..Default::default() }),
            "watchdog_timeout_ms: must be more than 0 and at most lease_ms - 2 x host_heartbeat_ms + lease_margin_ms \
             (3000), got 3100"
        );
        assert_eq!(
            load(Args { voter_down_ms: Some(3999), ..Default::default() }),
            "voter_down_ms: must be at least lease_ms + lease_margin_ms (4000), got 3999"
        );
        assert!(load(Args { fence_command: Some(" ".into()), ..Default::default() }).starts_with("fence_command:"));
        assert_eq!(
            load(Args { skip_fencing_percent: Some(101), ..Default::default() }),
            "skip_fencing_percent: must be a percentage (0 to 100), got 101"
        );
    }
}

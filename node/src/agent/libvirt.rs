//! The hypervisor driver: the only code that calls the `virt` crate. libvirt calls are blocking
//! FFI, so every one runs on tokio's blocking pool and never on an async worker; nothing outside
//! this module may hold a libvirt connection or build domain XML by hand.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use corral_raft::model::{DomainType, HostFacts};
use uuid::Uuid;
use virt::connect::Connect;
use virt::domain::{Domain, DomainPausedReason, DomainShutoffReason, DomainState as VirtState, DomainStateReason};
use virt::enumutil::Enum;
use virt::error::{Error as VirtError, ErrorNumber};
use virt::sys;

use super::domain_xml::{self, DiskBus, DiskDevice, DiskSpec, DomainSpec, LiveDimm, LiveDomain, NicSpec, XmlError};

mod snapshots;

const MIB: u64 = 1024 * 1024;

/// How long an unplug waits for the guest to release the device, counted from the request
/// (libvirt itself waits up to 5 s of it inside the call).
pub const UNPLUG_PATIENCE: Duration = Duration::from_secs(15);
/// How often an unplug looks at the live definition while it waits.
const UNPLUG_POLL: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// libvirt does not answer: the host's hypervisor is not responding.
    #[error("cannot connect to libvirt at {uri}: {message}")]
    Unreachable { uri: String, message: String },
    #[error("libvirt at {uri}: {message}")]
    NoSuchDomain { uri: String, uuid: Uuid, message: String },
    /// libvirt refused or failed the operation; the message is libvirt's own.
    #[error("libvirt at {uri}: {message}")]
    Libvirt { uri: String, message: String },
    #[error("libvirt at {uri}: the test driver cannot migrate VMs")]
    CannotMigrate { uri: String },
    #[error("libvirt at {uri}: the domain XML of {uuid} cannot be used")]
    Xml {
        uri: String,
        uuid: Uuid,
        #[source]
        source: XmlError,
    },
    /// libvirt refused or failed a change to a running VM's devices, or the VM lacks what the
    /// change needs; the message is libvirt's own, or says what is missing.
    #[error("libvirt at {uri}: VM {vm}: cannot {action}: {message}")]
    Device { uri: String, uuid: Uuid, vm: String, action: String, message: String },
    /// The guest did not release a device it was asked to give up: the device stays in the live
    /// and the persistent definition, and the guest may still release it later.
    #[error("libvirt at {uri}: VM {vm}: the guest did not release {device} within {} s; it stays plugged", .waited.as_secs())]
    NotReleased { uri: String, uuid: Uuid, vm: String, device: String, waited: Duration },
    #[error("libvirt at {uri}: the call was given an argument with a NUL byte")]
    NulByte { uri: String },
    #[error("libvirt at {uri}: the call did not finish")]
    Worker {
        uri: String,
        #[source]
        source: tokio::task::JoinError,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainInfo {
    pub uuid: Uuid,
    pub name: String,
    pub state: DomainState,
    /// Whether libvirt keeps its definition when it stops (false for a transient domain).
    pub persistent: bool,
    /// Shut off because the guest shut itself down (libvirt's reason "shutdown"), not
    /// destroyed, crashed or failed.
    pub guest_shutdown: bool,
    /// Paused by the hypervisor on a storage I/O error (libvirt's reason "ioerror").
    pub io_error: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainState {
    Running,
    Paused,
    ShuttingDown,
    Shutoff,
    Crashed,
    PmSuspended,
    Blocked,
    Other,
}

impl From<virt::domain::DomainStateEnum> for DomainState {
    fn from(state: virt::domain::DomainStateEnum) -> DomainState {
        match state {
            Enum::Known(VirtState::Running) => DomainState::Running,
            Enum::Known(VirtState::Paused) => DomainState::Paused,
            Enum::Known(VirtState::Shutdown) => DomainState::ShuttingDown,
            Enum::Known(VirtState::Shutoff) => DomainState::Shutoff,
            Enum::Known(VirtState::Crashed) => DomainState::Crashed,
            Enum::Known(VirtState::PMSuspended) => DomainState::PmSuspended,
            Enum::Known(VirtState::Blocked) => DomainState::Blocked,
            Enum::Known(VirtState::NoState) | Enum::Unknown(_) => DomainState::Other,
        }
    }
}

/// How one migration runs (see `MigrationSettings` in the model).
#[derive(Debug, Clone, Copy, Default)]
pub struct MigrationOptions {
    pub auto_converge: bool,
    pub compression: bool,
    pub bandwidth_mibps: Option<u64>,
}

/// A running migration's progress, from libvirt's job information.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobProgress {
    pub percent: u8,
    pub memory_total_mib: u64,
    pub memory_remaining_mib: u64,
    pub iteration: u64,
    pub elapsed_ms: u64,
    /// Guest memory sent so far (bytes).
    pub memory_sent_bytes: u64,
}

/// What one running domain has used, from libvirt: counters since it started (they restart
/// from zero when it starts again or arrives by migration) and its memory now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VmUsage {
    pub uuid: Uuid,
    pub cpu_time_ns: u64,
    pub memory_kib: u64,
    pub disk_read_bytes: u64,
    pub disk_write_bytes: u64,
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
}

/// One libvirt host, shared by every task of this node. Cloning shares the connection.
#[derive(Clone)]
pub struct Hypervisor {
    uri: Arc<str>,
    /// Opened again by the next call once libvirt has dropped it (a libvirtd restart heals).
    conn: Arc<Mutex<Option<Connect>>>,
}

impl std::fmt::Debug for Hypervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hypervisor").field("uri", &self.uri).finish_non_exhaustive()
    }
}

impl Hypervisor {
    /// Connects to libvirt at `uri`, failing with [`DriverError::Unreachable`] if it does not answer.
    pub async fn open(uri: &str) -> Result<Hypervisor, DriverError> {
        let hypervisor = Hypervisor { uri: uri.into(), conn: Arc::new(Mutex::new(None)) };
        hypervisor.call(|_| Ok(())).await?;
        Ok(hypervisor)
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// Whether this is libvirt's in-process test driver, whose VMs are bookkeeping only.
    pub fn is_test_driver(&self) -> bool {
        self.uri.starts_with("test:")
    }

    pub fn can_migrate(&self) -> bool {
        !self.is_test_driver()
    }

    /// The host's CPUs and memory. The domain type is `test` on the test driver and `kvm`
    /// otherwise; a host configured for TCG overrides it.
    pub async fn facts(&self) -> Result<HostFacts, DriverError> {
        let domain_type = if self.is_test_driver() { DomainType::Test } else { DomainType::Kvm };
        self.call(move |call| {
            let info = call.conn.node_info().map_err(|e| call.error(e))?;
            Ok(HostFacts {
                cpus: info.cpus,
                memory_mib: info.memory / 1024,
                libvirt_uri: call.uri.to_string(),
                domain_type,
            })
        })
        .await
    }

    pub async fn free_memory_mib(&self) -> Result<u64, DriverError> {
        self.call(|call| Ok(call.conn.free_memory().map_err(|e| call.error(e))? / MIB)).await
    }

    /// Every domain libvirt knows, running or only defined.
    pub async fn domains(&self) -> Result<Vec<DomainInfo>, DriverError> {
        self.call(|call| {
            let domains = call.conn.list_all_domains(0).map_err(|e| call.error(e))?;
            let mut infos = Vec::with_capacity(domains.len());
            for domain in domains {
                match call.info(&domain) {
                    Ok(info) => infos.push(info),
                    // Undefined between the listing and now: it is no longer there to report.
                    Err(DriverError::NoSuchDomain { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(infos)
        })
        .await
    }

    /// The usage of every running domain (CPU time, memory, disk and network bytes), in one
    /// blocking call: per domain its info, its live XML (for the disk and NIC names) and one
    /// statistics call per disk and NIC. A device libvirt has no statistics for counts nothing.
    pub async fn usage(&self) -> Result<Vec<VmUsage>, DriverError> {
        self.call(|call| {
            let domains =
                call.conn.list_all_domains(sys::VIR_CONNECT_LIST_DOMAINS_ACTIVE).map_err(|e| call.error(e))?;
            let mut out = Vec::with_capacity(domains.len());
            for domain in domains {
                let Ok(uuid) = domain.uuid() else { continue };
                // Gone between the listing and now: nothing to count.
                let Ok(info) = domain.info() else { continue };
                let mut u = VmUsage { uuid, cpu_time_ns: info.cpu_time, memory_kib: info.memory, ..VmUsage::default() };
                if let Ok(live) = call.live(uuid, &domain) {
                    for disk in live.disks.iter().filter(|d| d.source.is_some()) {
                        if let Ok(b) = domain.block_stats(&disk.target) {
                            u.disk_read_bytes += b.rd_bytes.max(0) as u64;
                            u.disk_write_bytes += b.wr_bytes.max(0) as u64;
                        }
                    }
                    for nic in &live.nics {
                        if let Ok(n) = domain.interface_stats(&nic.mac) {
                            u.net_rx_bytes += n.rx_bytes.max(0) as u64;
                            u.net_tx_bytes += n.tx_bytes.max(0) as u64;
                        }
                    }
                }
                out.push(u);
            }
            Ok(out)
        })
        .await
    }

    /// Defines `spec` persistently; defining an existing UUID again replaces its definition
    /// (a running domain picks the new one up when it next starts). libvirt checks the XML
    /// against its schema first.
    pub async fn define(&self, spec: &DomainSpec) -> Result<(), DriverError> {
        let xml = domain_xml::to_xml(spec).map_err(|source| DriverError::Xml {
            uri: self.uri.to_string(),
            uuid: spec.uuid,
            source,
        })?;
        self.call(move |call| {
            call.conn
                .define_domain_xml_flags(&xml, sys::VIR_DOMAIN_DEFINE_VALIDATE)
                .map(drop)
                .map_err(|e| call.error(e))
        })
        .await
    }

    pub async fn start(&self, uuid: Uuid) -> Result<(), DriverError> {
        self.with_domain(uuid, move |call, domain| domain.create().map_err(|e| call.domain_error(uuid, e))).await
    }

    /// Presses the ACPI power button; the guest decides when (and whether) it powers off.
    pub async fn shutdown(&self, uuid: Uuid) -> Result<(), DriverError> {
        // The test driver knows no shutdown methods and refuses any flag.
        let flags = if self.is_test_driver() { 0 } else { sys::VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN };
        self.with_domain(uuid, move |call, domain| domain.shutdown_flags(flags).map_err(|e| call.domain_error(uuid, e)))
            .await
    }

    /// Pulls the power: the domain is off when this returns, and already being off is fine.
    pub async fn destroy(&self, uuid: Uuid) -> Result<(), DriverError> {
        self.with_domain(uuid, move |call, domain| match domain.destroy() {
            Ok(()) => Ok(()),
            Err(_) if domain.is_active().is_ok_and(|active| !active) => Ok(()),
            Err(e) => Err(call.domain_error(uuid, e)),
        })
        .await
    }

    /// Asks the guest to reboot through ACPI.
    pub async fn reboot(&self, uuid: Uuid) -> Result<(), DriverError> {
        let flags =
            if self.is_test_driver() { sys::VIR_DOMAIN_REBOOT_DEFAULT } else { sys::VIR_DOMAIN_REBOOT_ACPI_POWER_BTN };
        self.with_domain(uuid, move |call, domain| domain.reboot(flags).map_err(|e| call.domain_error(uuid, e))).await
    }

    /// Pauses the domain's CPUs; its memory stays allocated.
    pub async fn suspend(&self, uuid: Uuid) -> Result<(), DriverError> {
        self.with_domain(uuid, move |call, domain| domain.suspend().map_err(|e| call.domain_error(uuid, e))).await
    }

    pub async fn resume(&self, uuid: Uuid) -> Result<(), DriverError> {
        self.with_domain(uuid, move |call, domain| domain.resume().map_err(|e| call.domain_error(uuid, e))).await
    }

    /// Removes the domain's persistent definition (a running domain keeps running as a transient
    /// one). A domain that does not exist is already undefined.
    pub async fn undefine(&self, uuid: Uuid) -> Result<(), DriverError> {
        let flags = sys::VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | sys::VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA;
        let result = self
            .with_domain(uuid, move |call, domain| domain.undefine_flags(flags).map_err(|e| call.domain_error(uuid, e)))
            .await;
        match result {
            Err(DriverError::NoSuchDomain { .. }) => Ok(()),
            other => other,
        }
    }

    /// Live-migrates a running domain peer to peer: this host's libvirtd connects to `dest_uri`
    /// itself, the destination keeps the definition and this host forgets it. `migrate_uri` picks
    /// the address the memory is streamed to (e.g. "tcp://10.213.0.3"); libvirt chooses otherwise.
    /// `vnc`, for a domain with a VNC display: the destination's listen address (None: it has
    /// none, and the domain arrives without a display), since this host's address cannot be
    /// bound there.
    pub async fn migrate(
        &self,
        uuid: Uuid,
        dest_uri: &str,
        migrate_uri: Option<&str>,
        options: MigrationOptions,
        vnc: Option<Option<String>>,
    ) -> Result<(), DriverError> {
        if !self.can_migrate() {
            return Err(DriverError::CannotMigrate { uri: self.uri.to_string() });
        }
        let (dest_uri, migrate_uri) = (dest_uri.to_string(), migrate_uri.map(str::to_string));
        // virt panics on NUL bytes in these two arguments instead of returning an error.
        if dest_uri.contains('\0') || migrate_uri.as_deref().is_some_and(|uri| uri.contains('\0')) {
            return Err(DriverError::NulByte { uri: self.uri.to_string() });
        }
        // UNSAFE: disks live in Corral's storage domain, which every host sees by definition
        // (NFS in production, one directory in the sandbox); libvirt only recognises a few
        // cluster filesystems as shared and refuses plain directories without it.
        let mut flags = sys::VIR_MIGRATE_LIVE
            | sys::VIR_MIGRATE_PEER2PEER
            | sys::VIR_MIGRATE_PERSIST_DEST
            | sys::VIR_MIGRATE_UNDEFINE_SOURCE
            | sys::VIR_MIGRATE_UNSAFE;
        if options.auto_converge {
            flags |= sys::VIR_MIGRATE_AUTO_CONVERGE;
        }
        if options.compression {
            flags |= sys::VIR_MIGRATE_COMPRESSED;
        }
        let bandwidth = options.bandwidth_mibps.unwrap_or(0);
        self.with_domain(uuid, move |call, domain| {
            let dxml = match vnc {
                None => None,
                Some(listen) => {
                    let flags = sys::VIR_DOMAIN_XML_MIGRATABLE | sys::VIR_DOMAIN_XML_SECURE;
                    let xml = domain.xml_desc(flags).map_err(|e| call.domain_error(uuid, e))?;
                    Some(domain_xml::with_vnc_listen(&xml, listen.as_deref()).map_err(|e| call.xml_error(uuid, e))?)
                }
            };
            domain
                .migrate_to_uri2(Some(&dest_uri), migrate_uri.as_deref(), dxml.as_deref(), flags, None, bandwidth)
                .map_err(|e| call.domain_error(uuid, e))
        })
        .await
    }

    /// How far the domain's running job (a migration) is; None when it runs none.
    pub async fn job_progress(&self, uuid: Uuid) -> Result<Option<JobProgress>, DriverError> {
        self.with_domain(uuid, move |call, domain| {
            let job = domain.job_info().map_err(|e| call.domain_error(uuid, e))?;
            if job.r#type == sys::VIR_DOMAIN_JOB_NONE as i32 {
                return Ok(None);
            }
            // The memory pass count is only in the typed statistics (`job_stats`), whose parser
            // in virt 0.5 panics on a parameter of an unexpected type: not read.
            let iteration = 0;
            let (total, remaining) = (job.mem_total.unwrap_or(0), job.mem_remaining.unwrap_or(0));
            Ok(Some(JobProgress {
                memory_total_mib: total / MIB,
                memory_remaining_mib: remaining / MIB,
                percent: (remaining.min(total) * 100).checked_div(total).map_or(0, |left| (100 - left) as u8),
                iteration,
                elapsed_ms: job.time_elapsed.unwrap_or(0),
                memory_sent_bytes: job.mem_processed.unwrap_or(0),
            }))
        })
        .await
    }

    /// Sets the longest pause at the switch-over of the domain's running migration.
    pub async fn set_max_downtime(&self, uuid: Uuid, ms: u64) -> Result<(), DriverError> {
        self.with_domain(uuid, move |call, domain| {
            domain.migrate_set_max_downtime(ms, 0).map(drop).map_err(|e| call.domain_error(uuid, e))
        })
        .await
    }

    /// Aborts the domain's running job (a migration: the domain keeps running here).
    pub async fn abort_job(&self, uuid: Uuid) -> Result<(), DriverError> {
        self.with_domain(uuid, move |call, domain| {
            // virt 0.5 has no safe wrapper for virDomainAbortJob: the one FFI call of the
            // project. SAFETY: `domain` is a live handle owned by `Domain` for this whole call,
            // and virDomainAbortJob only reads it.
            #[allow(unsafe_code)]
            let rc = unsafe { sys::virDomainAbortJob(domain.as_ptr()) };
            if rc < 0 {
                return Err(call.domain_error(uuid, VirtError::last_error()));
            }
            Ok(())
        })
        .await
    }

    /// The domain's persistent definition (what it boots with next), read back as a spec.
    pub async fn domain_xml(&self, uuid: Uuid) -> Result<DomainSpec, DriverError> {
        let xml = self
            .with_domain(uuid, move |call, domain| {
                domain.xml_desc(sys::VIR_DOMAIN_XML_INACTIVE).map_err(|e| call.domain_error(uuid, e))
            })
            .await?;
        domain_xml::from_xml(&xml).map_err(|source| DriverError::Xml { uri: self.uri.to_string(), uuid, source })
    }

    /// What the running domain offers to attach to: its serial pty and VNC display.
    pub async fn consoles(&self, uuid: Uuid) -> Result<domain_xml::Consoles, DriverError> {
        self.with_domain(uuid, move |call, domain| {
            let xml = domain.xml_desc(0).map_err(|e| call.domain_error(uuid, e))?;
            domain_xml::consoles_from_xml(&xml).map_err(|source| call.xml_error(uuid, source))
        })
        .await
    }

    /// Gives the running domain's VNC display `password` until `valid_to` (UTC,
    /// `YYYY-MM-DDTHH:MM:SS`), in the live domain only. Returns the display's address and
    /// port, or None when the domain has no VNC display.
    pub async fn vnc_ticket(
        &self,
        uuid: Uuid,
        password: &str,
        valid_to: &str,
    ) -> Result<Option<(String, u16)>, DriverError> {
        let (password, valid_to) = (password.to_string(), valid_to.to_string());
        self.with_domain(uuid, move |call, domain| {
            let xml = domain.xml_desc(0).map_err(|e| call.domain_error(uuid, e))?;
            let Some(ticket) =
                domain_xml::vnc_ticket_xml(&xml, &password, &valid_to).map_err(|e| call.xml_error(uuid, e))?
            else {
                return Ok(None);
            };
            let vm = call.vm(uuid, domain)?;
            domain
                .update_device_flags(&ticket, sys::VIR_DOMAIN_AFFECT_LIVE)
                .map_err(|e| vm.failed(call, "set a VNC password", e))?;
            // The port is the live one: autoport picks it when the domain starts.
            let xml = domain.xml_desc(0).map_err(|e| call.domain_error(uuid, e))?;
            Ok(domain_xml::consoles_from_xml(&xml).map_err(|e| call.xml_error(uuid, e))?.vnc)
        })
        .await
    }

    // Hot-plug: changes to a running domain. Each acts on the live definition and, when the
    // domain is persistent, on the persistent one too, so the VM keeps the change when it next
    // boots and a live migration (which carries both) keeps it on the destination.

    /// The domain's live definition (its persistent one when it is not running).
    pub async fn live(&self, uuid: Uuid) -> Result<LiveDomain, DriverError> {
        self.with_domain(uuid, move |call, domain| call.live(uuid, domain)).await
    }

    /// Plugs a disk into the running domain. A SCSI disk needs the domain's virtio-scsi
    /// controller (`DomainSpec::scsi_controller`): without it libvirt would add an LSI one.
    pub async fn plug_disk(&self, uuid: Uuid, disk: &DiskSpec) -> Result<(), DriverError> {
        let action = format!("plug disk {}", disk.target);
        let xml = domain_xml::disk_xml(disk).map_err(|source| self.xml_error(uuid, source))?;
        let scsi = disk.bus == DiskBus::Scsi;
        self.with_domain(uuid, move |call, domain| {
            let vm = call.vm(uuid, domain)?;
            if scsi && !call.live(uuid, domain)?.scsi_controller {
                return Err(vm.refused(call, &action, "it has no virtio-scsi controller for a SCSI disk"));
            }
            domain.attach_device_flags(&xml, vm.flags()).map_err(|e| vm.failed(call, &action, e))
        })
        .await
    }

    /// Unplugs the disk with guest device name `target` and waits (up to [`UNPLUG_PATIENCE`])
    /// until the guest has released it; only then does it leave the persistent definition. A
    /// disk that is in neither definition is already unplugged.
    pub async fn unplug_disk(&self, uuid: Uuid, target: &str) -> Result<(), DriverError> {
        let target = target.to_string();
        let defs = self.definitions(uuid).await?;
        let find = |domain: &LiveDomain| domain.disks.iter().find(|disk| disk.target == target).cloned();
        let unplug_xml = |disk| domain_xml::disk_unplug_xml(&disk).map_err(|source| self.xml_error(uuid, source));
        let live = find(&defs.live).map(unplug_xml).transpose()?;
        let config = defs.config.as_ref().and_then(find).map(unplug_xml).transpose()?;
        let device = format!("disk {target}");
        let gone = move |domain: &LiveDomain| !domain.disks.iter().any(|disk| disk.target == target);
        self.unplug(uuid, &defs.vm, device, live, config, gone).await
    }

    /// Plugs a virtio NIC on a libvirt network into the running domain.
    pub async fn plug_nic(&self, uuid: Uuid, nic: &NicSpec) -> Result<(), DriverError> {
        let xml = domain_xml::nic_xml(nic).map_err(|source| self.xml_error(uuid, source))?;
        self.attach(uuid, format!("plug NIC {}", nic.mac), xml).await
    }

    /// Unplugs the NIC with this MAC address and waits like [`Hypervisor::unplug_disk`].
    pub async fn unplug_nic(&self, uuid: Uuid, mac: &str) -> Result<(), DriverError> {
        let mac = mac.to_ascii_lowercase();
        let defs = self.definitions(uuid).await?;
        let find = |domain: &LiveDomain| domain.nics.iter().find(|nic| nic.mac.eq_ignore_ascii_case(&mac)).cloned();
        let unplug_xml = |nic| domain_xml::nic_unplug_xml(&nic).map_err(|source| self.xml_error(uuid, source));
        let live = find(&defs.live).map(unplug_xml).transpose()?;
        let config = defs.config.as_ref().and_then(find).map(unplug_xml).transpose()?;
        let device = format!("NIC {mac}");
        let gone = move |domain: &LiveDomain| !domain.nics.iter().any(|nic| nic.mac.eq_ignore_ascii_case(&mac));
        self.unplug(uuid, &defs.vm, device, live, config, gone).await
    }

    /// Puts the image at `path` into the domain's CD-ROM drive, or ejects its media (None).
    pub async fn change_cd(&self, uuid: Uuid, path: Option<&str>) -> Result<(), DriverError> {
        let path = path.map(str::to_string);
        let this = self.clone();
        self.with_domain(uuid, move |call, domain| {
            let vm = call.vm(uuid, domain)?;
            let live = call.live(uuid, domain)?;
            let Some(cdrom) = live.disks.iter().find(|disk| disk.device == DiskDevice::Cdrom) else {
                return Err(vm.refused(call, "change the CD-ROM media", "it has no CD-ROM drive"));
            };
            let action = match &path {
                Some(path) => format!("insert {path} into CD-ROM {}", cdrom.target),
                None => format!("eject the media of CD-ROM {}", cdrom.target),
            };
            let xml = domain_xml::cdrom_media_xml(cdrom, path.as_deref()).map_err(|e| this.xml_error(uuid, e))?;
            domain.update_device_flags(&xml, vm.flags()).map_err(|e| vm.failed(call, &action, e))
        })
        .await
    }

    /// Sets the number of vCPUs of the running domain (up to its maximum). Removing vCPUs needs
    /// the guest's consent: libvirt gives up waiting for it after 5 s, and this keeps waiting
    /// like [`Hypervisor::unplug_disk`] before it fails; the persistent definition changes only
    /// once the live one has.
    pub async fn set_vcpus(&self, uuid: Uuid, vcpus: u32) -> Result<(), DriverError> {
        let asked = Instant::now();
        let slow_guest = self
            .with_domain(uuid, move |call, domain| {
                let vm = call.vm(uuid, domain)?;
                match domain.set_vcpus_flags(vcpus, vm.flags()) {
                    Ok(()) => Ok(None),
                    Err(e) if e.code() == Enum::Known(ErrorNumber::OperationTimeout) => Ok(Some(vm)),
                    Err(e) => Err(vm.failed(call, &format!("set {vcpus} vCPUs"), e)),
                }
            })
            .await?;
        let Some(vm) = slow_guest else {
            return Ok(());
        };
        let device = format!("its vCPUs beyond {vcpus}");
        self.wait_released(uuid, &vm.name, device, asked, |live| live.vcpus <= vcpus).await?;
        if vm.persistent {
            self.with_domain(uuid, move |call, domain| {
                let action = format!("set {vcpus} vCPUs in the persistent definition");
                domain.set_vcpus_flags(vcpus, sys::VIR_DOMAIN_AFFECT_CONFIG).map_err(|e| vm.failed(call, &action, e))
            })
            .await?;
        }
        Ok(())
    }

    /// Plugs one DIMM of `mib` into the running domain, which needs `max_memory_mib` in its
    /// definition. The guest sees new memory blocks, offline unless its kernel onlines them.
    pub async fn plug_memory(&self, uuid: Uuid, mib: u64) -> Result<(), DriverError> {
        let xml = domain_xml::dimm_xml(mib).map_err(|source| self.xml_error(uuid, source))?;
        self.attach(uuid, format!("plug a {mib} MiB DIMM"), xml).await
    }

    /// Unplugs hot-plugged DIMMs whose sizes add up to exactly `mib` (the fewest, the latest
    /// first), one at a time, each waited for like [`Hypervisor::unplug_disk`]; the memory the
    /// domain booted with is never touched. When the guest keeps one, the DIMMs unplugged
    /// before it stay unplugged.
    pub async fn unplug_memory(&self, uuid: Uuid, mib: u64) -> Result<(), DriverError> {
        let defs = self.definitions(uuid).await?;
        let Some(chosen) = choose_dimms(&defs.live.dimms, mib) else {
            let sizes: Vec<String> = defs.live.dimms.iter().map(|dimm| format!("{} MiB", dimm.size_mib)).collect();
            let message = if sizes.is_empty() {
                "it has no hot-plugged DIMMs".to_string()
            } else {
                format!("no set of its hot-plugged DIMMs ({}) adds up to that", sizes.join(", "))
            };
            return Err(DriverError::Device {
                uri: self.uri.to_string(),
                uuid,
                vm: defs.vm,
                action: format!("unplug {mib} MiB of memory"),
                message,
            });
        };
        // The persistent definition's DIMMs have no addresses that match the live ones: any
        // DIMM of the same size and node there is the one to remove.
        let mut config_dimms = defs.config.map(|config| config.dimms).unwrap_or_default();
        for dimm in chosen {
            let live = domain_xml::dimm_unplug_xml(&dimm, true).map_err(|source| self.xml_error(uuid, source))?;
            let config = match config_dimms.iter().position(|c| c.size_mib == dimm.size_mib && c.node == dimm.node) {
                Some(at) => {
                    let config_dimm = config_dimms.remove(at);
                    Some(domain_xml::dimm_unplug_xml(&config_dimm, false).map_err(|e| self.xml_error(uuid, e))?)
                }
                None => None,
            };
            let gone = {
                let dimm = dimm.clone();
                move |domain: &LiveDomain| !domain.dimms.iter().any(|d| same_dimm(d, &dimm))
            };
            self.unplug(uuid, &defs.vm, dimm.describe(), Some(live), config, gone).await?;
        }
        Ok(())
    }

    /// Grows (or shrinks) the image under the running domain's disk `target` to `mib`; the
    /// guest sees the new size at once. The image file changes, so a stopped VM keeps it too.
    pub async fn resize_disk(&self, uuid: Uuid, target: &str, mib: u64) -> Result<(), DriverError> {
        let target = target.to_string();
        self.with_domain(uuid, move |call, domain| {
            let vm = call.vm(uuid, domain)?;
            let action = format!("resize disk {target} to {mib} MiB");
            let bytes = mib.checked_mul(MIB).ok_or_else(|| vm.refused(call, &action, "the size is too large"))?;
            domain
                .block_resize(&target, bytes, sys::VIR_DOMAIN_BLOCK_RESIZE_BYTES)
                .map_err(|e| vm.failed(call, &action, e))
        })
        .await
    }

    async fn attach(&self, uuid: Uuid, action: String, xml: String) -> Result<(), DriverError> {
        self.with_domain(uuid, move |call, domain| {
            let vm = call.vm(uuid, domain)?;
            domain.attach_device_flags(&xml, vm.flags()).map_err(|e| vm.failed(call, &action, e))
        })
        .await
    }

    /// The VM's name and both of its definitions, read in one call.
    async fn definitions(&self, uuid: Uuid) -> Result<Definitions, DriverError> {
        self.with_domain(uuid, move |call, domain| {
            let vm = call.vm(uuid, domain)?;
            let live = call.live(uuid, domain)?;
            let config = if vm.persistent {
                let xml = domain.xml_desc(sys::VIR_DOMAIN_XML_INACTIVE).map_err(|e| call.domain_error(uuid, e))?;
                Some(domain_xml::live_from_xml(&xml).map_err(|source| call.xml_error(uuid, source))?)
            } else {
                None
            };
            Ok(Definitions { vm: vm.name, live, config })
        })
        .await
    }

    /// Asks for the live detach of `live` (when the device is plugged), waits until `gone` holds
    /// for the live definition, then removes `config` from the persistent definition. The
    /// persistent definition changes only once the guest has let go, so a device the guest
    /// keeps stays in both.
    async fn unplug(
        &self,
        uuid: Uuid,
        vm: &str,
        device: String,
        live: Option<String>,
        config: Option<String>,
        gone: impl Fn(&LiveDomain) -> bool,
    ) -> Result<(), DriverError> {
        let asked = Instant::now();
        if let Some(xml) = live {
            let action = format!("unplug {device}");
            self.with_domain(uuid, move |call, domain| {
                let vm = call.vm(uuid, domain)?;
                domain.detach_device_flags(&xml, sys::VIR_DOMAIN_AFFECT_LIVE).map_err(|e| vm.failed(call, &action, e))
            })
            .await?;
            self.wait_released(uuid, vm, device.clone(), asked, gone).await?;
        }
        if let Some(xml) = config {
            let action = format!("remove {device} from the persistent definition");
            self.with_domain(uuid, move |call, domain| {
                let vm = call.vm(uuid, domain)?;
                domain.detach_device_flags(&xml, sys::VIR_DOMAIN_AFFECT_CONFIG).map_err(|e| vm.failed(call, &action, e))
            })
            .await?;
        }
        Ok(())
    }

    /// Waits until `gone` holds for the live definition, at most [`UNPLUG_PATIENCE`] after `asked`.
    async fn wait_released(
        &self,
        uuid: Uuid,
        vm: &str,
        device: String,
        asked: Instant,
        gone: impl Fn(&LiveDomain) -> bool,
    ) -> Result<(), DriverError> {
        loop {
            if gone(&self.live(uuid).await?) {
                return Ok(());
            }
            if asked.elapsed() >= UNPLUG_PATIENCE {
                let (uri, vm, waited) = (self.uri.to_string(), vm.to_string(), asked.elapsed());
                return Err(DriverError::NotReleased { uri, uuid, vm, device, waited });
            }
            tokio::time::sleep(UNPLUG_POLL).await;
        }
    }

    fn xml_error(&self, uuid: Uuid, source: XmlError) -> DriverError {
        DriverError::Xml { uri: self.uri.to_string(), uuid, source }
    }

    async fn with_domain<T, F>(&self, uuid: Uuid, op: F) -> Result<T, DriverError>
    where
        T: Send + 'static,
        F: FnOnce(&Call<'_>, &Domain) -> Result<T, DriverError> + Send + 'static,
    {
        self.call(move |call| {
            let domain = call.conn.lookup_domain_by_uuid(uuid).map_err(|e| call.domain_error(uuid, e))?;
            op(call, &domain)
        })
        .await
    }

    /// Runs `op` on the blocking pool with a live connection.
    async fn call<T, F>(&self, op: F) -> Result<T, DriverError>
    where
        T: Send + 'static,
        F: FnOnce(&Call<'_>) -> Result<T, DriverError> + Send + 'static,
    {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = this.connection()?;
            op(&Call { conn: &conn, uri: &this.uri })
        })
        .await
        .map_err(|source| DriverError::Worker { uri: self.uri.to_string(), source })?
    }

    /// The shared connection, opened anew if there is none or libvirt has closed it. Blocking.
    fn connection(&self) -> Result<Connect, DriverError> {
        let mut cached = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(conn) = cached.as_ref() {
            if conn.is_alive().unwrap_or(false) {
                return Ok(conn.clone());
            }
        }
        *cached = None;
        start_event_loop();
        let conn = Connect::open(Some(&self.uri))
            .map_err(|e| DriverError::Unreachable { uri: self.uri.to_string(), message: e.message().to_string() })?;
        if !self.is_test_driver() {
            // Keepalives let the event loop notice a dead libvirtd before the next call trips on it.
            if let Err(e) = conn.set_keep_alive(5, 3) {
                tracing::debug!(uri = %self.uri, error = e.message(), "libvirt keepalive is off");
            }
        }
        *cached = Some(conn.clone());
        Ok(conn)
    }
}

/// libvirt's client needs an event loop for keepalives and to notice closed connections.
/// It is process-wide and must be registered before the first connection opens.
fn start_event_loop() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        // Errors are returned to us; libvirt's default handler would also print each to stderr.
        virt::error::clear_error_callback();
        if let Err(e) = virt::event::event_register_default_impl() {
            tracing::warn!(error = e.message(), "libvirt's event loop is unavailable");
            return;
        }
        let spawned = std::thread::Builder::new().name("libvirt-events".into()).spawn(|| loop {
            if let Err(e) = virt::event::event_run_default_impl() {
                tracing::warn!(error = e.message(), "libvirt's event loop stopped");
                return;
            }
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start libvirt's event loop");
        }
    });
}

/// One blocking call's view of the connection, to turn libvirt's errors into ours.
struct Call<'a> {
    conn: &'a Connect,
    uri: &'a str,
}

impl Call<'_> {
    fn error(&self, e: VirtError) -> DriverError {
        let (uri, message) = (self.uri.to_string(), e.message().to_string());
        if self.conn.is_alive().unwrap_or(false) {
            DriverError::Libvirt { uri, message }
        } else {
            DriverError::Unreachable { uri, message }
        }
    }

    fn domain_error(&self, uuid: Uuid, e: VirtError) -> DriverError {
        if e.code() == Enum::Known(ErrorNumber::NoDomain) {
            // Some drivers (the test driver) say only "Domain not found", not which one.
            let message = match e.message() {
                message if message.contains(&uuid.to_string()) => message.to_string(),
                message => format!("{message} (uuid {uuid})"),
            };
            DriverError::NoSuchDomain { uri: self.uri.to_string(), uuid, message }
        } else {
            self.error(e)
        }
    }

    fn xml_error(&self, uuid: Uuid, source: XmlError) -> DriverError {
        DriverError::Xml { uri: self.uri.to_string(), uuid, source }
    }

    /// The domain's live definition (its persistent one when it is not running).
    fn live(&self, uuid: Uuid, domain: &Domain) -> Result<LiveDomain, DriverError> {
        let xml = domain.xml_desc(0).map_err(|e| self.domain_error(uuid, e))?;
        domain_xml::live_from_xml(&xml).map_err(|source| self.xml_error(uuid, source))
    }

    /// What a device change needs to know of the domain and to name it in its errors.
    fn vm(&self, uuid: Uuid, domain: &Domain) -> Result<VmRef, DriverError> {
        let name = domain.name().map_err(|e| self.domain_error(uuid, e))?;
        let persistent = domain.is_persistent().map_err(|e| self.domain_error(uuid, e))?;
        Ok(VmRef { uuid, name, persistent })
    }

    fn info(&self, domain: &Domain) -> Result<DomainInfo, DriverError> {
        let uuid = domain.uuid().map_err(|e| self.error(e))?;
        let fail = |e| self.domain_error(uuid, e);
        let name = domain.name().map_err(fail)?;
        let persistent = domain.is_persistent().map_err(fail)?;
        let (state, reason) = domain.state().map_err(fail)?;
        let state: DomainState = state.into();
        let guest_shutdown =
            matches!(reason, Enum::Known(DomainStateReason::Shutoff(Enum::Known(DomainShutoffReason::Shutdown))));
        let io_error =
            matches!(reason, Enum::Known(DomainStateReason::Paused(Enum::Known(DomainPausedReason::IOError))));
        Ok(DomainInfo { uuid, name, state, persistent, guest_shutdown, io_error })
    }
}

/// The domain a device change acts on.
struct VmRef {
    uuid: Uuid,
    name: String,
    persistent: bool,
}

impl VmRef {
    /// The running domain, and its persistent definition when it has one.
    fn flags(&self) -> u32 {
        if self.persistent {
            sys::VIR_DOMAIN_AFFECT_LIVE | sys::VIR_DOMAIN_AFFECT_CONFIG
        } else {
            sys::VIR_DOMAIN_AFFECT_LIVE
        }
    }

    fn failed(&self, call: &Call<'_>, action: &str, e: VirtError) -> DriverError {
        match call.domain_error(self.uuid, e) {
            DriverError::Libvirt { uri, message } => {
                DriverError::Device { uri, uuid: self.uuid, vm: self.name.clone(), action: action.to_string(), message }
            }
            other => other,
        }
    }

    fn refused(&self, call: &Call<'_>, action: &str, message: &str) -> DriverError {
        DriverError::Device {
            uri: call.uri.to_string(),
            uuid: self.uuid,
            vm: self.name.clone(),
            action: action.to_string(),
            message: message.to_string(),
        }
    }
}

/// A VM's name with its live and (when persistent) persistent definitions.
struct Definitions {
    vm: String,
    live: LiveDomain,
    config: Option<LiveDomain>,
}

/// The DIMMs to unplug for `mib` less memory: a set whose sizes add up to exactly `mib`, with
/// as few DIMMs as can do it and, among those, the latest plugged. None when no set does.
fn choose_dimms(dimms: &[LiveDimm], mib: u64) -> Option<Vec<LiveDimm>> {
    // A domain has at most 16 DIMM slots (MEMORY_SLOTS in domain_xml); trying every subset of
    // up to 20 DIMMs costs at most a million sums.
    let considered = &dimms[dimms.len().saturating_sub(20)..];
    let mut best: Option<(u32, u64, u32)> = None; // (count, sum of indices, mask)
    for mask in 1u32..(1u32 << considered.len()) {
        let picked = || (0..considered.len()).filter(move |i| mask & (1 << i) != 0);
        if picked().map(|i| considered[i].size_mib).sum::<u64>() != mib {
            continue;
        }
        let (count, recency) = (mask.count_ones(), picked().map(|i| i as u64).sum::<u64>());
        if best.is_none_or(|(c, r, _)| count < c || (count == c && recency > r)) {
            best = Some((count, recency, mask));
        }
    }
    let (_, _, mask) = best?;
    Some((0..considered.len()).rev().filter(|i| mask & (1 << i) != 0).map(|i| considered[i].clone()).collect())
}

/// Whether two readings of the live definition name the same DIMM.
fn same_dimm(a: &LiveDimm, b: &LiveDimm) -> bool {
    match (&a.alias, &b.alias) {
        (Some(x), Some(y)) => x == y,
        _ => a.slot == b.slot && a.base == b.base && a.size_mib == b.size_mib,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST_URI: &str = "test:///default";

    // test:///default connections that are open at the same time share one fake host, and the
    // tests run in parallel: each test uses VMs of its own and never counts the others'.
    fn vm(name: &str) -> DomainSpec {
        DomainSpec {
            uuid: Uuid::new_v4(),
            name: format!("{name}-{}", Uuid::new_v4().simple()),
            domain_type: "test".into(),
            memory_mib: 128,
            vcpus: 1,
            max_vcpus: None,
            max_memory_mib: None,
            disks: Vec::new(),
            scsi_controller: false,
            cdrom: None,
            nics: Vec::new(),
            kernel: None,
            serial_log: None,
            vnc_listen: None,
            seed: None,
            boot: Vec::new(),
        }
    }

    async fn state(hv: &Hypervisor, uuid: Uuid) -> Option<DomainState> {
        hv.domains().await.unwrap().into_iter().find(|d| d.uuid == uuid).map(|d| d.state)
    }

    #[tokio::test]
    async fn a_vm_goes_through_its_lifecycle() {
        let hv = Hypervisor::open(TEST_URI).await.unwrap();
        let spec = vm("lifecycle");
        hv.define(&spec).await.unwrap();
        let listed = hv.domains().await.unwrap().into_iter().find(|d| d.uuid == spec.uuid).unwrap();
        assert_eq!(
            listed,
            DomainInfo {
                uuid: spec.uuid,
                name: spec.name.clone(),
                state: DomainState::Shutoff,
                persistent: true,
                guest_shutdown: false,
                io_error: false
            }
        );

        hv.start(spec.uuid).await.unwrap();
        assert_eq!(state(&hv, spec.uuid).await, Some(DomainState::Running));
        hv.suspend(spec.uuid).await.unwrap();
        assert_eq!(state(&hv, spec.uuid).await, Some(DomainState::Paused));
        hv.resume(spec.uuid).await.unwrap();
        assert_eq!(state(&hv, spec.uuid).await, Some(DomainState::Running));
        hv.reboot(spec.uuid).await.unwrap();
        assert_eq!(state(&hv, spec.uuid).await, Some(DomainState::Running));
        hv.shutdown(spec.uuid).await.unwrap();
        assert_eq!(state(&hv, spec.uuid).await, Some(DomainState::Shutoff));

        hv.start(spec.uuid).await.unwrap();
        hv.destroy(spec.uuid).await.unwrap();
        assert_eq!(state(&hv, spec.uuid).await, Some(DomainState::Shutoff));
        hv.destroy(spec.uuid).await.expect("destroying a stopped VM is fine");

        hv.undefine(spec.uuid).await.unwrap();
        assert_eq!(state(&hv, spec.uuid).await, None);
        hv.undefine(spec.uuid).await.expect("undefining a missing VM is fine");
    }

    #[tokio::test]
    async fn redefining_a_vm_updates_it() {
        let hv = Hypervisor::open(TEST_URI).await.unwrap();
        let spec = vm("redefine");
        hv.define(&spec).await.unwrap();
        let bigger = DomainSpec { memory_mib: 512, vcpus: 2, ..spec.clone() };
        hv.define(&bigger).await.unwrap();
        assert_eq!(hv.domain_xml(spec.uuid).await.unwrap(), bigger);
        assert_eq!(hv.domains().await.unwrap().iter().filter(|d| d.uuid == spec.uuid).count(), 1);
        hv.undefine(spec.uuid).await.unwrap();
    }

    #[tokio::test]
    async fn errors_name_the_host_and_carry_libvirts_message() {
        let hv = Hypervisor::open(TEST_URI).await.unwrap();
        let unknown = Uuid::new_v4();
        let err = hv.start(unknown).await.unwrap_err();
        assert!(matches!(&err, DriverError::NoSuchDomain { uuid, .. } if *uuid == unknown), "{err:?}");
        let message = err.to_string();
        assert!(message.starts_with("libvirt at test:///default: Domain not found"), "{message}");
        assert!(message.contains(&unknown.to_string()), "{message}");

        let spec = vm("not-running");
        hv.define(&spec).await.unwrap();
        let err = hv.suspend(spec.uuid).await.unwrap_err();
        assert!(matches!(err, DriverError::Libvirt { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.starts_with("libvirt at test:///default: ") && message.contains("not running"), "{message}");
        assert!(!message.contains("code="), "libvirt's message only, not virt's debug dump: {message}");
        hv.undefine(spec.uuid).await.unwrap();
    }

    #[tokio::test]
    async fn libvirt_rejects_an_invalid_definition() {
        let hv = Hypervisor::open(TEST_URI).await.unwrap();
        let err = hv.define(&DomainSpec { domain_type: "xen-on-mars".into(), ..vm("invalid") }).await.unwrap_err();
        assert!(matches!(err, DriverError::Libvirt { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn the_test_driver_refuses_to_migrate() {
        let hv = Hypervisor::open(TEST_URI).await.unwrap();
        assert!(hv.is_test_driver() && !hv.can_migrate());
        let spec = vm("migrate");
        hv.define(&spec).await.unwrap();
        hv.start(spec.uuid).await.unwrap();
        let err = hv
            .migrate(spec.uuid, "qemu+tcp://10.213.0.3/system", None, MigrationOptions::default(), None)
            .await
            .unwrap_err();
        assert!(matches!(err, DriverError::CannotMigrate { .. }), "{err:?}");
        assert!(err.to_string().ends_with("the test driver cannot migrate VMs"), "{err}");
        assert_eq!(state(&hv, spec.uuid).await, Some(DomainState::Running));
        hv.destroy(spec.uuid).await.unwrap();
        hv.undefine(spec.uuid).await.unwrap();
    }

    #[tokio::test]
    async fn facts_describe_the_host() {
        let hv = Hypervisor::open(TEST_URI).await.unwrap();
        let facts = hv.facts().await.unwrap();
        assert!(facts.cpus > 0 && facts.memory_mib > 0, "{facts:?}");
        assert_eq!((facts.libvirt_uri.as_str(), facts.domain_type), (TEST_URI, DomainType::Test));
        assert!(hv.free_memory_mib().await.unwrap() > 0);
        assert_eq!(Hypervisor::open(TEST_URI).await.unwrap().facts().await.unwrap(), facts);
    }

    fn dimm(alias: &str, size_mib: u64) -> LiveDimm {
        LiveDimm { alias: Some(alias.into()), size_mib, node: Some(0), slot: None, base: None }
    }

    #[test]
    fn memory_unplug_picks_the_fewest_latest_dimms_that_add_up() {
        let dimms = [dimm("dimm0", 128), dimm("dimm1", 256), dimm("dimm2", 128), dimm("dimm3", 512)];
        let aliases = |mib| {
            choose_dimms(&dimms, mib).map(|chosen| chosen.into_iter().filter_map(|d| d.alias).collect::<Vec<_>>())
        };
        assert_eq!(aliases(128), Some(vec!["dimm2".to_string()]), "the latest of two equal DIMMs");
        assert_eq!(aliases(256), Some(vec!["dimm1".to_string()]), "one DIMM rather than two of 128");
        assert_eq!(aliases(384), Some(vec!["dimm2".to_string(), "dimm1".to_string()]));
        assert_eq!(
            aliases(1024),
            Some(vec!["dimm3".to_string(), "dimm2".to_string(), "dimm1".to_string(), "dimm0".to_string()])
        );
        assert_eq!(aliases(64), None);
        assert_eq!(aliases(2048), None);
        assert_eq!(aliases(0), None, "no memory is no unplug");
        assert_eq!(choose_dimms(&[], 128), None);
    }

    fn hot_pluggable(name: &str) -> DomainSpec {
        DomainSpec {
            vcpus: 1,
            max_vcpus: Some(4),
            max_memory_mib: Some(1024),
            scsi_controller: true,
            cdrom: Some(domain_xml::CdromSpec { path: None }),
            ..vm(name)
        }
    }

    #[tokio::test]
    async fn vcpus_change_live_and_in_the_persistent_definition() {
        let hv = Hypervisor::open(TEST_URI).await.unwrap();
        let spec = hot_pluggable("vcpus");
        hv.define(&spec).await.unwrap();
        hv.start(spec.uuid).await.unwrap();
        let live = hv.live(spec.uuid).await.unwrap();
        assert_eq!((live.vcpus, live.max_vcpus, live.max_memory_mib, live.memory_mib), (1, 4, Some(1024), 128));
        assert!(live.scsi_controller, "{live:?}");

        hv.set_vcpus(spec.uuid, 3).await.unwrap();
        assert_eq!(hv.live(spec.uuid).await.unwrap().vcpus, 3);
        assert_eq!(hv.domain_xml(spec.uuid).await.unwrap().vcpus, 3, "the next boot has them too");

        let err = hv.set_vcpus(spec.uuid, 5).await.unwrap_err();
        assert!(matches!(&err, DriverError::Device { vm, .. } if *vm == spec.name), "{err:?}");
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("libvirt at test:///default: VM {}: cannot set 5 vCPUs: ", spec.name)),
            "{message}"
        );
        hv.destroy(spec.uuid).await.unwrap();
        hv.undefine(spec.uuid).await.unwrap();
    }

    #[tokio::test]
    async fn device_errors_name_the_vm_and_the_device_and_carry_libvirts_message() {
        let hv = Hypervisor::open(TEST_URI).await.unwrap();
        let spec = vm("devices");
        hv.define(&spec).await.unwrap();
        hv.start(spec.uuid).await.unwrap();
        let prefix = format!("libvirt at test:///default: VM {}: cannot ", spec.name);

        // The test driver has no device hot-plug: its refusal is the libvirt message carried.
        let disk = DiskSpec {
            path: "/var/lib/corral/b.qcow2".into(),
            target: "vdb".into(),
            format: "qcow2".into(),
            bus: DiskBus::Virtio,
            serial: None,
        };
        let err = hv.plug_disk(spec.uuid, &disk).await.unwrap_err();
        assert!(matches!(err, DriverError::Device { .. }), "{err:?}");
        assert!(err.to_string().starts_with(&format!("{prefix}plug disk vdb: ")), "{err}");
        assert!(err.to_string().contains("not supported"), "{err}");

        // What Corral checks itself, before libvirt is asked.
        let scsi = DiskSpec { target: "sda".into(), bus: DiskBus::Scsi, ..disk };
        let err = hv.plug_disk(spec.uuid, &scsi).await.unwrap_err();
        assert_eq!(err.to_string(), format!("{prefix}plug disk sda: it has no virtio-scsi controller for a SCSI disk"));
        let err = hv.change_cd(spec.uuid, Some("/iso/tools.iso")).await.unwrap_err();
        assert_eq!(err.to_string(), format!("{prefix}change the CD-ROM media: it has no CD-ROM drive"));
        let err = hv.unplug_memory(spec.uuid, 128).await.unwrap_err();
        assert_eq!(err.to_string(), format!("{prefix}unplug 128 MiB of memory: it has no hot-plugged DIMMs"));

        // A device in neither definition is already unplugged.
        hv.unplug_disk(spec.uuid, "vdz").await.unwrap();
        hv.unplug_nic(spec.uuid, "52:54:00:00:00:01").await.unwrap();

        let err = hv.plug_memory(Uuid::new_v4(), 128).await.unwrap_err();
        assert!(matches!(err, DriverError::NoSuchDomain { .. }), "{err:?}");
        hv.destroy(spec.uuid).await.unwrap();
        hv.undefine(spec.uuid).await.unwrap();
    }

    #[tokio::test]
    async fn an_unreachable_libvirt_is_reported_as_such() {
        let err = Hypervisor::open("qemu+tcp://127.0.0.1:1/system").await.unwrap_err();
        assert!(matches!(err, DriverError::Unreachable { .. }), "{err:?}");
        assert!(err.to_string().starts_with("cannot connect to libvirt at qemu+tcp://127.0.0.1:1/system: "), "{err}");
    }

    /// Hot-plug against real QEMU, run by hand: a TCG guest (deploy/sandbox/guest, whose
    /// "CORRAL-GUEST-SEES ..." lines on the serial console say what it sees) gets each device
    /// plugged, changed and unplugged, and each step's outcome is printed. Needs HP_PROBE_URI
    /// (a libvirt with QEMU), HP_PROBE_DIR (a scratch directory), HP_PROBE_KERNEL and
    /// HP_PROBE_INITRD; HP_PROBE_DEST_URI adds a live migration in the middle. Uses only domains
    /// named hp-probe-*.
    #[tokio::test]
    #[ignore = "needs a libvirt with QEMU and a guest kernel; see the comment"]
    async fn hot_plug_on_real_qemu() {
        let env = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
        let (uri, dir) = (env("HP_PROBE_URI"), std::path::PathBuf::from(env("HP_PROBE_DIR")));
        let dest_uri = std::env::var("HP_PROBE_DEST_URI").ok();
        let file = |name: &str| dir.join(name).display().to_string();
        for (name, mib) in [("vda.img", 64), ("vdb.img", 32), ("sda.img", 16), ("cd.iso", 2)] {
            std::fs::File::create(file(name)).unwrap().set_len(mib * MIB).unwrap();
        }
        let console = file("console.log");
        let _ = std::fs::remove_file(&console);
        let spec = DomainSpec {
            uuid: Uuid::new_v4(),
            name: format!("hp-probe-{}", std::process::id()),
            domain_type: "qemu".into(),
            memory_mib: 256,
            vcpus: 1,
            max_vcpus: Some(4),
            max_memory_mib: Some(1024),
            disks: vec![DiskSpec {
                path: file("vda.img"),
                target: "vda".into(),
                format: "raw".into(),
                bus: DiskBus::Virtio,
                serial: Some("hp-vda".into()),
            }],
            scsi_controller: true,
            cdrom: Some(domain_xml::CdromSpec { path: None }),
            nics: Vec::new(),
            kernel: Some(domain_xml::KernelBoot {
                kernel: env("HP_PROBE_KERNEL"),
                initrd: Some(env("HP_PROBE_INITRD")),
                // More than 8 possible CPUs: see deploy/sandbox/guest/build.sh on IPIs under TCG.
                cmdline: "console=ttyS0 possible_cpus=16".into(),
            }),
            serial_log: Some(console.clone()),
            vnc_listen: None,
            seed: None,
            boot: Vec::new(),
        };
        let mut probe =
            Probe { hv: Hypervisor::open(&uri).await.unwrap(), uuid: spec.uuid, console, failures: Vec::new() };
        probe.run(&spec, dest_uri.as_deref()).await;
        // Clean up whatever happened: the domain, on whichever host has it, and the files.
        for uri in std::iter::once(uri.as_str()).chain(dest_uri.as_deref()) {
            if let Ok(hv) = Hypervisor::open(uri).await {
                let _ = hv.destroy(spec.uuid).await;
                let _ = hv.undefine(spec.uuid).await;
            }
        }
        for name in ["vda.img", "vdb.img", "sda.img", "cd.iso", "console.log"] {
            let _ = std::fs::remove_file(file(name));
        }
        assert!(probe.failures.is_empty(), "failed steps: {:#?}", probe.failures);
    }

    struct Probe {
        hv: Hypervisor,
        uuid: Uuid,
        console: String,
        failures: Vec<String>,
    }

    impl Probe {
        async fn run(&mut self, spec: &DomainSpec, dest_uri: Option<&str>) {
            let uuid = self.uuid;
            let path = |name: &str| spec.disks[0].path.replace("vda.img", name);
            let r = self.hv.define(spec).await;
            self.step("define", r).await;
            let r = self.hv.start(uuid).await;
            self.step("start", r).await;
            let booted = self.guest("boots", |s| seen(s, "cpus") == "1" && listed(s, "disks", "vda")).await;
            let boot_mib: u64 = seen(&booted, "mem_mib").parse().unwrap_or(0);
            let mem_mib = |s: &str| seen(s, "mem_mib").parse::<u64>().ok();
            println!("live at boot: {:#?}", self.hv.live(uuid).await);

            let vdb = DiskSpec {
                path: path("vdb.img"),
                target: "vdb".into(),
                format: "raw".into(),
                bus: DiskBus::Virtio,
                serial: Some("hp-vdb".into()),
            };
            let sda = DiskSpec {
                path: path("sda.img"),
                target: "sda".into(),
                bus: DiskBus::Scsi,
                serial: Some("hp-sda".into()),
                ..vdb.clone()
            };
            let r = self.hv.plug_disk(uuid, &vdb).await;
            self.step("plug_disk virtio vdb", r).await;
            self.guest("sees vdb", |s| listed(s, "disks", "vdb")).await;
            let r = self.hv.plug_disk(uuid, &sda).await;
            self.step("plug_disk scsi sda", r).await;
            self.guest("sees sda", |s| listed(s, "disks", "sda")).await;
            let r = self.hv.resize_disk(uuid, "vdb", 48).await;
            self.step("resize_disk vdb 48 MiB", r).await;
            let size = std::fs::metadata(&vdb.path).map(|m| m.len()).unwrap_or(0);
            if size != 48 * MIB {
                self.failures.push(format!("vdb's image has {size} bytes after the resize"));
            }

            let r = self.hv.change_cd(uuid, Some(&path("cd.iso"))).await;
            self.step("change_cd insert", r).await;
            self.guest("has a CD", |s| seen(s, "cd") == "present").await;

            let r = self.hv.plug_memory(uuid, 128).await;
            self.step("plug_memory 128", r).await;
            let r = self.hv.plug_memory(uuid, 256).await;
            self.step("plug_memory 256", r).await;
            self.guest("has 384 MiB more", |s| mem_mib(s) == Some(boot_mib + 384)).await;

            let r = self.hv.set_vcpus(uuid, 3).await;
            self.step("set_vcpus 3", r).await;
            self.guest("has 3 CPUs", |s| seen(s, "cpus") == "3").await;

            // NICs: no libvirt network here, so a user-mode NIC stands in for a network one;
            // unplug_nic finds it by its MAC like any other.
            let r =
                self.hv.plug_nic(uuid, &NicSpec { network: "default".into(), mac: "52:54:00:4e:00:01".into() }).await;
            println!("     plug_nic on network 'default' (none here): {}", outcome(&r));
            let user_nic =
                "<interface type='user'><mac address='52:54:00:4e:00:02'/><model type='virtio'/></interface>";
            let r = self.hv.attach(uuid, "plug a user-mode NIC".into(), user_nic.into()).await;
            self.step("plug a user-mode NIC", r).await;
            self.guest("sees the NIC", |s| listed(s, "macs", "52:54:00:4e:00:02")).await;

            let live = self.hv.live(uuid).await;
            println!("live after plugging: {live:#?}");
            println!("live XML after plugging:\n{}", self.xml(0).await);
            println!("persistent after plugging: {:#?}", self.hv.domain_xml(uuid).await);
            println!("persistent XML after plugging:\n{}", self.xml(sys::VIR_DOMAIN_XML_INACTIVE).await);

            if let (Some(dest_uri), Ok(live)) = (dest_uri, &live) {
                let r =
                    self.hv.migrate(uuid, dest_uri, Some("tcp://127.0.0.1"), MigrationOptions::default(), None).await;
                self.step("migrate with the plugged devices", r).await;
                self.hv = Hypervisor::open(dest_uri).await.unwrap();
                let there = self.hv.live(uuid).await;
                println!("live on the destination: {there:#?}");
                println!("persistent on the destination: {:#?}", self.hv.domain_xml(uuid).await);
                let shape = |l: &LiveDomain| (l.disks.clone(), l.dimms.len(), l.vcpus, l.nics.len(), l.memory_mib);
                if there.as_ref().map(shape).ok() != Some(shape(live)) {
                    self.failures.push("the destination's live definition differs".into());
                }
                self.guest("still runs on the destination", |s| listed(s, "disks", "vdb")).await;
            }

            let r = self.hv.change_cd(uuid, None).await;
            self.step("change_cd eject", r).await;
            self.guest("finds no CD", |s| seen(s, "cd") == "empty").await;
            let r = self.hv.unplug_nic(uuid, "52:54:00:4e:00:02").await;
            self.step("unplug_nic", r).await;
            self.guest("lost the NIC", |s| !listed(s, "macs", "52:54:00:4e:00:02")).await;
            let r = self.hv.unplug_disk(uuid, "vdb").await;
            self.step("unplug_disk virtio vdb", r).await;
            self.guest("lost vdb", |s| !listed(s, "disks", "vdb")).await;
            let r = self.hv.unplug_disk(uuid, "sda").await;
            self.step("unplug_disk scsi sda", r).await;
            self.guest("lost sda", |s| !listed(s, "disks", "sda")).await;
            let r = self.hv.unplug_memory(uuid, 100).await;
            println!("     unplug_memory 100 (no such set): {}", outcome(&r));
            let r = self.hv.unplug_memory(uuid, 384).await;
            self.step("unplug_memory 384 (both DIMMs)", r).await;
            self.guest("is back to its boot memory", |s| mem_mib(s) == Some(boot_mib)).await;

            // A guest that cannot answer: paused, it never acknowledges the unplug.
            let r = self.hv.plug_disk(uuid, &vdb).await;
            self.step("plug_disk vdb again", r).await;
            self.guest("sees vdb again", |s| listed(s, "disks", "vdb")).await;
            let r = self.hv.suspend(uuid).await;
            self.step("suspend", r).await;
            let r = self.hv.unplug_disk(uuid, "vdb").await;
            println!("     unplug_disk while paused: {}", outcome(&r));
            if !matches!(r, Err(DriverError::NotReleased { .. })) {
                self.failures.push(format!("unplug while paused: {r:?}"));
            }
            let in_config = |spec: DomainSpec| spec.disks.iter().any(|d| d.target == "vdb");
            println!(
                "     vdb still in the persistent definition: {:?}",
                self.hv.domain_xml(uuid).await.map(in_config)
            );
            let r = self.hv.resume(uuid).await;
            self.step("resume", r).await;
            let r = self.hv.unplug_disk(uuid, "vdb").await;
            self.step("unplug_disk vdb once resumed", r).await;
            self.guest("lost vdb", |s| !listed(s, "disks", "vdb")).await;
            println!("     vdb in the persistent definition: {:?}", self.hv.domain_xml(uuid).await.map(in_config));

            let r = self.hv.set_vcpus(uuid, 2).await;
            self.step("set_vcpus 2 (unplug one)", r).await;
            self.guest("has 2 CPUs", |s| seen(s, "cpus") == "2").await;
            println!("     persistent vCPUs: {:?}", self.hv.domain_xml(uuid).await.map(|spec| spec.vcpus));

            println!("live at the end: {:#?}", self.hv.live(uuid).await);
            println!("persistent at the end: {:#?}", self.hv.domain_xml(uuid).await);
        }

        async fn step(&mut self, what: &str, result: Result<(), DriverError>) {
            match result {
                Ok(()) => println!("OK   {what}"),
                Err(e) => {
                    println!("FAIL {what}: {e}");
                    self.failures.push(format!("{what}: {e}"));
                }
            }
        }

        /// Waits (up to 30 s) until the guest's latest report satisfies `ok`, and returns it.
        async fn guest(&mut self, what: &str, ok: impl Fn(&str) -> bool) -> String {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut last = String::new();
            while Instant::now() < deadline {
                let log = std::fs::read_to_string(&self.console).unwrap_or_default();
                // Kernel messages may share a line with the guest's report.
                let sees = log.lines().rev().find_map(|l| l.find("CORRAL-GUEST-SEES").map(|at| &l[at..]));
                last = sees.unwrap_or_default().to_string();
                if ok(&last) {
                    println!("     guest {what}: {last}");
                    return last;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            println!("FAIL guest {what}: {last}");
            self.failures.push(format!("guest {what}: {last}"));
            last
        }

        async fn xml(&self, flags: u32) -> String {
            let uuid = self.uuid;
            self.hv
                .with_domain(uuid, move |call, domain| domain.xml_desc(flags).map_err(|e| call.domain_error(uuid, e)))
                .await
                .unwrap_or_else(|e| e.to_string())
        }
    }

    fn outcome(result: &Result<(), DriverError>) -> String {
        result.as_ref().map_or_else(|e| e.to_string(), |()| "Ok".to_string())
    }

    /// The value of `key` in a "CORRAL-GUEST-SEES disks=vda,vdb cpus=2 ..." line.
    fn seen<'a>(line: &'a str, key: &str) -> &'a str {
        line.split_whitespace().find_map(|word| word.strip_prefix(key)?.strip_prefix('=')).unwrap_or_default()
    }

    fn listed(line: &str, key: &str, item: &str) -> bool {
        seen(line, key).split(',').any(|x| x == item)
    }
}

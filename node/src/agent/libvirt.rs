//! The hypervisor driver: the only code that calls the `virt` crate. libvirt calls are blocking
//! FFI, so every one runs on tokio's blocking pool and never on an async worker; nothing outside
//! this module may hold a libvirt connection or build domain XML by hand.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use corral_raft::model::{DomainType, HostFacts};
use uuid::Uuid;
use virt::connect::Connect;
use virt::domain::{Domain, DomainPausedReason, DomainShutoffReason, DomainState as VirtState, DomainStateReason};
use virt::enumutil::Enum;
use virt::error::{Error as VirtError, ErrorNumber};
use virt::sys;

use super::domain_xml::{self, DomainSpec, XmlError};

const MIB: u64 = 1024 * 1024;

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
    pub async fn migrate(
        &self,
        uuid: Uuid,
        dest_uri: &str,
        migrate_uri: Option<&str>,
        options: MigrationOptions,
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
            domain
                .migrate_to_uri2(Some(&dest_uri), migrate_uri.as_deref(), None, flags, None, bandwidth)
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
            disks: Vec::new(),
            nics: Vec::new(),
            kernel: None,
            serial_log: None,
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
        let err =
            hv.migrate(spec.uuid, "qemu+tcp://10.213.0.3/system", None, MigrationOptions::default()).await.unwrap_err();
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

    #[tokio::test]
    async fn an_unreachable_libvirt_is_reported_as_such() {
        let err = Hypervisor::open("qemu+tcp://127.0.0.1:1/system").await.unwrap_err();
        assert!(matches!(err, DriverError::Unreachable { .. }), "{err:?}");
        assert!(err.to_string().starts_with("cannot connect to libvirt at qemu+tcp://127.0.0.1:1/system: "), "{err}");
    }
}

//! When each field of a VM takes effect on a running VM (oVirt's `@EditableVmField`): at once,
//! by hot-plug into the running domain, or at its next run. Apply decides by this table (in
//! corral-raft), and `corral vm edit --help` and the README print it; it lives here, in the crate
//! both share.

/// When a change to a running VM takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applies {
    /// The configuration only: nothing in the running domain depends on it.
    Now,
    /// Plugged into the running domain (within its limits), unless `--next-run` is given.
    HotPlug,
    /// Only when the VM next starts; the pending value is shown by `vm show --next-run`.
    NextRun,
}

impl Applies {
    pub fn word(self) -> &'static str {
        match self {
            Applies::Now => "at once",
            Applies::HotPlug => "hot-plug",
            Applies::NextRun => "next run",
        }
    }
}

/// One editable field of a VM.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// The `vm edit` flag (or command) that sets it.
    pub flag: &'static str,
    pub applies: Applies,
    pub note: &'static str,
}

macro_rules! fields {
    ($($id:ident = $flag:literal, $applies:ident, $note:literal;)*) => {
        /// Every editable field of a VM.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum VmField { $($id,)* }
        impl VmField {
            pub const ALL: &'static [VmField] = &[$(VmField::$id,)*];
            pub fn def(self) -> Field {
                match self { $(VmField::$id => Field { flag: $flag, applies: Applies::$applies, note: $note },)* }
            }
        }
    };
}

fields! {
    Name = "--name", Now, "";
    Description = "--description", Now, "";
    Comment = "--comment", Now, "";
    Ha = "--ha, --ha-priority", Now, "";
    ResumeBehavior = "--resume-behavior", Now, "";
    MigrationSettings = "--auto-converge, --compression, --max-downtime, --bandwidth", Now, "used by its next migration";
    HostTags = "--host-tags", Now, "placement rules: checked at its next placement";
    PinnedHosts = "--pin", Now, "placement rules: checked at its next placement";
    MigrationPolicy = "--migration", Now, "";
    DeleteProtected = "--delete-protected", Now, "";
    Memory = "--memory", HotPlug, "in 128 MiB DIMMs up to --max-memory; only hot-plugged memory is unplugged; a host without room: migrated first";
    Vcpus = "--vcpus", HotPlug, "added up to --max-vcpus (a host without room: migrated first); removed at the next run";
    Cdrom = "vm cd --iso | --eject", HotPlug, "the medium of its CD-ROM drive";
    Disks = "vm disk add | attach | plug | unplug", HotPlug, "virtio or virtio-scsi";
    Nics = "vm nic add | plug | unplug", HotPlug, "virtio";
    Offering = "--offering", HotPlug, "its vCPUs and memory, as --vcpus and --memory; HA at once";
    MaxMemory = "--max-memory", NextRun, "default 4x memory from 256 MiB on, else none";
    MaxVcpus = "--max-vcpus", NextRun, "default the largest host's CPUs";
    DomainType = "--domain-type", NextRun, "";
    Os = "--os", NextRun, "one of `corral vm edit --help`'s OS names";
    Stateless = "--stateless", NextRun, "its disks are saved at each start and brought back at each stop";
    Boot = "--boot", NextRun, "cdrom, disk, network in order, read when it starts";
}

impl VmField {
    pub fn applies(self) -> Applies {
        self.def().applies
    }
}

/// The table as `vm edit --help` and the README print it.
pub fn help() -> String {
    let mut out = String::from("When a change to a running VM takes effect:\n");
    for f in VmField::ALL.iter().map(|f| f.def()) {
        let note = if f.note.is_empty() { String::new() } else { format!(" ({})", f.note) };
        out.push_str(&format!("  {:<10} {}{note}\n", f.applies.word(), f.flag));
    }
    out.push_str(&format!(
        "A hot-plug with --next-run, or one the running VM has no room for, waits for its next run.\n\
         Operating systems: {}\n",
        OS_NAMES.join(", ")
    ));
    out
}

/// The guest operating systems a VM may name, as oVirt names them (its osinfo ids).
pub const OS_NAMES: &[&str] = &[
    "other",
    "other_linux",
    "rhel_6x64",
    "rhel_7x64",
    "rhel_8x64",
    "rhel_9x64",
    "centos_7x64",
    "centos_8x64",
    "debian_10",
    "debian_11",
    "debian_12",
    "ubuntu_20_04",
    "ubuntu_22_04",
    "ubuntu_24_04",
    "sles_12",
    "sles_15",
    "freebsd",
    "freebsdx64",
    "windows_10",
    "windows_10x64",
    "windows_11",
    "windows_2016x64",
    "windows_2019x64",
    "windows_2022",
    "other_linux_ppc64",
];

/// Whether `os` is an OS name the cluster knows.
pub fn known_os(os: &str) -> bool {
    OS_NAMES.contains(&os)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_is_in_the_table_once_and_the_help_prints_it() {
        let help = help();
        for f in VmField::ALL {
            let d = f.def();
            assert_eq!(VmField::ALL.iter().filter(|g| g.def().flag == d.flag).count(), 1, "{}", d.flag);
            assert!(help.contains(d.flag), "{}", d.flag);
        }
        assert_eq!(VmField::Memory.applies(), Applies::HotPlug);
        assert_eq!(VmField::Os.applies(), Applies::NextRun);
        assert_eq!(VmField::Description.applies(), Applies::Now);
        assert!(help.contains("rhel_9x64"));
    }

    #[test]
    fn os_names_are_ovirts() {
        assert!(known_os("other_linux") && known_os("windows_2022"));
        assert!(!known_os("banana"));
        assert!(known_os("other_linux"));
    }
}

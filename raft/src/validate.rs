//! Field rules for user input. The API layer checks them before proposing, and `apply`
//! checks them again so the replicated state can never hold a value that breaks them.
//! Every refusal names the field and the rule.

use crate::command::{VmChanges, VmSpec};
use crate::error::{quote, ClusterError};

pub const MAX_NAME_LEN: usize = 63;
pub const MAX_MEMORY_MIB: u64 = 16 * 1024 * 1024; // 16 TiB
pub const MAX_VCPUS: u32 = 1024;
pub const MAX_TEXT_LEN: usize = 4096;
/// Tags per host or VM, and hosts per pin list.
pub const MAX_TAGS: usize = 32;
pub const MAX_CPU_OVERCOMMIT: u32 = 64;
/// Devices per VM. libvirt and QEMU take more, but no guest needs more than these, and each
/// adds to the VM's record and OVF document on every host.
pub const MAX_NICS: usize = 16;
pub const MAX_DISKS: usize = 16;
/// A path (kernel, initrd, CD-ROM image) or a kernel command line.
pub const MAX_PATH_LEN: usize = 1024;

/// Names of VMs, hosts and clusters: 1 to 63 of `a-z`, `0-9`, `-`, not starting or ending
/// with `-` (a DNS label, so a name can be a hostname).
pub fn name(field: &str, value: &str) -> Result<(), ClusterError> {
    let rule = |what: &str| ClusterError::invalid(field, format!("{what} (got '{}')", quote(value)));
    if value.is_empty() {
        return Err(ClusterError::invalid(field, "must not be empty"));
    }
    if value.chars().count() > MAX_NAME_LEN {
        return Err(ClusterError::invalid(
            field,
            format!("must be at most {MAX_NAME_LEN} characters (got {})", value.chars().count()),
        ));
    }
    if !value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
        return Err(rule("may only contain a-z, 0-9 and '-'"));
    }
    if value.starts_with('-') || value.ends_with('-') {
        return Err(rule("must not start or end with '-'"));
    }
    Ok(())
}

pub fn memory_mib(value: u64) -> Result<(), ClusterError> {
    if value == 0 {
        return Err(ClusterError::invalid("memory", "must be at least 1 MiB"));
    }
    if value > MAX_MEMORY_MIB {
        return Err(ClusterError::invalid("memory", format!("must be at most {MAX_MEMORY_MIB} MiB (got {value} MiB)")));
    }
    Ok(())
}

pub fn vcpus(value: u32) -> Result<(), ClusterError> {
    if value == 0 {
        return Err(ClusterError::invalid("vcpus", "must be at least 1"));
    }
    if value > MAX_VCPUS {
        return Err(ClusterError::invalid("vcpus", format!("must be at most {MAX_VCPUS} (got {value})")));
    }
    Ok(())
}

pub fn text(field: &str, value: &str) -> Result<(), ClusterError> {
    if value.chars().count() > MAX_TEXT_LEN {
        return Err(ClusterError::invalid(field, format!("must be at most {MAX_TEXT_LEN} characters")));
    }
    if value.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(ClusterError::invalid(field, "must not contain control characters"));
    }
    Ok(())
}

pub fn vm_spec(spec: &VmSpec) -> Result<(), ClusterError> {
    name("name", &spec.name)?;
    memory_mib(spec.memory_mib)?;
    vcpus(spec.vcpus)?;
    text("description", &spec.description)?;
    text("comment", &spec.comment)
}

/// The device and path limits of a new or imported VM. Checked where requests enter (the API),
/// not in apply: entries that an older build accepted must apply alike on every build.
pub fn vm_limits(spec: &VmSpec) -> Result<(), ClusterError> {
    nics(&spec.nics)?;
    if let Some(b) = &spec.boot {
        path("kernel", &b.kernel)?;
        if let Some(i) = &b.initrd {
            path("initrd", i)?;
        }
        path("cmdline", &b.cmdline)?;
    }
    Ok(())
}

/// A VM's NICs: at most [`MAX_NICS`], each on a network named by the name rule.
pub fn nics(nics: &[crate::model::Nic]) -> Result<(), ClusterError> {
    if nics.len() > MAX_NICS {
        return Err(ClusterError::invalid("nic", format!("at most {MAX_NICS} NICs per VM (got {})", nics.len())));
    }
    nics.iter().try_for_each(|n| name("nic", &n.network))
}

/// The number of a VM's disks.
pub fn disk_count(n: usize) -> Result<(), ClusterError> {
    if n > MAX_DISKS {
        return Err(ClusterError::invalid("disk", format!("at most {MAX_DISKS} disks per VM (got {n})")));
    }
    Ok(())
}

/// The largest disk a VM or the storage domain gets, in MiB (64 TiB; qemu-img itself stops at
/// 8 EiB, and a size past that is a mistake, not a disk).
pub const MAX_DISK_MIB: u64 = 64 << 20;

/// A disk's size in MiB: at least 1 MiB, at most [`MAX_DISK_MIB`].
pub fn disk_size(field: &str, size_mib: u64) -> Result<(), ClusterError> {
    if size_mib == 0 {
        return Err(ClusterError::invalid(field, "must be at least 1 MiB"));
    }
    if size_mib > MAX_DISK_MIB {
        return Err(ClusterError::invalid(field, format!("at most {MAX_DISK_MIB} MiB (64 TiB; got {size_mib} MiB)")));
    }
    Ok(())
}

/// A file path or kernel command line: at most [`MAX_PATH_LEN`] characters, none a control one.
pub fn path(field: &str, value: &str) -> Result<(), ClusterError> {
    if value.chars().count() > MAX_PATH_LEN {
        return Err(ClusterError::invalid(
            field,
            format!("must be at most {MAX_PATH_LEN} characters (got {})", value.chars().count()),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(ClusterError::invalid(field, "must not contain control characters"));
    }
    Ok(())
}

/// A list of tags (or host names): each a name, at most `MAX_TAGS` of them.
pub fn names(field: &str, values: &[String]) -> Result<(), ClusterError> {
    if values.len() > MAX_TAGS {
        return Err(ClusterError::invalid(field, format!("at most {MAX_TAGS} (got {})", values.len())));
    }
    values.iter().try_for_each(|v| name(field, v))
}

pub fn cpu_overcommit(value: u32) -> Result<(), ClusterError> {
    if !(1..=MAX_CPU_OVERCOMMIT).contains(&value) {
        return Err(ClusterError::invalid(
            "cpu_overcommit",
            format!("must be 1 to {MAX_CPU_OVERCOMMIT} vCPUs per physical CPU (got {value})"),
        ));
    }
    Ok(())
}

/// The same names in the same order, each once.
pub fn dedup(values: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(values.len());
    for v in values {
        if !out.contains(v) {
            out.push(v.clone());
        }
    }
    out
}

/// A guest OS name as oVirt spells them: `other_linux`, `rhel_9x64`, `windows_2022`.
pub fn os(value: &str) -> Result<(), ClusterError> {
    if value.is_empty()
        || value.len() > 64
        || !value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
    {
        return Err(ClusterError::invalid(
            "os",
            format!("must be an OS name such as other_linux or rhel_9x64 (got '{}')", quote(value)),
        ));
    }
    Ok(())
}

pub fn vm_changes(changes: &VmChanges) -> Result<(), ClusterError> {
    if changes.is_empty() {
        return Err(ClusterError::invalid("edit", "nothing to change: give at least one field"));
    }
    if let Some(v) = &changes.name {
        name("name", v)?;
    }
    if let Some(v) = changes.memory_mib {
        memory_mib(v)?;
    }
    if let Some(v) = changes.vcpus {
        vcpus(v)?;
    }
    if let Some(v) = &changes.description {
        text("description", v)?;
    }
    if let Some(v) = &changes.comment {
        text("comment", v)?;
    }
    if let Some(v) = &changes.host_tags {
        names("host_tags", v)?;
    }
    if let Some(v) = &changes.pinned_hosts {
        names("pinned_hosts", v)?;
    }
    if let Some(v) = &changes.os {
        os(v)?;
    }
    Ok(())
}

/// A cloud-init seed's bounds (the API also parses its YAML before proposing it): each document
/// at most [`MAX_CLOUD_INIT_BYTES`](crate::model::MAX_CLOUD_INIT_BYTES), at most
/// [`MAX_SSH_KEYS`](crate::model::MAX_SSH_KEYS) one-line keys, the host name a name.
pub fn cloud_init(c: &crate::model::CloudInit) -> Result<(), ClusterError> {
    use crate::model::{MAX_CLOUD_INIT_BYTES, MAX_SSH_KEYS};
    let doc = |field: &str, v: &str| {
        if v.len() > MAX_CLOUD_INIT_BYTES {
            return Err(ClusterError::invalid(
                field,
                format!("must be at most {MAX_CLOUD_INIT_BYTES} bytes (got {})", v.len()),
            ));
        }
        if v.chars().any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r') {
            return Err(ClusterError::invalid(field, "must not contain control characters"));
        }
        Ok(())
    };
    doc("cloud_init", &c.user_data)?;
    if c.user_data.trim().is_empty() {
        return Err(ClusterError::invalid("cloud_init", "the user-data document is empty"));
    }
    if let Some(n) = &c.network_config {
        doc("network_config", n)?;
    }
    if c.ssh_keys.len() > MAX_SSH_KEYS {
        return Err(ClusterError::invalid(
            "ssh_key",
            format!("at most {MAX_SSH_KEYS} keys (got {})", c.ssh_keys.len()),
        ));
    }
    for k in &c.ssh_keys {
        let mut words = k.split_whitespace();
        let (kind, body) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let known = kind.starts_with("ssh-") || kind.starts_with("ecdsa-") || kind.starts_with("sk-");
        if !known || body.is_empty() || k.len() > 16 * 1024 || k.chars().any(char::is_control) {
            return Err(ClusterError::invalid(
                "ssh_key",
                format!("must be one public key line such as 'ssh-ed25519 AAAA... user@host' (got '{}')", quote(k)),
            ));
        }
    }
    if let Some(h) = &c.hostname {
        name("hostname", h)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_dns_label_rule() {
        for ok in ["web1", "a", "db-primary-2", &"x".repeat(63)] {
            assert_eq!(name("name", ok), Ok(()), "{ok}");
        }
        let cases = [
            ("", "name: must not be empty"),
            ("Web1", "name: may only contain a-z, 0-9 and '-' (got 'Web1')"),
            ("web_1", "name: may only contain a-z, 0-9 and '-' (got 'web_1')"),
            ("-web", "name: must not start or end with '-' (got '-web')"),
            ("wéb", "name: may only contain a-z, 0-9 and '-' (got 'wéb')"),
        ];
        for (bad, msg) in cases {
            assert_eq!(name("name", bad).unwrap_err().to_string(), msg);
        }
        assert_eq!(
            name("name", &"x".repeat(64)).unwrap_err().to_string(),
            "name: must be at most 63 characters (got 64)"
        );
    }

    #[test]
    fn sizes_have_bounds() {
        assert_eq!(memory_mib(0).unwrap_err().to_string(), "memory: must be at least 1 MiB");
        assert!(memory_mib(1).is_ok());
        assert!(memory_mib(MAX_MEMORY_MIB + 1).is_err());
        assert_eq!(vcpus(0).unwrap_err().to_string(), "vcpus: must be at least 1");
        assert!(vcpus(MAX_VCPUS + 1).is_err());
    }

    #[test]
    fn empty_edit_is_refused() {
        assert!(vm_changes(&VmChanges::default()).is_err());
        assert!(text("description", "bad\u{7}bell").is_err());
    }
}

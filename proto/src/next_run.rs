//! A VM as it will be at its next run. The node answers `GET /api/v1/vms/web1?next_run=true`
//! (and `GetVmRequest.next_run`) with it; the CLI's `vm show --next-run` applies it itself, so
//! that it shows the same against a node that predates the field.

use crate::Vm;

impl Vm {
    /// Its pending changes applied, none left pending.
    pub fn at_next_run(mut self) -> Vm {
        if let Some(n) = self.next_run.take() {
            self.memory_mib = n.memory_mib.unwrap_or(self.memory_mib);
            self.vcpus = n.vcpus.unwrap_or(self.vcpus);
            if let Some(t) = n.domain_type {
                self.domain_type = t;
                self.domain_type_enum = n.domain_type_enum;
            }
            self.os = n.os.unwrap_or(self.os);
            self.max_vcpus = n.max_vcpus.or(self.max_vcpus);
            self.max_memory_mib = n.max_memory_mib.or(self.max_memory_mib);
            if n.cdrom_ejected {
                self.cdrom = None;
                self.iso = String::new();
            } else if n.cdrom.is_some() {
                self.cdrom = n.cdrom;
                // The library name went with the medium it named.
                self.iso = String::new();
            }
        }
        self.pending_next_run = false;
        self
    }
}

#[cfg(test)]
mod tests {
    use crate::{NextRun, Vm};

    #[test]
    fn pending_changes_replace_the_running_values_and_nothing_is_left_pending() {
        let vm = Vm {
            memory_mib: 1024,
            vcpus: 1,
            os: "other_linux".into(),
            cdrom: Some("a.iso".into()),
            iso: "a".into(),
            pending_next_run: true,
            next_run: Some(NextRun { memory_mib: Some(2048), cdrom_ejected: true, ..Default::default() }),
            ..Default::default()
        };
        let next = vm.at_next_run();
        assert_eq!((next.memory_mib, next.vcpus, next.os.as_str()), (2048, 1, "other_linux"));
        assert_eq!((next.cdrom, next.iso.as_str()), (None, ""));
        assert!(!next.pending_next_run && next.next_run.is_none());
    }
}

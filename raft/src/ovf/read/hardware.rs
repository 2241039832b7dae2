//! The VirtualHardwareSection of an OVF document: the CPU and memory Items, the disks' Items
//! (boot order, creation date, caption), NICs and the CD-ROM. Other devices are kept verbatim.

use super::*;
use crate::error::quote;

/// What the Items said so far.
#[derive(Default)]
struct Items {
    vcpus: Option<u32>,
    memory: Option<u64>,
    nics: Vec<Nic>,
    /// Seen once; the inner value is the ISO it holds.
    cdrom: Option<Option<String>>,
    /// Disk entries by their Item's boot order (0: none), then the Item's position.
    disk_items: Vec<(u32, usize)>,
}

impl Items {
    fn finish(self, disks: usize) -> Result<Hardware, OvfError> {
        let missing = |what: &str| OvfError::Missing { path: "VirtualHardwareSection".into(), what: what.into() };
        let vcpus = self.vcpus.ok_or_else(|| missing("CPU Item (ResourceType 3)"))?;
        let memory_mib = self.memory.ok_or_else(|| missing("memory Item (ResourceType 4)"))?;
        // Disks with a boot order first, by it; then the others in document order; then
        // disks that have no Item at all.
        let mut order = self.disk_items;
        order.sort_by_key(|(boot, _)| if *boot == 0 { u32::MAX } else { *boot });
        let mut disk_order: Vec<usize> = order.into_iter().map(|(_, i)| i).collect();
        let without_item: Vec<usize> = (0..disks).filter(|i| !disk_order.contains(i)).collect();
        disk_order.extend(without_item);
        Ok(Hardware { vcpus, memory_mib, nics: self.nics, cdrom: self.cdrom.flatten(), disk_order })
    }
}

impl<'a> Reading<'a> {
    pub(super) fn hardware(
        &mut self,
        content: &Element,
        section: &'a Element,
        disks: &mut [DiskEntry<'a>],
    ) -> Result<Hardware, OvfError> {
        let mut items = Items::default();
        for el in &section.children {
            if el.name == "Item" {
                self.item(&[content, section, el], disks, &mut items)?;
            } else if !matches!(el.name.as_str(), "Info" | "System") {
                let what = format!("VirtualHardwareSection/{}", label(el));
                self.keep(el, "VirtualHardwareSection", what, &[content, section]);
            }
        }
        items.finish(disks.len())
    }

    /// One Item; `scope` is the Content, the section and the Item.
    fn item(&mut self, scope: &[&Element; 3], disks: &mut [DiskEntry<'a>], items: &mut Items) -> Result<(), OvfError> {
        let el = scope[2];
        let rt = el.child("rasd:ResourceType").map(|t| t.text.trim()).unwrap_or("");
        let path = format!("VirtualHardwareSection/Item (ResourceType {rt})");
        match rt {
            RT_CPU if items.vcpus.is_some() => return Err(invalid(el, &path, "a second CPU Item")),
            RT_CPU => {
                items.vcpus = Some(cpus(el, &path)?);
                self.item_rest(el, &path, "Item CPU", &CPU_CHILDREN, scope);
            }
            RT_MEMORY if items.memory.is_some() => return Err(invalid(el, &path, "a second memory Item")),
            RT_MEMORY => {
                items.memory = Some(memory(el, &path)?);
                self.item_rest(el, &path, "Item memory", &MEMORY_CHILDREN, scope);
            }
            RT_DISK => {
                let (id, path) = disk_item(el, &path, disks, &mut items.disk_items)?;
                if let Some(p) = el.child("IsPlugged") {
                    let plugged = boolean(p, &path, &p.text)?;
                    if let Some(e) = disks.iter_mut().find(|d| d.disk.id == id) {
                        e.attachment.unplugged = !plugged;
                    }
                }
                self.item_rest(el, &path, &format!("Item disk {id}"), &DISK_CHILDREN, scope);
            }
            RT_NIC => {
                let n = items.nics.len() + 1;
                let path = format!("VirtualHardwareSection/Item (ResourceType 10, nic{n})");
                let mut nic = self.nic(el, &path)?;
                if let Some(p) = el.child("IsPlugged") {
                    nic.unplugged = !boolean(p, &path, &p.text)?;
                }
                // A name other than the one its position gives is kept.
                let name = el.child("rasd:Name").map(|c| c.text.trim().to_string()).unwrap_or_default();
                if name != format!("nic{n}") && crate::validate::name("nic", &name).is_ok() {
                    nic.name = name;
                }
                items.nics.push(nic);
                self.item_rest(el, &path, &format!("Item nic{n}"), &NIC_CHILDREN, scope);
            }
            RT_CDROM if items.cdrom.is_none() => {
                items.cdrom = Some(cdrom(el));
                self.item_rest(el, &path, "Item CD-ROM", &CDROM_CHILDREN, scope);
            }
            _ => {
                let what = format!("VirtualHardwareSection/Item (ResourceType {rt}, {})", device_kind(rt, el));
                self.keep(el, "VirtualHardwareSection", what, &scope[..2]);
            }
        }
        Ok(())
    }

    fn nic(&mut self, el: &Element, path: &str) -> Result<Nic, OvfError> {
        let text_of = |name: &str| el.child(name).map(|c| c.text.clone()).unwrap_or_default();
        let mac = text_of("rasd:MACAddress");
        if !is_mac(&mac) {
            let at = el.child("rasd:MACAddress").unwrap_or(el);
            return Err(invalid(
                at,
                path,
                format!("MACAddress '{}' is not a MAC address (six hex pairs separated by ':')", quote(&mac)),
            ));
        }
        let subtype = text_of("rasd:ResourceSubType");
        if !matches!(subtype.trim(), "" | "3") {
            self.ignored.push(format!("{path}: ResourceSubType {subtype} (Corral's NICs are VirtIO)"));
        }
        Ok(Nic::new(text_of("rasd:Connection"), mac))
    }

    /// Keeps the children of a modelled Item that are neither modelled nor derived.
    fn item_rest(&mut self, item: &Element, path: &str, parent: &str, known: &[&str], scope: &[&Element]) {
        for c in &item.children {
            if !known.contains(&c.name.as_str()) && !DEVICE_INFO.contains(&c.name.as_str()) {
                self.keep(c, parent, format!("{path}/{}", c.name), scope);
            }
        }
    }
}

/// The vCPUs of the CPU Item: its VirtualQuantity, else sockets x cores x threads.
fn cpus(el: &Element, path: &str) -> Result<u32, OvfError> {
    let count = |name: &str| -> Result<u32, OvfError> {
        el.child(name).map_or(Ok(1), |c| number(c, path, &name[5..], &c.text))
    };
    match el.child("rasd:VirtualQuantity") {
        Some(q) => number(q, path, "VirtualQuantity", &q.text),
        None => Ok(count("rasd:num_of_sockets")?
            .saturating_mul(count("rasd:cpu_per_socket")?)
            .saturating_mul(count("rasd:threads_per_cpu")?)),
    }
}

/// The MiB of the memory Item.
fn memory(el: &Element, path: &str) -> Result<u64, OvfError> {
    if let Some(u) = el.child("rasd:AllocationUnits").filter(|u| !matches!(u.text.trim(), "MegaBytes" | "byte * 2^20"))
    {
        return Err(invalid(u, path, format!("AllocationUnits '{}' is not MegaBytes", quote(&u.text))));
    }
    let q = el.child("rasd:VirtualQuantity").ok_or_else(|| invalid(el, path, "no VirtualQuantity"))?;
    number(q, path, "VirtualQuantity", &q.text)
}

/// A disk's Item: its boot order, and the creation date and caption that the DiskSection did
/// not give. Returns the disk's id and the Item's path.
fn disk_item(
    el: &Element,
    path: &str,
    disks: &mut [DiskEntry],
    disk_items: &mut Vec<(u32, usize)>,
) -> Result<(Uuid, String), OvfError> {
    let instance = el.child("rasd:InstanceId").ok_or_else(|| invalid(el, path, "no InstanceId"))?;
    let id = uuid(instance, path, "InstanceId", &instance.text)?;
    let path = format!("VirtualHardwareSection/Item (ResourceType 17, disk {id})");
    let i =
        disks.iter().position(|d| d.disk.id == id).ok_or_else(|| invalid(el, &path, "names no Disk in DiskSection"))?;
    if disk_items.iter().any(|(_, j)| *j == i) {
        return Err(invalid(el, &path, "a second Item for this disk"));
    }
    let boot = match el.child("BootOrder") {
        Some(b) if !b.text.trim().is_empty() => number(b, &path, "BootOrder", &b.text)?,
        _ => 0,
    };
    let e = &mut disks[i];
    if let Some(c) = el.child("rasd:CreationDate").filter(|_| !e.exact_time) {
        e.disk.created_ms = parse_date(&c.text)
            .ok_or_else(|| invalid(c, &path, format!("CreationDate '{}' is not a date", quote(&c.text))))?;
        e.time_known = true;
    }
    if let Some(c) = el.child("rasd:Caption").filter(|_| !e.alias) {
        e.disk.name = c.text.clone();
        e.alias = true;
    }
    disk_items.push((boot, i));
    Ok((id, path))
}

/// The ISO in the CD-ROM Item, if any.
fn cdrom(el: &Element) -> Option<String> {
    el.child("rasd:HostResource")
        .map(|h| h.text.clone())
        .filter(|h| !h.is_empty())
        .or_else(|| el.child("SpecParams").and_then(|s| s.child("path")).map(|p| p.text.clone()))
        .filter(|h| !h.is_empty())
}

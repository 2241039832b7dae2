//! Internal qcow2 snapshots of a running domain, through QEMU's monitor (QMP): libvirt 9.0 takes
//! internal snapshots only with memory and keeps metadata that stops migration, so the cluster
//! keeps the metadata and asks QEMU directly (DESIGN.md, "Snapshots"). Each disk is named by its
//! block node (`libvirt-N-format`), looked up right before each command: QEMU numbers them per
//! start. libvirt marks the domain "tainted: custom-monitor" once per start; nothing else follows.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use uuid::Uuid;
use virt::sys;

use super::{DriverError, Hypervisor};

/// How long a memory snapshot (save or load) may take before it is given up.
const JOB_PATIENCE: Duration = Duration::from_secs(600);
const JOB_POLL: Duration = Duration::from_millis(50);

impl Hypervisor {
    /// Sends one QMP command to the domain's QEMU; returns its `return` value.
    async fn qmp(&self, uuid: Uuid, command: Value) -> Result<Value, DriverError> {
        let text = command.to_string();
        let out = self
            .with_domain(uuid, move |call, domain| {
                domain.qemu_monitor_command(&text, 0).map_err(|e| call.domain_error(uuid, e))
            })
            .await?;
        let reply: Value = serde_json::from_str(&out).map_err(|e| DriverError::Libvirt {
            uri: self.uri.to_string(),
            message: format!("QEMU answered {out:?}: {e}"),
        })?;
        if let Some(e) = reply.get("error") {
            let message = e["desc"].as_str().unwrap_or("QEMU refused the command").to_string();
            return Err(DriverError::Libvirt { uri: self.uri.to_string(), message });
        }
        Ok(reply["return"].clone())
    }

    /// The block node of each disk image the running domain has open, by the image's path.
    pub async fn block_nodes(&self, uuid: Uuid) -> Result<HashMap<String, String>, DriverError> {
        let blocks = self.qmp(uuid, json!({ "execute": "query-block" })).await?;
        let mut out = HashMap::new();
        for b in blocks.as_array().into_iter().flatten() {
            let inserted = &b["inserted"];
            if let (Some(node), Some(file)) = (inserted["node-name"].as_str(), inserted["image"]["filename"].as_str()) {
                out.insert(file.to_string(), node.to_string());
            }
        }
        Ok(out)
    }

    /// Takes internal snapshot `tag` of several disks at one instant (a QMP transaction, so
    /// that the guest's disks agree with each other) while the guest runs on (no pause).
    pub async fn snapshot_disks_live(&self, uuid: Uuid, nodes: &[String], tag: &str) -> Result<(), DriverError> {
        let actions: Vec<Value> = nodes
            .iter()
            .map(|n| json!({ "type": "blockdev-snapshot-internal-sync", "data": { "device": n, "name": tag } }))
            .collect();
        self.qmp(uuid, json!({ "execute": "transaction", "arguments": { "actions": actions } })).await.map(drop)
    }

    /// Removes internal snapshot `tag` from one disk while the guest runs on; a disk without
    /// it is fine.
    pub async fn drop_snapshot_live(&self, uuid: Uuid, node: &str, tag: &str) -> Result<(), DriverError> {
        let cmd = json!({ "execute": "blockdev-snapshot-delete-internal-sync", "arguments": { "device": node, "name": tag } });
        match self.qmp(uuid, cmd).await {
            Err(DriverError::Libvirt { message, .. }) if message.contains("does not exist") => Ok(()),
            other => other.map(drop),
        }
    }

    /// Saves the guest's memory (into `vmstate`) and snapshot `tag` of `devices`; the guest is
    /// paused while it is written (a quarter of a second for 256 MiB here).
    pub async fn save_memory_snapshot(
        &self,
        uuid: Uuid,
        tag: &str,
        vmstate: &str,
        devices: &[String],
    ) -> Result<(), DriverError> {
        self.snapshot_job(uuid, "snapshot-save", tag, vmstate, devices).await
    }

    /// Loads snapshot `tag` (memory and `devices`) into a domain started paused.
    pub async fn load_memory_snapshot(
        &self,
        uuid: Uuid,
        tag: &str,
        vmstate: &str,
        devices: &[String],
    ) -> Result<(), DriverError> {
        self.snapshot_job(uuid, "snapshot-load", tag, vmstate, devices).await
    }

    /// Runs QEMU's job `command` (snapshot-save or snapshot-load) to its end.
    async fn snapshot_job(
        &self,
        uuid: Uuid,
        command: &str,
        tag: &str,
        vmstate: &str,
        devices: &[String],
    ) -> Result<(), DriverError> {
        let job = format!("corral-{command}-{}", Uuid::new_v4().simple());
        let cmd = json!({ "execute": command,
            "arguments": { "job-id": job, "tag": tag, "vmstate": vmstate, "devices": devices } });
        self.qmp(uuid, cmd).await?;
        self.finish_job(uuid, &job).await
    }

    /// Waits for QEMU job `id` to conclude, dismisses it, and returns its error if it failed.
    async fn finish_job(&self, uuid: Uuid, id: &str) -> Result<(), DriverError> {
        let started = Instant::now();
        loop {
            let jobs = self.qmp(uuid, json!({ "execute": "query-jobs" })).await?;
            let job = jobs.as_array().into_iter().flatten().find(|j| j["id"] == id).cloned();
            match job {
                None => {
                    return Err(DriverError::Libvirt {
                        uri: self.uri.to_string(),
                        message: format!("QEMU job {id} vanished"),
                    })
                }
                Some(j) if j["status"] == "concluded" => {
                    self.qmp(uuid, json!({ "execute": "job-dismiss", "arguments": { "id": id } })).await?;
                    return match j["error"].as_str() {
                        Some(e) => Err(DriverError::Libvirt { uri: self.uri.to_string(), message: e.to_string() }),
                        None => Ok(()),
                    };
                }
                Some(_) if started.elapsed() > JOB_PATIENCE => {
                    let _ = self.qmp(uuid, json!({ "execute": "job-cancel", "arguments": { "id": id } })).await;
                    return Err(DriverError::Libvirt {
                        uri: self.uri.to_string(),
                        message: format!("QEMU job {id} did not finish in {} s", JOB_PATIENCE.as_secs()),
                    });
                }
                Some(_) => tokio::time::sleep(JOB_POLL).await,
            }
        }
    }

    /// The running domain's definition as another start must reproduce it to load its memory
    /// (libvirt's migratable form: no run-time ids or aliases).
    pub async fn migratable_xml(&self, uuid: Uuid) -> Result<String, DriverError> {
        self.with_domain(uuid, move |call, domain| {
            domain
                .xml_desc(sys::VIR_DOMAIN_XML_MIGRATABLE | sys::VIR_DOMAIN_XML_SECURE)
                .map_err(|e| call.domain_error(uuid, e))
        })
        .await
    }

    /// Defines the domain from `xml` as it is (a snapshot's definition) and starts it paused.
    pub async fn start_paused_from(&self, uuid: Uuid, xml: String) -> Result<(), DriverError> {
        self.call(move |call| {
            call.conn
                .define_domain_xml_flags(&xml, sys::VIR_DOMAIN_DEFINE_VALIDATE)
                .map_err(|e| call.domain_error(uuid, e))?;
            Ok(())
        })
        .await?;
        self.with_domain(uuid, move |call, domain| {
            domain.create_with_flags(sys::VIR_DOMAIN_START_PAUSED).map(drop).map_err(|e| call.domain_error(uuid, e))
        })
        .await
    }
}

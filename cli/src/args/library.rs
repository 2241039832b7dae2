//! `corral iso`, `corral template`, `corral offering`: the library new VMs start from.

use std::path::PathBuf;

use clap::Subcommand;

use super::parse::{parse_bool, parse_memory, parse_vcpus};

#[derive(Debug, Subcommand)]
pub enum IsoCommand {
    /// Upload an ISO image into the storage domain's library
    Add {
        /// The ISO's name in the library
        name: String,
        /// The ISO file to upload
        #[arg(long, value_name = "PATH")]
        file: PathBuf,
        /// Guests can boot from it
        #[arg(long)]
        bootable: bool,
        /// The guest OS it installs, as oVirt names it (e.g. rhel_9x64)
        #[arg(long, value_name = "OS")]
        os: Option<String>,
        /// What it holds
        #[arg(long, value_name = "TEXT", default_value = "")]
        description: String,
    },
    /// List the ISOs
    List,
    /// Show one ISO
    Show { iso: String },
    /// Delete an ISO (refused while a VM has it in its CD-ROM drive)
    Delete { iso: String },
}

#[derive(Debug, Subcommand)]
pub enum TemplateCommand {
    /// Make a template of a down VM: its disks are copied into read-only bases
    Create {
        /// The template's name
        name: String,
        /// The VM (down) it is made of
        #[arg(long, value_name = "VM")]
        from_vm: String,
        /// What it is for
        #[arg(long, value_name = "TEXT", default_value = "")]
        description: String,
        /// Show progress (which disks are copied, the time so far) on stderr while the bases are
        /// made; the command returns once the template is made either way
        #[arg(long)]
        wait: bool,
    },
    /// List the templates you may use
    List,
    /// Show one template
    Show { template: String },
    /// Delete a template and its bases (refused while thin disks build on it)
    Delete { template: String },
}

#[derive(Debug, Subcommand)]
pub enum OfferingCommand {
    /// Create a service offering: a size for new VMs
    Create {
        name: String,
        /// Number of virtual CPUs
        #[arg(long, value_name = "N", value_parser = parse_vcpus, allow_hyphen_values = true)]
        vcpus: u32,
        /// Memory, e.g. 1G
        #[arg(long, value_name = "SIZE", value_parser = parse_memory, allow_hyphen_values = true)]
        memory: u64,
        /// Its VMs are highly available
        #[arg(long)]
        ha: bool,
        #[arg(long, value_name = "TEXT", default_value = "")]
        description: String,
    },
    /// List the offerings
    List,
    /// Show one offering and its VMs
    Show { offering: String },
    /// Change an offering (VMs made from it keep their size; `vm edit --offering` applies it)
    Edit {
        offering: String,
        #[arg(long, value_name = "N", value_parser = parse_vcpus, allow_hyphen_values = true)]
        vcpus: Option<u32>,
        #[arg(long, value_name = "SIZE", value_parser = parse_memory, allow_hyphen_values = true)]
        memory: Option<u64>,
        #[arg(long, value_name = "true|false", value_parser = parse_bool)]
        ha: Option<bool>,
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
    },
    /// Delete an offering (its VMs keep their size)
    Delete { offering: String },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::testing::parse;
    use crate::args::Command;

    #[test]
    fn the_issue_command_lines_parse() {
        let c = parse(&[
            "iso",
            "add",
            "deb",
            "--file",
            "/tmp/x.iso",
            "--bootable",
            "--os",
            "debian_12",
            "--description",
            "d",
        ]);
        assert!(matches!(c.unwrap().command, Command::Iso(IsoCommand::Add { bootable: true, .. })));
        let c = parse(&["template", "create", "t", "--from-vm", "web1", "--description", "d"]);
        assert!(matches!(c.unwrap().command, Command::Template(TemplateCommand::Create { .. })));
        let c = parse(&["offering", "create", "small", "--vcpus", "1", "--memory", "1G", "--ha"]);
        assert!(matches!(
            c.unwrap().command,
            Command::Offering(OfferingCommand::Create { vcpus: 1, memory: 1024, ha: true, .. })
        ));
        for line in [
            &["vm", "create", "web1", "--memory", "1G", "--iso", "deb", "--disk", "10G", "--boot", "cdrom,disk"][..],
            &["vm", "create", "web2", "--template", "t", "--thin", "--offering", "small"],
            &["vm", "create", "web2", "--template", "t", "--clone"],
            &[
                "vm",
                "create",
                "web3",
                "--template",
                "t",
                "--cloud-init",
                "u.yaml",
                "--ssh-key",
                "k.pub",
                "--hostname",
                "h",
            ],
            &["vm", "edit", "web2", "--offering", "large"],
            &["vm", "edit", "web1", "--stateless", "true"],
        ] {
            assert!(parse(line).is_ok(), "{line:?}");
        }
        assert!(parse(&["vm", "create", "w", "--offering", "small", "--memory", "1G"]).is_err());
        assert!(parse(&["vm", "create", "w", "--thin"]).is_err(), "--thin needs --template");
    }
}

//! `corral disk`: the disks of the cluster's VMs.

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum DiskCommand {
    /// List the disks, attached or floating
    List,
    /// Create a floating disk
    Create {
        /// The disk's name, unique in the cluster
        name: String,
        /// Size, e.g. 10G
        #[arg(long, value_name = "SIZE", value_parser = super::parse::parse_memory, allow_hyphen_values = true)]
        size: u64,
        /// Image format: qcow2 (default) or raw
        #[arg(long, value_name = "qcow2|raw")]
        format: Option<String>,
    },
    /// Show one disk
    Show {
        /// Disk name or id
        disk: String,
    },
    /// Grow a disk (live while its VM runs); disks never shrink
    Resize {
        /// Disk name or id
        disk: String,
        /// The new size, e.g. 20G
        #[arg(long, value_name = "SIZE", value_parser = super::parse::parse_memory, allow_hyphen_values = true)]
        size: u64,
    },
    /// Delete a floating disk and its image
    Delete {
        /// Disk name or id
        disk: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::testing::parse;
    use crate::args::Command;

    #[test]
    fn list_parses() {
        assert!(matches!(parse(&["disk", "list"]).unwrap().command, Command::Disk(DiskCommand::List)));
    }
}

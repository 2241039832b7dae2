//! `corral affinity-group` and `corral affinity-label`: the VM-to-VM and VM-to-host rules.

use clap::Subcommand;

use super::parse::{parse_bool, parse_polarity, Polarity};

#[derive(Debug, Subcommand)]
pub enum AffinityGroupCommand {
    /// Create a group of VMs that run together (positive) or apart (negative)
    Create {
        /// Name of the group
        name: String,
        /// positive: on one host; negative: each on a different host
        #[arg(long, value_name = "positive|negative", value_parser = parse_polarity)]
        polarity: Polarity,
        /// A hard rule: a host that breaks it is never chosen (default: a preference)
        #[arg(long)]
        enforcing: bool,
        /// Member VMs (names or ids, comma-separated)
        #[arg(long, value_name = "VM[,...]", value_delimiter = ',')]
        vms: Vec<String>,
    },
    /// List the groups
    List,
    /// Show one group
    Show {
        /// Group name
        name: String,
    },
    /// Add or remove members, or change the rule
    Edit {
        /// Group name
        name: String,
        /// Add these VMs (comma-separated or repeated)
        #[arg(long = "add-vm", value_name = "VM", value_delimiter = ',')]
        add_vms: Vec<String>,
        /// Remove these VMs (comma-separated or repeated)
        #[arg(long = "remove-vm", value_name = "VM", value_delimiter = ',')]
        remove_vms: Vec<String>,
        /// Make the rule hard (true) or a preference (false)
        #[arg(long, value_name = "true|false", value_parser = parse_bool)]
        enforcing: Option<bool>,
        #[arg(long, value_name = "positive|negative", value_parser = parse_polarity)]
        polarity: Option<Polarity>,
    },
    /// Delete a group (its VMs stay as they are)
    Delete {
        /// Group name
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AffinityLabelCommand {
    /// Create a label: its VMs run only on its hosts
    Create {
        /// Name of the label
        name: String,
        /// VMs (names or ids, comma-separated)
        #[arg(long, value_name = "VM[,...]", value_delimiter = ',')]
        vms: Vec<String>,
        /// Hosts (comma-separated)
        #[arg(long, value_name = "HOST[,...]", value_delimiter = ',')]
        hosts: Vec<String>,
    },
    /// List the labels
    List,
    /// Show one label
    Show {
        /// Label name
        name: String,
    },
    /// Add or remove VMs and hosts
    Edit {
        /// Label name
        name: String,
        #[arg(long = "add-vm", value_name = "VM", value_delimiter = ',')]
        add_vms: Vec<String>,
        #[arg(long = "remove-vm", value_name = "VM", value_delimiter = ',')]
        remove_vms: Vec<String>,
        #[arg(long = "add-host", value_name = "HOST", value_delimiter = ',')]
        add_hosts: Vec<String>,
        #[arg(long = "remove-host", value_name = "HOST", value_delimiter = ',')]
        remove_hosts: Vec<String>,
    },
    /// Delete a label (its VMs may then run anywhere)
    Delete {
        /// Label name
        name: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::testing::{parse, refusal};
    use crate::args::Command;

    #[test]
    fn affinity_commands_parse() {
        match parse(&[
            "affinity-group",
            "create",
            "db-spread",
            "--polarity",
            "negative",
            "--enforcing",
            "--vms",
            "a,b,c",
        ])
        .unwrap()
        .command
        {
            Command::AffinityGroup(AffinityGroupCommand::Create { name, polarity, enforcing, vms }) => {
                assert_eq!((name.as_str(), polarity, enforcing), ("db-spread", Polarity::Negative, true));
                assert_eq!(vms, ["a", "b", "c"]);
            }
            other => panic!("parsed as {other:?}"),
        }
        let err = parse(&["affinity-group", "create", "g", "--polarity", "sideways"]).unwrap_err();
        assert_eq!(
            refusal(&err),
            ("--polarity".to_string(), "'sideways' is not one of positive, negative".to_string())
        );
        match parse(&["affinity-group", "edit", "g", "--add-vm", "x", "--add-vm", "y,z", "--remove-vm", "w"])
            .unwrap()
            .command
        {
            Command::AffinityGroup(AffinityGroupCommand::Edit { add_vms, remove_vms, enforcing, polarity, .. }) => {
                assert_eq!((add_vms, remove_vms), (vec!["x".into(), "y".into(), "z".into()], vec!["w".to_string()]));
                assert_eq!((enforcing, polarity), (None, None));
            }
            other => panic!("parsed as {other:?}"),
        }
        for verb in [&["list"][..], &["show", "g"], &["delete", "g"]] {
            parse(&[&["affinity-group"][..], verb].concat()).unwrap();
            parse(&[&["affinity-label"][..], verb].concat()).unwrap();
        }
        match parse(&["affinity-label", "create", "fast", "--vms", "db1", "--hosts", "host1,host2"]).unwrap().command {
            Command::AffinityLabel(AffinityLabelCommand::Create { vms, hosts, .. }) => {
                assert_eq!((vms, hosts), (vec!["db1".to_string()], vec!["host1".to_string(), "host2".to_string()]))
            }
            other => panic!("parsed as {other:?}"),
        }
        match parse(&["affinity-label", "edit", "fast", "--add-host", "host3", "--remove-vm", "db1"]).unwrap().command {
            Command::AffinityLabel(AffinityLabelCommand::Edit { add_hosts, remove_vms, .. }) => {
                assert_eq!((add_hosts, remove_vms), (vec!["host3".to_string()], vec!["db1".to_string()]))
            }
            other => panic!("parsed as {other:?}"),
        }
    }
}

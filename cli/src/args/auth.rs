//! `corral user | group | role | permission | login | logout | whoami`: users, groups, roles
//! and permissions in oVirt's words, and how a user signs in.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args, Subcommand};

use super::parse::{parse_list, parse_ttl, NameList};

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a local user; the password comes from --password-file, or is asked on a terminal
    /// (with neither, the user has no password: a certificate or an API token still works)
    Create {
        name: String,
        /// Read the password from FILE, or from standard input with -
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
    /// List the users
    List,
    /// Show a user: groups, permissions, sessions and API tokens
    Show { name: String },
    /// Delete a user, with their permissions, sessions and API tokens
    Delete { name: String },
    /// Set a user's password (their sessions end); from --password-file or asked on a terminal.
    /// Your own needs the current one too
    Passwd {
        name: String,
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
        /// Your current password, from FILE (or - for standard input), when you change your own
        #[arg(long, value_name = "FILE")]
        current_password_file: Option<PathBuf>,
    },
    /// API tokens: `Authorization: Bearer TOKEN` for gRPC and REST, `--api-token-file` for the CLI
    #[command(subcommand)]
    Token(ApiTokenCommand),
}

#[derive(Debug, Subcommand)]
pub enum ApiTokenCommand {
    /// Make an API token; it is printed once, on the last line
    Create {
        user: String,
        #[arg(long)]
        name: String,
        /// How long it lasts (e.g. 90d, 12h) [default: 90d]
        #[arg(long, value_name = "DURATION", value_parser = parse_ttl)]
        ttl: Option<Duration>,
    },
    /// A user's API tokens (names and expiry; never the tokens)
    List { user: String },
    /// Revoke a user's API token by name
    Revoke { user: String, name: String },
}

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Create a group of users
    Create {
        name: String,
        /// Its members (comma-separated)
        #[arg(long, value_name = "USER[,...]", value_parser = parse_list, default_value = "")]
        users: NameList,
    },
    /// List the groups
    List,
    /// Show a group: members and permissions
    Show { name: String },
    /// Change a group's members
    Edit {
        name: String,
        /// The members, replacing the old ones
        #[arg(long, value_name = "USER[,...]", value_parser = parse_list)]
        users: Option<NameList>,
        /// Members to add
        #[arg(long, value_name = "USER[,...]", value_parser = parse_list)]
        add: Option<NameList>,
        /// Members to remove
        #[arg(long, value_name = "USER[,...]", value_parser = parse_list)]
        remove: Option<NameList>,
    },
    /// Delete a group, with its permissions
    Delete { name: String },
}

#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// Every role (predefined and custom) and what it grants
    List,
    /// One role's permissions
    Show { name: String },
    /// Make a custom role from named permissions (`role show SuperUser` lists them all)
    Create {
        name: String,
        #[arg(long, value_name = "PERMISSION[,...]", value_parser = parse_list)]
        permissions: NameList,
    },
    /// Replace a custom role's permissions
    Edit {
        name: String,
        #[arg(long, value_name = "PERMISSION[,...]", value_parser = parse_list)]
        permissions: NameList,
    },
    /// Delete a custom role that no permission uses
    Delete { name: String },
}

/// Whom a permission is for, and what: `(--user U | --group G) --role R --on OBJECT`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("subject").args(["user", "group"]).required(true)))]
pub struct PermissionArgs {
    #[arg(long)]
    pub user: Option<String>,
    #[arg(long)]
    pub group: Option<String>,
    #[arg(long)]
    pub role: String,
    /// system, cluster, host:NAME, vm:NAME or disk:NAME
    #[arg(long, value_name = "OBJECT")]
    pub on: String,
}

#[derive(Debug, Subcommand)]
pub enum PermissionCommand {
    /// Give a user or a group a role on an object (and everything under it)
    Add(PermissionArgs),
    /// List permissions (those the caller may see), optionally of one object or subject
    List {
        #[arg(long, value_name = "OBJECT")]
        on: Option<String>,
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        group: Option<String>,
    },
    /// Take a role on an object away from a user or a group
    Remove(PermissionArgs),
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("trust").args(["ca_file", "ca_fingerprint"]).multiple(false)))]
pub struct LoginArgs {
    #[arg(long)]
    pub user: String,
    /// Read the password from FILE, or from standard input with -; asked on a terminal otherwise
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// The cluster CA's certificate (from `corral cluster ca -f FILE`), to trust the node by
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// The cluster CA's fingerprint (sha256:HEX), to trust the node by
    #[arg(long, value_name = "sha256:HEX")]
    pub ca_fingerprint: Option<String>,
    /// How long the session lasts (at most and by default 12h)
    #[arg(long, value_name = "DURATION", value_parser = parse_ttl)]
    pub ttl: Option<Duration>,
}

//! `corral user | group | role | permission | login | logout | whoami` (AuthService): users,
//! groups, roles and permissions, and signing in. Secrets (passwords, API tokens) are read from
//! files or a terminal without echo, never from the command line; `login` trusts a node only
//! through a CA the user gave or confirmed on a terminal.

use std::io::{IsTerminal, Read as _, Write as _};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use corral_proto::tls::{client_config, PinnedVerifier};
use corral_proto::v1 as proto;
use proto::auth_service_client::AuthServiceClient;
use proto::cluster_service_client::ClusterServiceClient;
use serde_json::json;

use super::Context;
use crate::args::{
    ApiTokenCommand, GlobalArgs, GroupCommand, LoginArgs, PermissionArgs, PermissionCommand, RoleCommand, UserCommand,
};
use crate::connect::Nodes;
use crate::endpoints::Endpoints;
use crate::output::{self, Fields, Format, Table};
use crate::session::{self, Chooser, Observer, Session};
use crate::transport::Dial;
use crate::views::rfc3339;

/// Which saved login's secret a connection carries, once its handshake chose one.
pub type Chosen = Arc<Mutex<Option<String>>>;

/// A secret from FILE, or from standard input with `-` (at most `max` bytes), trimmed of its
/// line end.
pub fn read_secret(file: &Path, flag: &str, max: u64) -> Result<String> {
    let mut text = String::new();
    if file.as_os_str() == "-" {
        std::io::stdin()
            .take(max)
            .read_to_string(&mut text)
            .map_err(|e| anyhow!("{flag} -: cannot read standard input: {e}"))?;
    } else {
        std::fs::File::open(file).and_then(|f| f.take(max).read_to_string(&mut text)).map_err(|e| {
            anyhow!("{flag}: cannot read {}: {}", file.display(), crate::connect::strip_os_error(&e.to_string()))
        })?;
    }
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

/// The password of `--password-file`, or asked on a terminal (twice when `confirm`).
fn password(file: Option<&Path>, prompt: &str, confirm: bool, required: bool) -> Result<Option<String>> {
    if let Some(f) = file {
        let p = read_secret(f, "--password-file", 4096)?;
        if p.is_empty() {
            bail!("--password-file: it holds no password");
        }
        return Ok(Some(p));
    }
    if !std::io::stdin().is_terminal() {
        if required {
            bail!("no terminal to ask the password on: give --password-file FILE (or - for standard input)");
        }
        return Ok(None);
    }
    let p = rpassword::prompt_password(prompt).map_err(|e| anyhow!("cannot read the password: {e}"))?;
    if confirm && rpassword::prompt_password("Again: ").map_err(|e| anyhow!("cannot read the password: {e}"))? != p {
        bail!("the two passwords differ");
    }
    Ok(Some(p))
}

/// TLS that trusts `ca_file`'s CA, or (`sessions`) each saved login's CA, sending that login's
/// session to its cluster's nodes. Fails when there is no CA to trust.
pub fn trust(ca_file: Option<&Path>, sessions: bool) -> Result<(Arc<rustls::ClientConfig>, Option<Chosen>)> {
    let options = match ca_file {
        Some(f) => {
            let pem = crate::files::read_text(f)?;
            vec![(session::ca_der(&pem).map_err(|e| anyhow!("--ca-file {}: {e}", f.display()))?, None)]
        }
        None => session::load_all()
            .into_iter()
            .filter_map(|s| Some((session::ca_der(&s.ca).ok()?, sessions.then_some(s.token))))
            .collect(),
    };
    if options.is_empty() {
        bail!(
            "no CA to trust the nodes by: give --ca-file (from `corral cluster ca -f FILE` on a host), or log in first"
        );
    }
    let (chooser, chosen) = Chooser::new(options)?;
    let config = client_config(Arc::new(chooser), None).map_err(|e| anyhow!("TLS: {e}"))?;
    Ok((Arc::new(config), (sessions && ca_file.is_none()).then_some(chosen)))
}

fn done(ctx: &Context, what: String) -> Result<()> {
    match ctx.format {
        Format::Json => output::print_json(&json!({ "done": what }))?,
        Format::Table => output::print(&format!("{what}\n"))?,
    }
    Ok(())
}

fn permission_line(p: &proto::Permission) -> String {
    let who = if p.user.is_empty() { format!("group {}", p.group) } else { format!("user {}", p.user) };
    format!("{who}: {} on {}", p.role, p.on)
}

fn permission_json(p: &proto::Permission) -> serde_json::Value {
    json!({ "user": p.user, "group": p.group, "role": p.role, "on": p.on })
}

fn user_json(u: &proto::User) -> serde_json::Value {
    json!({
        "name": u.name,
        "created": rfc3339(u.created_unix_ms),
        "has_password": u.has_password,
        "groups": u.groups,
        "permissions": u.permissions.iter().map(permission_json).collect::<Vec<_>>(),
        "sessions": u.sessions,
        "api_tokens": u.api_tokens,
    })
}

fn print_user(ctx: &Context, u: &proto::User) -> Result<()> {
    match ctx.format {
        Format::Json => output::print_json(&user_json(u))?,
        Format::Table => output::print(
            &Fields::new()
                .add("name", &u.name)
                .add("created", rfc3339(u.created_unix_ms))
                .add("password", if u.has_password { "set" } else { "none (certificate or API token only)" })
                .add_list("groups", u.groups.clone(), "-")
                .add_list("permissions", u.permissions.iter().map(permission_line).collect(), "-")
                .add("sessions", u.sessions.to_string())
                .add("api tokens", u.api_tokens.to_string())
                .render(),
        )?,
    }
    Ok(())
}

pub async fn user(ctx: &Context, command: UserCommand) -> Result<()> {
    let nodes = &ctx.nodes;
    match command {
        UserCommand::Create { name, password_file } => {
            let password =
                password(password_file.as_deref(), &format!("Password for {name}: "), true, false)?.unwrap_or_default();
            let request = proto::CreateUserRequest { name, password };
            let u = nodes
                .write(|c, id| {
                    let r = id.tag(request.clone());
                    async move { AuthServiceClient::new(c).create_user(r).await }
                })
                .await?;
            print_user(ctx, &u)
        }
        UserCommand::List => {
            let r = nodes
                .read(|c| async move { AuthServiceClient::new(c).list_users(proto::ListUsersRequest {}).await })
                .await?;
            match ctx.format {
                Format::Json => output::print_json(&r.users.iter().map(user_json).collect::<Vec<_>>())?,
                Format::Table => {
                    let mut t = Table::new(&["NAME", "PASSWORD", "GROUPS", "PERMISSIONS", "SESSIONS", "API TOKENS"]);
                    for u in &r.users {
                        t.row(vec![
                            u.name.clone(),
                            if u.has_password { "set" } else { "-" }.into(),
                            u.groups.join(","),
                            u.permissions.len().to_string(),
                            u.sessions.to_string(),
                            u.api_tokens.to_string(),
                        ]);
                    }
                    output::print(&t.render())?;
                }
            }
            Ok(())
        }
        UserCommand::Show { name } => {
            let request = proto::UserRef { name };
            let u = nodes
                .read(|c| {
                    let r = request.clone();
                    async move { AuthServiceClient::new(c).get_user(r).await }
                })
                .await?;
            print_user(ctx, &u)
        }
        UserCommand::Delete { name } => {
            let request = proto::UserRef { name: name.clone() };
            nodes
                .write(|c, id| {
                    let r = id.tag(request.clone());
                    async move { AuthServiceClient::new(c).delete_user(r).await }
                })
                .await?;
            done(ctx, format!("deleted user {name}"))
        }
        UserCommand::Passwd { name, password_file, current_password_file } => {
            // Your own password needs the current one.
            let me = nodes
                .read(|c| async move { AuthServiceClient::new(c).who_am_i(proto::WhoAmIRequest {}).await })
                .await?
                .user;
            let current_password = if me == name {
                password(current_password_file.as_deref(), "Current password: ", false, false)?.unwrap_or_default()
            } else {
                String::new()
            };
            let password = password(password_file.as_deref(), &format!("New password for {name}: "), true, true)?
                .unwrap_or_default();
            let request = proto::SetPasswordRequest { name: name.clone(), password, current_password };
            nodes
                .write(|c, id| {
                    let r = id.tag(request.clone());
                    async move { AuthServiceClient::new(c).set_password(r).await }
                })
                .await?;
            done(ctx, format!("changed the password of {name}; their sessions ended"))
        }
        UserCommand::Token(t) => api_token(ctx, t).await,
    }
}

async fn api_token(ctx: &Context, command: ApiTokenCommand) -> Result<()> {
    let nodes = &ctx.nodes;
    match command {
        ApiTokenCommand::Create { user, name, ttl } => {
            let request =
                proto::CreateApiTokenRequest { user: user.clone(), name, ttl_seconds: ttl.map_or(0, |t| t.as_secs()) };
            // Not resent: a second try would make a second secret, and the first is shown once.
            let r = nodes
                .write_once(|c| {
                    let r = request.clone();
                    async move { AuthServiceClient::new(c).create_api_token(r).await }
                })
                .await?;
            match ctx.format {
                Format::Json => output::print_json(
                    &json!({ "user": user, "name": r.name, "expires": rfc3339(r.expires_unix_ms), "token": r.token }),
                )?,
                Format::Table => output::print(&format!(
                    "API token {} of {user}, until {}; it is shown only now:\n{}\n",
                    r.name,
                    rfc3339(r.expires_unix_ms),
                    r.token
                ))?,
            }
            Ok(())
        }
        ApiTokenCommand::List { user } => {
            let request = proto::UserRef { name: user };
            let r = nodes
                .read(|c| {
                    let r = request.clone();
                    async move { AuthServiceClient::new(c).list_api_tokens(r).await }
                })
                .await?;
            match ctx.format {
                Format::Json => output::print_json(
                    &r.tokens
                        .iter()
                        .map(|t| json!({ "name": t.name, "created": rfc3339(t.created_unix_ms), "expires": rfc3339(t.expires_unix_ms) }))
                        .collect::<Vec<_>>(),
                )?,
                Format::Table => {
                    let mut t = Table::new(&["NAME", "CREATED", "EXPIRES"]);
                    for k in &r.tokens {
                        t.row(vec![k.name.clone(), rfc3339(k.created_unix_ms), rfc3339(k.expires_unix_ms)]);
                    }
                    output::print(&t.render())?;
                }
            }
            Ok(())
        }
        ApiTokenCommand::Revoke { user, name } => {
            let request = proto::RevokeApiTokenRequest { user: user.clone(), name: name.clone() };
            nodes
                .write(|c, id| {
                    let r = id.tag(request.clone());
                    async move { AuthServiceClient::new(c).revoke_api_token(r).await }
                })
                .await?;
            done(ctx, format!("revoked API token {name} of {user}"))
        }
    }
}

fn print_group(ctx: &Context, g: &proto::Group) -> Result<()> {
    match ctx.format {
        Format::Json => output::print_json(&group_json(g))?,
        Format::Table => output::print(
            &Fields::new()
                .add("name", &g.name)
                .add("created", rfc3339(g.created_unix_ms))
                .add_list("users", g.users.clone(), "-")
                .add_list("permissions", g.permissions.iter().map(permission_line).collect(), "-")
                .render(),
        )?,
    }
    Ok(())
}

fn group_json(g: &proto::Group) -> serde_json::Value {
    json!({
        "name": g.name,
        "users": g.users,
        "created": rfc3339(g.created_unix_ms),
        "permissions": g.permissions.iter().map(permission_json).collect::<Vec<_>>(),
    })
}

pub async fn group(ctx: &Context, command: GroupCommand) -> Result<()> {
    let nodes = &ctx.nodes;
    match command {
        GroupCommand::Create { name, users } => {
            let request = proto::CreateGroupRequest { name, users: users.0 };
            let g = nodes
                .write(|c, id| {
                    let r = id.tag(request.clone());
                    async move { AuthServiceClient::new(c).create_group(r).await }
                })
                .await?;
            print_group(ctx, &g)
        }
        GroupCommand::List => {
            let r = nodes
                .read(|c| async move { AuthServiceClient::new(c).list_groups(proto::ListGroupsRequest {}).await })
                .await?;
            match ctx.format {
                Format::Json => output::print_json(&r.groups.iter().map(group_json).collect::<Vec<_>>())?,
                Format::Table => {
                    let mut t = Table::new(&["NAME", "USERS", "PERMISSIONS"]);
                    for g in &r.groups {
                        t.row(vec![g.name.clone(), g.users.join(","), g.permissions.len().to_string()]);
                    }
                    output::print(&t.render())?;
                }
            }
            Ok(())
        }
        GroupCommand::Show { name } => {
            let request = proto::GroupRef { name };
            let g = nodes
                .read(|c| {
                    let r = request.clone();
                    async move { AuthServiceClient::new(c).get_group(r).await }
                })
                .await?;
            print_group(ctx, &g)
        }
        GroupCommand::Edit { name, users, add, remove } => {
            let request = proto::EditGroupRequest {
                name,
                set_users: users.is_some(),
                users: users.map(|u| u.0).unwrap_or_default(),
                add: add.map(|u| u.0).unwrap_or_default(),
                remove: remove.map(|u| u.0).unwrap_or_default(),
            };
            let g = nodes
                .write(|c, id| {
                    let r = id.tag(request.clone());
                    async move { AuthServiceClient::new(c).edit_group(r).await }
                })
                .await?;
            print_group(ctx, &g)
        }
        GroupCommand::Delete { name } => {
            let request = proto::GroupRef { name: name.clone() };
            nodes
                .write(|c, id| {
                    let r = id.tag(request.clone());
                    async move { AuthServiceClient::new(c).delete_group(r).await }
                })
                .await?;
            done(ctx, format!("deleted group {name}"))
        }
    }
}

fn role_json(r: &proto::Role) -> serde_json::Value {
    json!({ "name": r.name, "predefined": r.predefined, "description": r.description, "permissions": r.permissions })
}

pub async fn role(ctx: &Context, command: RoleCommand) -> Result<()> {
    let nodes = &ctx.nodes;
    let print = |r: &proto::Role| -> Result<()> {
        match ctx.format {
            Format::Json => output::print_json(&role_json(r))?,
            Format::Table => output::print(
                &Fields::new()
                    .add("name", &r.name)
                    .add("kind", if r.predefined { "predefined (read-only)" } else { "custom" })
                    .add("description", if r.description.is_empty() { "-" } else { &r.description })
                    .add_list("permissions", r.permissions.clone(), "-")
                    .render(),
            )?,
        }
        Ok(())
    };
    match command {
        RoleCommand::List => {
            let r = nodes
                .read(|c| async move { AuthServiceClient::new(c).list_roles(proto::ListRolesRequest {}).await })
                .await?;
            match ctx.format {
                Format::Json => output::print_json(&r.roles.iter().map(role_json).collect::<Vec<_>>())?,
                Format::Table => {
                    let mut t = Table::new(&["NAME", "KIND", "PERMISSIONS"]);
                    for role in &r.roles {
                        t.row(vec![
                            role.name.clone(),
                            if role.predefined { "predefined" } else { "custom" }.into(),
                            role.permissions.join(","),
                        ]);
                    }
                    output::print(&t.render())?;
                }
            }
            Ok(())
        }
        RoleCommand::Show { name } => {
            let request = proto::RoleRef { name };
            let r = nodes
                .read(|c| {
                    let r = request.clone();
                    async move { AuthServiceClient::new(c).get_role(r).await }
                })
                .await?;
            print(&r)
        }
        RoleCommand::Create { name, permissions } => {
            let request = proto::RoleRequest { name, permissions: permissions.0 };
            let r = nodes
                .write(|c, id| {
                    let r = id.tag(request.clone());
                    async move { AuthServiceClient::new(c).create_role(r).await }
                })
                .await?;
            print(&r)
        }
        RoleCommand::Edit { name, permissions } => {
            let request = proto::RoleRequest { name, permissions: permissions.0 };
            let r = nodes
                .write(|c, id| {
                    let r = id.tag(request.clone());
                    async move { AuthServiceClient::new(c).edit_role(r).await }
                })
                .await?;
            print(&r)
        }
        RoleCommand::Delete { name } => {
            let request = proto::RoleRef { name: name.clone() };
            nodes
                .write(|c, id| {
                    let r = id.tag(request.clone());
                    async move { AuthServiceClient::new(c).delete_role(r).await }
                })
                .await?;
            done(ctx, format!("deleted role {name}"))
        }
    }
}

fn permission_request(a: PermissionArgs) -> proto::PermissionRequest {
    proto::PermissionRequest {
        user: a.user.unwrap_or_default(),
        group: a.group.unwrap_or_default(),
        role: a.role,
        on: a.on,
    }
}

pub async fn permission(ctx: &Context, command: PermissionCommand) -> Result<()> {
    let nodes = &ctx.nodes;
    match command {
        PermissionCommand::Add(a) => {
            let request = permission_request(a);
            let p = nodes
                .write(|c, id| {
                    let r = id.tag(request.clone());
                    async move { AuthServiceClient::new(c).add_permission(r).await }
                })
                .await?;
            match ctx.format {
                Format::Json => output::print_json(&permission_json(&p))?,
                Format::Table => output::print(&format!("added {}\n", permission_line(&p)))?,
            }
            Ok(())
        }
        PermissionCommand::Remove(a) => {
            let request = permission_request(a);
            let line = permission_line(&proto::Permission {
                user: request.user.clone(),
                group: request.group.clone(),
                role: request.role.clone(),
                on: request.on.clone(),
            });
            nodes
                .write(|c, id| {
                    let r = id.tag(request.clone());
                    async move { AuthServiceClient::new(c).remove_permission(r).await }
                })
                .await?;
            done(ctx, format!("removed {line}"))
        }
        PermissionCommand::List { on, user, group } => {
            let request = proto::ListPermissionsRequest {
                on: on.unwrap_or_default(),
                user: user.unwrap_or_default(),
                group: group.unwrap_or_default(),
            };
            let r = nodes
                .read(|c| {
                    let r = request.clone();
                    async move { AuthServiceClient::new(c).list_permissions(r).await }
                })
                .await?;
            match ctx.format {
                Format::Json => output::print_json(&r.permissions.iter().map(permission_json).collect::<Vec<_>>())?,
                Format::Table => {
                    let mut t = Table::new(&["USER", "GROUP", "ROLE", "ON"]);
                    for p in &r.permissions {
                        let dash = |s: &str| if s.is_empty() { "-".to_string() } else { s.to_string() };
                        t.row(vec![dash(&p.user), dash(&p.group), p.role.clone(), p.on.clone()]);
                    }
                    output::print(&t.render())?;
                }
            }
            Ok(())
        }
    }
}

/// The CA a node presents, learnt without trusting it (nothing is sent to it).
async fn observe_ca(endpoints: &Endpoints, patience: Duration) -> Result<rustls::pki_types::CertificateDer<'static>> {
    let observer = Arc::new(Observer::default());
    let config = client_config(observer.clone(), None).map_err(|e| anyhow!("TLS: {e}"))?;
    let endpoint = endpoints.first();
    let outcome = crate::connect::connect(endpoint, &Dial::Tls(Arc::new(config)), Some(patience), patience).await;
    let seen = observer.seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    match (seen, outcome) {
        (Some(ca), _) => Ok(ca),
        (None, Err(reason)) => bail!("could not reach {endpoint} over TLS: {reason}"),
        (None, Ok(_)) => bail!("{endpoint} presented no CA certificate"),
    }
}

pub async fn login(ctx: &Context, global: &GlobalArgs, args: LoginArgs) -> Result<()> {
    let endpoints = match (&global.endpoint, session::default_endpoint()) {
        (Some(e), _) => e.clone(),
        (None, Some(saved)) => Endpoints::parse(&saved).map_err(|e| anyhow!("the saved endpoint: {e}"))?,
        (None, None) => bail!("--endpoint: give the address of a node of the cluster to log in to"),
    };
    let patience = global.connect_timeout;
    // Whom to trust: the CA of --ca-file, or the one the node presents once the user vouched
    // for its fingerprint (--ca-fingerprint or a terminal's yes). Never silently.
    let pin = match (&args.ca_file, &args.ca_fingerprint) {
        (Some(f), _) => {
            let pem = crate::files::read_text(f)?;
            session::fingerprint_of(&pem).map_err(|e| anyhow!("--ca-file {}: {e}", f.display()))?
        }
        (None, given) => {
            let presented = corral_proto::tls::fingerprint(&observe_ca(&endpoints, patience).await?);
            match given {
                Some(fp) => {
                    let fp = fp.trim().to_ascii_lowercase();
                    let fp = if fp.starts_with("sha256:") { fp } else { format!("sha256:{fp}") };
                    if fp != presented {
                        bail!(
                            "--ca-fingerprint: {} presents the CA {presented}, not {fp}; not logging in",
                            endpoints.first()
                        );
                    }
                    fp
                }
                None if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() => {
                    eprint!(
                        "The cluster at {} presents the CA\n  {presented}\nCompare it with `corral cluster ca` on one \
                         of its hosts. Trust it? [y/N] ",
                        endpoints.first()
                    );
                    std::io::stderr().flush().ok();
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line)?;
                    if !matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
                        bail!("not logging in: the CA was not trusted");
                    }
                    presented
                }
                None => bail!(
                    "refusing to trust {} without checking its CA ({presented}): give --ca-fingerprint {presented} \
                     after comparing it with `corral cluster ca` on a host, or --ca-file FILE",
                    endpoints.first()
                ),
            }
        }
    };
    let password = password(args.password_file.as_deref(), &format!("Password for {}: ", args.user), false, true)?
        .unwrap_or_default();
    let verifier = PinnedVerifier::new(&pin);
    let config = client_config(verifier, None).map_err(|e| anyhow!("TLS: {e}"))?;
    let nodes = Nodes::with_dial(endpoints.clone(), patience, Dial::Tls(Arc::new(config)));
    let request =
        proto::LoginRequest { user: args.user.clone(), password, ttl_seconds: args.ttl.map_or(0, |t| t.as_secs()) };
    let r = nodes
        .write_once(|c| {
            let r = request.clone();
            async move { AuthServiceClient::new(c).login(r).await }
        })
        .await?;
    let ca = nodes.read(|c| async move { ClusterServiceClient::new(c).ca(proto::CaRequest {}).await }).await?.ca;
    let endpoint = endpoints.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(",");
    let path = session::save(&Session {
        endpoint: endpoint.clone(),
        user: r.user.clone(),
        token: r.token,
        expires_unix_ms: r.expires_unix_ms,
        ca,
        fingerprint: pin.clone(),
    })?;
    let _ = ctx;
    match global.output {
        Format::Json => output::print_json(&json!({
            "user": r.user, "endpoint": endpoint, "expires": rfc3339(r.expires_unix_ms), "ca": pin,
            "saved": path.display().to_string(),
        }))?,
        Format::Table => output::print(&format!(
            "logged in to {endpoint} as {} until {}; the session is saved in {}\n",
            r.user,
            rfc3339(r.expires_unix_ms),
            path.display()
        ))?,
    }
    Ok(())
}

pub async fn logout(ctx: &Context) -> Result<()> {
    let nodes = &ctx.nodes;
    let ca = nodes.read(|c| async move { ClusterServiceClient::new(c).ca(proto::CaRequest {}).await }).await;
    let ca = match ca {
        Ok(ca) => ca,
        // The cluster cannot be asked (its session expired, so no saved CA is trusted, or it is
        // down): forget the saved logins of these endpoints here.
        Err(e) => {
            let endpoints: Vec<String> = nodes.endpoints().iter().map(|e| e.to_string()).collect();
            let mine: Vec<Session> = session::saved()
                .into_iter()
                .filter(|s| s.endpoint.split(',').any(|e| endpoints.iter().any(|x| x == e)))
                .collect();
            if mine.is_empty() {
                return Err(e);
            }
            for s in &mine {
                session::remove(&s.fingerprint)?;
            }
            return done(ctx, format!("forgot the saved session of {} (the cluster was not asked: {e})", mine[0].user));
        }
    };
    let ended =
        nodes.write_once(|c| async move { AuthServiceClient::new(c).logout(proto::LogoutRequest {}).await }).await;
    session::remove(&ca.fingerprint)?;
    match ended {
        Ok(_) => done(ctx, "logged out".into()),
        Err(e) => done(ctx, format!("forgot the saved session ({e})")),
    }
}

pub async fn whoami(ctx: &Context) -> Result<()> {
    let r =
        ctx.nodes.read(|c| async move { AuthServiceClient::new(c).who_am_i(proto::WhoAmIRequest {}).await }).await?;
    match ctx.format {
        Format::Json => output::print_json(&json!({
            "user": r.user, "via": r.via,
            "expires": (r.expires_unix_ms > 0).then(|| rfc3339(r.expires_unix_ms)),
            "groups": r.groups,
            "permissions": r.permissions.iter().map(permission_json).collect::<Vec<_>>(),
            "holds": r.holds,
        }))?,
        Format::Table => {
            let until =
                if r.expires_unix_ms > 0 { format!(", until {}", rfc3339(r.expires_unix_ms)) } else { String::new() };
            output::print(
                &Fields::new()
                    .add("user", if r.user.is_empty() { "-" } else { &r.user })
                    .add("via", format!("{}{until}", r.via))
                    .add_list("groups", r.groups.clone(), "-")
                    .add_list("permissions", r.permissions.iter().map(permission_line).collect(), "-")
                    .add("may", r.holds.join(", "))
                    .render(),
            )?;
        }
    }
    Ok(())
}

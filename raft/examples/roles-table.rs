//! Prints the published table of roles and permissions (docs/ROLES.md) from the code:
//! `cargo run -p corral-raft --example roles-table > docs/ROLES.md`.

fn main() {
    print!("{}", corral_raft::model::auth::roles_table());
}

//! `corral completion SHELL` and the hidden `corral man --dir DIR`: shell completions and man
//! pages generated from the clap grammar, so the package's copies always match the real flags.
//! Neither talks to a node.

use std::io::Write;
use std::path::Path;

use anyhow::{Context as _, Result};
use clap::CommandFactory;

use crate::args::Cli;

/// Prints the completion script for `shell` on stdout.
pub fn completion(shell: clap_complete::Shell) -> Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "corral", &mut script);
    let mut out = std::io::stdout().lock();
    out.write_all(&script)?;
    Ok(out.flush()?)
}

/// Writes corral.1 and a page per visible subcommand (corral-vm.1, corral-vm-migrate.1, ...)
/// into `dir`, each footed "corral VERSION" in the "Corral Manual".
pub fn man_pages(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("--dir: cannot create {}", dir.display()))?;
    let mut command = Cli::command().disable_help_subcommand(true);
    // Gives each subcommand its display name (corral-vm-migrate) and the global flags.
    command.build();
    let source = format!("corral {}", env!("CARGO_PKG_VERSION"));
    fn write(command: &clap::Command, dir: &Path, source: &str) -> std::io::Result<()> {
        for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
            write(sub, dir, source)?;
        }
        clap_mangen::Man::new(command.clone()).source(source).manual("Corral Manual").generate_to(dir)?;
        Ok(())
    }
    write(&command, dir, &source).with_context(|| format!("cannot write man pages into {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_pages_cover_every_visible_subcommand() {
        let dir = tempfile_dir();
        man_pages(&dir).unwrap();
        let version = env!("CARGO_PKG_VERSION");
        let page = std::fs::read_to_string(dir.join("corral.1")).unwrap();
        assert!(page.contains(&format!(".TH corral 1  \"corral {version}\" \"Corral Manual\"")), "{page}");
        let migrate = std::fs::read_to_string(dir.join("corral-vm-migrate.1")).unwrap();
        assert!(migrate.contains(&format!(".TH corral-vm-migrate 1  \"corral {version}\"")), "{migrate}");
        assert!(migrate.contains("\\-\\-wait"), "{migrate}");
        assert!(dir.join("corral-vm-snapshot-create.1").exists());
        // The hidden command has no page.
        assert!(!dir.join("corral-man.1").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("corral-man-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}

//! `portsynth reset-db`: removes the build database after confirmation.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::builddb;
use crate::cli::GlobalArgs;
use crate::config::Config;

pub fn run(config: &Config, global: &GlobalArgs) -> Result<ExitCode> {
    let path = &config.database_path;
    if !path.exists() {
        eprintln!("no build database at {}; nothing to do", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    let question = format!(
        "Remove the build database {}? Every port will be rebuilt on the next run.",
        path.display()
    );
    if !global.yes && !confirm(&question)? {
        bail!("not removing {} (answer yes, or pass -y)", path.display());
    }
    builddb::reset(path)?;
    eprintln!("removed {}", path.display());
    Ok(ExitCode::SUCCESS)
}

/// Asks on the terminal; without one, the answer is no.
pub fn confirm(question: &str) -> Result<bool> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Ok(false);
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

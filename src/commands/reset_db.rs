//! `portsynth reset-db`: removes the build database after confirmation.
//!
//! Only a file that is a portsynth database is removed: an empty file, or
//! an SQLite file that either has portsynth's `schema_version` table or
//! cannot be read at all (corrupt: recovering from that is what reset-db is
//! for). Anything else at `database_path` (a text file, another program's
//! SQLite database, a directory) is refused and left alone. The build-base
//! lock is held, so a running build's database is never removed under it.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use rusqlite::{Connection, OpenFlags};

use crate::build::lock::BuildLock;
use crate::builddb;
use crate::cli::GlobalArgs;
use crate::config::Config;

const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

pub fn run(config: &Config, global: &GlobalArgs) -> Result<ExitCode> {
    let _lock = BuildLock::acquire(&config.build_base)?;
    let path = &config.database_path;
    if std::fs::symlink_metadata(path).is_err() {
        eprintln!("no build database at {}; nothing to do", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    check_is_build_database(path)?;
    let question = format!("Remove the build database {}? Every port will be rebuilt on the next run.", path.display());
    if !global.yes && !confirm(&question)? {
        bail!("not removing {} (answer yes, or pass -y)", path.display());
    }
    builddb::reset(path)?;
    eprintln!("removed {}", path.display());
    Ok(ExitCode::SUCCESS)
}

/// Refuses anything but an empty file, a portsynth database, or a corrupt
/// SQLite file.
pub fn check_is_build_database(path: &Path) -> Result<()> {
    let refuse = |why: &str| {
        anyhow::anyhow!(
            "not removing {}: {why}, so it is not a portsynth build database (check database_path in the config)",
            path.display()
        )
    };
    let meta = std::fs::symlink_metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if !meta.file_type().is_file() {
        return Err(refuse("it is not a regular file"));
    }
    if meta.len() == 0 {
        return Ok(());
    }
    let mut header = [0u8; 16];
    let mut file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let read = file.read(&mut header).with_context(|| format!("cannot read {}", path.display()))?;
    if read < header.len() || &header != SQLITE_HEADER {
        return Err(refuse("it is not an SQLite file"));
    }
    match has_schema_table(path) {
        Ok(true) => Ok(()),
        Ok(false) => Err(refuse("it is an SQLite database without portsynth's schema_version table")),
        // An SQLite header with an unreadable body: a corrupt build database.
        Err(_) => Ok(()),
    }
}

fn has_schema_table(path: &Path) -> rusqlite::Result<bool> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version')",
        [],
        |row| row.get(0),
    )
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

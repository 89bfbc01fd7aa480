//! `portsynth purge-distfiles`: lists the distfiles no port of the tree
//! references, with their total size, and deletes them after confirmation
//! (or with `-y`). The listing is the dry run: without a terminal and
//! without `-y`, nothing is deleted.
//!
//! What is referenced is the framework's to say: bundled scans the whole
//! tree (through the scan cache) for every port's DISTFILES, pkgsrc reads
//! every distinfo of the tree. It holds the build-base lock, so no
//! fetch-only or build of this build base runs meanwhile; downloads of
//! anything else are protected by the per-distfile locks (see
//! `fetch::purge`). If some distfiles are unknown (a port cannot be
//! scanned, a distinfo does not parse), nothing is deleted at all.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{bail, Result};
use serde_json::json;

use super::prepare::prepare;
use super::reset_db::confirm;
use crate::build::lock::BuildLock;
use crate::builddb::BuildDb;
use crate::cli::GlobalArgs;
use crate::config::Config;
use crate::fetch::purge::{self, Purged, Unreferenced};
use crate::framework::References;

pub fn run(config: &Config, global: &GlobalArgs) -> Result<ExitCode> {
    let _lock = BuildLock::acquire(&config.build_base)?;
    let db = BuildDb::open(&config.database_path)?;
    let mut scan = || prepare(config, &db, &[]).map(|prepared| prepared.tree);
    let References { keys: referenced, unknown } =
        config.framework.framework().referenced_distfiles(&config.ports_dir, &mut scan)?;
    let dir = &config.distfiles_dir;
    let files = purge::unreferenced(dir, &referenced)?;
    let total: u64 = files.iter().map(|f| f.size).sum();
    if !global.json {
        list(config, &files, total);
    }
    if !unknown.is_empty() {
        bail!("not deleting anything: some distfiles are unknown, because {}", unknown.join("; "));
    }
    let question = format!("Delete these {} files ({})?", files.len(), human(total));
    let go = !files.is_empty() && (global.yes || confirm(&question)?);
    let purged = if go { purge::remove(dir, &files, &referenced) } else { Purged::default() };
    report(global, &files, total, go, &purged)?;
    Ok(ExitCode::from(if purged.errors.is_empty() { super::exit::OK } else { super::exit::PORT_FAILED }))
}

fn list(config: &Config, files: &[Unreferenced], total: u64) {
    for file in files {
        eprintln!("{:>10}  {}", human(file.size), file.file);
    }
    eprintln!("{} unreferenced file(s) in {}, {} in total", files.len(), config.distfiles_dir.display(), human(total));
}

fn report(global: &GlobalArgs, files: &[Unreferenced], total: u64, deleted: bool, purged: &Purged) -> Result<()> {
    for busy in &purged.busy {
        eprintln!("purge-distfiles: {busy} is being downloaded (its lock is held); left alone");
    }
    for error in &purged.errors {
        eprintln!("purge-distfiles: {error}");
    }
    if global.json {
        let result = json!({"unreferenced": files, "bytes": total, "deleted": deleted, "removed": purged.removed,
            "removed_bytes": purged.bytes, "busy": purged.busy, "lock_files_removed": purged.lock_files,
            "directories_removed": purged.directories, "errors": purged.errors});
        writeln!(std::io::stdout().lock(), "{result}")?;
    } else if deleted {
        eprintln!(
            "removed {} file(s), {}; {} stale lock file(s) and {} empty director(ies)",
            purged.removed,
            human(purged.bytes),
            purged.lock_files,
            purged.directories
        );
    } else if !files.is_empty() {
        eprintln!("nothing deleted (answer yes, or pass -y)");
    }
    Ok(())
}

/// 1536 → "1.5 KiB".
fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_read_like_ls_h() {
        assert_eq!(super::human(0), "0 B");
        assert_eq!(super::human(1023), "1023 B");
        assert_eq!(super::human(1536), "1.5 KiB");
        assert_eq!(super::human(3 << 30), "3.0 GiB");
    }
}

//! `portsynth cleanup`: leftover slot directories and stale database rows.
//!
//! Slot directories are only ever mount points inside a helper's namespace,
//! so on the host they are empty directories (plus an outbox that may hold a
//! package file). Cleanup still checks every one: a directory that is a
//! mount point in this namespace is reported and left alone, and nothing is
//! ever removed recursively; nor are the disk work areas of dead runs
//! (`build_base/work/<pid>-SLnn.img`, one file each). It holds the build-base lock, so it never runs
//! while a build (or any other writer) uses the build base.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::build::lock::BuildLock;
use crate::builddb::BuildDb;
use crate::config::Config;
use crate::sandbox::runner::clear_files;

pub fn run(config: &Config) -> Result<ExitCode> {
    // A running build's slots are its own: never clean up under it.
    let _lock = BuildLock::acquire(&config.build_base)?;
    let mut refused = 0;
    let mut removed = 0;
    if config.build_base.is_dir() {
        let mounts = mount_points()?;
        for entry in std::fs::read_dir(&config.build_base)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !is_slot_name(&name) || !entry.file_type()?.is_dir() {
                continue;
            }
            let path = entry.path();
            let nested = mounts.iter().filter(|m| m.starts_with(&path)).count();
            if nested > 0 {
                eprintln!("cleanup: {} is a mount point (or holds {nested}); not touching it", path.display());
                refused += 1;
                continue;
            }
            clear_files(&path)?;
            match std::fs::remove_dir(&path) {
                Ok(()) => {
                    eprintln!("cleanup: removed {}", path.display());
                    removed += 1;
                }
                Err(e) => {
                    eprintln!("cleanup: cannot remove {} ({e}); it is not empty, leaving it", path.display());
                    refused += 1;
                }
            }
        }
    }
    for cgroup in crate::sandbox::limits::remove_stale() {
        eprintln!("cleanup: removed stale cgroup {}", cgroup.display());
    }
    for image in crate::sandbox::work_area::remove_stale(&config.build_base) {
        eprintln!("cleanup: removed stale disk work area {}", image.display());
    }
    if let Some(db) = BuildDb::open_existing(&config.database_path)? {
        let recovered = db.recover_dangling()?;
        eprintln!("cleanup: marked {} runs and {} builds interrupted", recovered.runs, recovered.builds);
    }
    eprintln!("cleanup: {removed} slot directories removed, {refused} left alone");
    Ok(ExitCode::from(if refused > 0 { super::exit::PORT_FAILED } else { super::exit::OK }))
}

/// `SLnn` or `SLnn.out`.
fn is_slot_name(name: &str) -> bool {
    let base = name.strip_suffix(".out").unwrap_or(name);
    base.len() > 2 && base.starts_with("SL") && base[2..].chars().all(|c| c.is_ascii_digit())
}

/// Every mount point of this process's mount namespace.
pub fn mount_points() -> Result<Vec<std::path::PathBuf>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    Ok(text.lines().filter_map(|line| line.split(' ').nth(4)).map(|p| Path::new(&unescape(p)).to_path_buf()).collect())
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(field: &str) -> String {
    let mut out = String::new();
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let code: String = chars.by_ref().take(3).collect();
            if let Ok(value) = u8::from_str_radix(&code, 8) {
                out.push(value as char);
                continue;
            }
            out.push('\\');
            out.push_str(&code);
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_names() {
        for ok in ["SL01", "SL12.out", "SL7"] {
            assert!(is_slot_name(ok), "{ok}");
        }
        for bad in ["SL", "SLx1", "logs", "SL01.tmp", "packages"] {
            assert!(!is_slot_name(bad), "{bad}");
        }
    }

    #[test]
    fn mountinfo_paths_are_unescaped() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }
}

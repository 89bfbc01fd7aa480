//! One log per port however many attempts it took.
//!
//! The sandbox runner writes `logs_dir/fetch/cat___port.log` afresh for
//! every attempt (so `tail -f` follows the current one). A failed attempt
//! that will be retried is appended to `cat___port.log.earlier`; when the
//! port is done, the earlier attempts and the last one are joined into the
//! port's log, so the final log tells the whole story in order.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

fn earlier(log: &Path) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".earlier");
    PathBuf::from(name)
}

fn banner(attempt: u32) -> String {
    format!("\n######################## attempt {attempt} ########################\n")
}

/// Before a port's first attempt: forget what an earlier run left.
pub fn start(log: &Path) {
    let _ = std::fs::remove_file(earlier(log));
}

/// After attempt number `attempt`; `last` when no retry follows.
pub fn finish(log: &Path, attempt: u32, last: bool) -> Result<()> {
    let earlier = earlier(log);
    if !last {
        let text = std::fs::read(log).with_context(|| format!("cannot read {}", log.display()))?;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&earlier)
            .with_context(|| format!("cannot open {}", earlier.display()))?;
        file.write_all(banner(attempt).as_bytes())?;
        file.write_all(&text).with_context(|| format!("cannot write {}", earlier.display()))?;
        return Ok(());
    }
    let Ok(mut joined) = std::fs::read(&earlier) else { return Ok(()) };
    joined.extend_from_slice(banner(attempt).as_bytes());
    joined.extend(std::fs::read(log).with_context(|| format!("cannot read {}", log.display()))?);
    crate::repo::fsutil::write_atomically(log, &joined)?;
    std::fs::remove_file(&earlier).with_context(|| format!("cannot remove {}", earlier.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_are_joined_in_order_into_the_final_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("misc___a.log");
        std::fs::write(earlier(&log), "stale from an older run").unwrap();
        start(&log);
        std::fs::write(&log, "first\n").unwrap();
        finish(&log, 1, false).unwrap();
        std::fs::write(&log, "second\n").unwrap();
        finish(&log, 2, false).unwrap();
        std::fs::write(&log, "third\n").unwrap();
        finish(&log, 3, true).unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(!text.contains("stale"));
        let at = |s: &str| text.find(s).unwrap();
        assert!(at("attempt 1") < at("first") && at("first") < at("attempt 2") && at("second") < at("attempt 3"));
        assert!(at("attempt 3") < at("third"));
        assert!(!earlier(&log).exists());
    }

    #[test]
    fn a_first_attempt_that_is_the_last_leaves_the_log_alone() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("misc___a.log");
        start(&log);
        std::fs::write(&log, "only\n").unwrap();
        finish(&log, 1, true).unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "only\n");
    }
}

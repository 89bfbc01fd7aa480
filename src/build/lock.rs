//! One run per build base: an exclusive `flock` on `build_base/portsynth.lock`
//! holding the owner's pid. The kernel drops the lock when the process dies,
//! so a crashed run never blocks the next one.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nix::fcntl::{Flock, FlockArg};

pub struct BuildLock {
    _lock: Flock<std::fs::File>,
    pub path: PathBuf,
}

impl BuildLock {
    pub fn acquire(build_base: &Path) -> Result<BuildLock> {
        std::fs::create_dir_all(build_base).with_context(|| format!("cannot create {}", build_base.display()))?;
        let path = build_base.join("portsynth.lock");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((mut file, _)) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                anyhow::bail!(
                    "another portsynth run (pid {}) is using the build base {} (lock {})",
                    pid.trim(),
                    build_base.display(),
                    path.display()
                );
            }
        };
        let file: &mut std::fs::File = &mut lock;
        file.set_len(0)?;
        file.rewind()?;
        write!(file, "{}", std::process::id())?;
        file.flush()?;
        Ok(BuildLock { _lock: lock, path })
    }
}

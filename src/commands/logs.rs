//! `portsynth logs [PORT] [--path] [--fetch] [-f]`: a port's last build log
//! (or with `--fetch` its last fetch-only log), or without a port the last
//! run's results list. Read-only: never truncates anything.
//!
//! `-f` follows a running build, like `tail -f`, and ends with the build.
//! The build database says which build is running and when it ends: the
//! port's newest row with status `running`, whose run's process is alive
//! (a run killed with kill -9 leaves its rows `running` until the next run
//! recovers them). The log is the row's `log_path`. The row is written
//! just before the sandbox creates (truncates) the log, so output older
//! than the row is the previous build's and is not shown, and a log that
//! shrinks under the reader was truncated by the new build: it is read
//! again from its start.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

use crate::builddb::{BuildDb, BuildRecord, BuildStatus};
use crate::cli::LogsArgs;
use crate::config::Config;
use crate::ports::Origin;

/// How often a followed log and its build row are looked at.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

pub fn run(config: &Config, args: &LogsArgs) -> Result<ExitCode> {
    if let (true, Some(port)) = (args.follow, &args.port) {
        if follow(config, port)? {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let path = match &args.port {
        None => config.logs_dir.join("00_last_results.log"),
        Some(port) => {
            let dir = if args.fetch { crate::fetch::pool::fetch_logs_dir(config) } else { config.logs_dir.clone() };
            port_log(&dir, port)?
        }
    };
    if !path.is_file() {
        match &args.port {
            None => bail!("no run has written {} yet", path.display()),
            Some(port) => bail!("no log for {port} at {} (not built yet?)", path.display()),
        }
    }
    let mut out = std::io::stdout().lock();
    if args.path {
        writeln!(out, "{}", path.display())?;
    } else {
        let mut file = std::fs::File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
        std::io::copy(&mut file, &mut out).with_context(|| format!("cannot read {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Follows the port's running build to its end; `false` when none runs.
fn follow(config: &Config, port: &str) -> Result<bool> {
    let origin = Origin::parse(port).map_err(|e| anyhow::anyhow!("bad port argument '{port}': {e}"))?;
    let Some(db) = BuildDb::open_existing(&config.database_path)? else { return Ok(false) };
    let Some(build) = db.builds_of_port(&origin.to_string(), 1)?.pop() else { return Ok(false) };
    if !still_running(&db, &build)? {
        return Ok(false);
    }
    let path = build.log_path.clone().unwrap_or_else(|| origin.log_file(&config.logs_dir));
    let mut out = std::io::stdout().lock();
    let mut position = 0u64;
    loop {
        // Looked at before reading: what the build wrote before it ended
        // is all in the file once the row says it ended.
        let running = still_running(&db, &build)?;
        position = copy_new_output(&path, position, build.started_ms, &mut out)?;
        if !running {
            return Ok(true);
        }
        std::thread::sleep(FOLLOW_POLL);
    }
}

/// Whether `build` is still running: its row says so and its run's process lives.
fn still_running(db: &BuildDb, build: &BuildRecord) -> Result<bool> {
    let Some(row) = db.build(&build.id)? else { return Ok(false) };
    if row.status != BuildStatus::Running {
        return Ok(false);
    }
    let Some(run) = db.run(&row.run_id)? else { return Ok(false) };
    let pid = nix::unistd::Pid::from_raw(i32::try_from(run.pid).unwrap_or(0));
    Ok(pid.as_raw() > 0 && nix::sys::signal::kill(pid, None).is_ok())
}

/// Copies what the log gained since `position` to `out`; returns the new
/// position. A log last written before the build started is the previous
/// build's (not shown); a shorter one was truncated (read from the start).
fn copy_new_output(path: &Path, position: u64, started_ms: i64, out: &mut impl Write) -> Result<u64> {
    let Ok(mut file) = std::fs::File::open(path) else { return Ok(position) };
    let metadata = file.metadata().with_context(|| format!("cannot read {}", path.display()))?;
    let modified_ms = metadata.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_millis());
    if modified_ms.is_some_and(|ms| (ms as i64) + 2 < started_ms) {
        return Ok(0);
    }
    let position = if metadata.len() < position { 0 } else { position };
    file.seek(SeekFrom::Start(position)).with_context(|| format!("cannot read {}", path.display()))?;
    let copied = std::io::copy(&mut (&mut file).take(metadata.len() - position), out)
        .with_context(|| format!("cannot copy {}", path.display()))?;
    out.flush()?;
    Ok(position + copied)
}

/// The log of `cat/port[@flavor]`; an unflavored origin of a flavored port
/// names its flavors' logs when it has none of its own.
fn port_log(dir: &Path, port: &str) -> Result<PathBuf> {
    let origin = Origin::parse(port).map_err(|e| anyhow::anyhow!("bad port argument '{port}': {e}"))?;
    let path = origin.log_file(dir);
    if path.is_file() || origin.flavor.is_some() {
        return Ok(path);
    }
    let prefix = format!("{}@", origin.log_stem());
    let mut flavored: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| name.starts_with(&prefix) && name.ends_with(".log"))
        .collect();
    flavored.sort();
    match flavored.as_slice() {
        [] => Ok(path),
        [one] => Ok(dir.join(one)),
        many => bail!("{port} has several flavor logs: {}; name the flavor (cat/port@flavor)", many.join(", ")),
    }
}

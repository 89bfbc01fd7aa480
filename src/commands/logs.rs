//! `portsynth logs [PORT] [--path] [--fetch]`: a port's last build log (or
//! with `--fetch` its last fetch-only log), or without a port the last run's
//! results list. Read-only: never truncates anything.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use crate::cli::LogsArgs;
use crate::config::Config;
use crate::ports::Origin;

pub fn run(config: &Config, args: &LogsArgs) -> Result<ExitCode> {
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

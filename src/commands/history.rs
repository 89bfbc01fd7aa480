//! `portsynth history [PORT]`: past runs, or past builds of one port, each
//! with what its phases used (wall and CPU time, make jobs, peak memory and
//! work area), as the scheduler's history sees them.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;

use crate::builddb::{BuildDb, BuildRecord, PhaseUsage};
use crate::cli::{GlobalArgs, HistoryArgs};
use crate::config::Config;
use crate::sandbox::runner::{megabytes, phase_header, phase_row};

pub fn run(config: &Config, global: &GlobalArgs, args: &HistoryArgs) -> Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let Some(db) = BuildDb::open_existing(&config.database_path)? else {
        if global.json {
            writeln!(out, "[]")?;
        } else {
            writeln!(out, "no build database yet at {}", config.database_path.display())?;
        }
        return Ok(ExitCode::SUCCESS);
    };
    match &args.port {
        None => {
            let runs = db.runs(args.limit)?;
            if global.json {
                return json(&mut out, &runs);
            }
            writeln!(
                out,
                "{:<36}  {:<19}  {:>9}  {:<11}  {:>5} {:>6} {:>7} {:>7} {:>10}  command",
                "run", "started (UTC)", "duration", "status", "built", "failed", "ignored", "skipped", "up-to-date"
            )?;
            for run in runs {
                let c = run.counts;
                writeln!(
                    out,
                    "{:<36}  {:<19}  {:>9}  {:<11}  {:>5} {:>6} {:>7} {:>7} {:>10}  {}",
                    run.id.as_str(),
                    crate::report::utc_time(run.started_ms),
                    run.ended_ms.map_or("-".into(), |end| duration(end - run.started_ms)),
                    run.status.as_str(),
                    c.built,
                    c.failed,
                    c.ignored,
                    c.skipped,
                    c.up_to_date,
                    run.command
                )?;
            }
        }
        Some(port) => {
            let origin = crate::ports::Origin::parse(port).map_err(|e| anyhow::anyhow!("bad port '{port}': {e}"))?;
            let builds = db.builds_of_port(&origin.to_string(), args.limit)?;
            let mut phases = Vec::with_capacity(builds.len());
            for build in &builds {
                phases.push(db.build_phases(&build.id)?);
            }
            if global.json {
                let entries: Vec<BuildWithPhases> =
                    builds.iter().zip(&phases).map(|(build, phases)| BuildWithPhases { build, phases }).collect();
                return json(&mut out, &entries);
            }
            writeln!(
                out,
                "{:<36}  {:<19}  {:>9}  {:<11}  {:<12}  reason",
                "build", "started (UTC)", "duration", "status", "phase"
            )?;
            for (build, phases) in builds.iter().zip(&phases) {
                writeln!(
                    out,
                    "{:<36}  {:<19}  {:>9}  {:<11}  {:<12}  {}",
                    build.id.as_str(),
                    crate::report::utc_time(build.started_ms),
                    build.duration_ms.map_or("-".into(), |ms| duration(ms as i64)),
                    build.status.as_str(),
                    build.last_phase.as_deref().unwrap_or("-"),
                    build.reason.as_deref().unwrap_or("")
                )?;
                write_phases(&mut out, build, phases)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A build and its phases, for `--json`.
#[derive(serde::Serialize)]
struct BuildWithPhases<'a> {
    #[serde(flatten)]
    build: &'a BuildRecord,
    phases: &'a [PhaseUsage],
}

/// The phase table under a build: nothing for a build that recorded none.
fn write_phases(out: &mut impl Write, build: &BuildRecord, phases: &[PhaseUsage]) -> Result<()> {
    if phases.is_empty() {
        return Ok(());
    }
    let work = build.work_dir.as_deref().unwrap_or("-");
    let retried = if build.retried_on_disk { ", retried on disk" } else { "" };
    writeln!(out, "    work area {work}{retried}, peak {}", megabytes(build.peak_work))?;
    writeln!(out, "    {}", phase_header())?;
    for phase in phases {
        writeln!(out, "    {}", phase_row(phase))?;
    }
    Ok(())
}

fn json(out: &mut impl Write, value: &impl serde::Serialize) -> Result<ExitCode> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)?;
    Ok(ExitCode::SUCCESS)
}

/// `1m05s`, `2h03m`, `850ms`.
pub fn duration(ms: i64) -> String {
    let ms = ms.max(0);
    match ms {
        0..=999 => format!("{ms}ms"),
        1000..=59_999 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, ms / 60_000 % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_durations_format() {
        assert_eq!(duration(850), "850ms");
        assert_eq!(duration(1500), "1.5s");
        assert_eq!(duration(65_000), "1m05s");
        assert_eq!(duration(7_380_000), "2h03m");
    }
}

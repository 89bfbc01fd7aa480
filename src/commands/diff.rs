//! `portsynth diff [OLD] [NEW]`: what changed between two runs of a build
//! base, port by port (the comparison is `report::diff`'s, shared with the
//! HTML report), printed as text or, with `--json`, as one document.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::builddb::BuildDb;
use crate::cli::{DiffArgs, GlobalArgs};
use crate::config::Config;
use crate::report::diff::{compare, pick_runs, RunDiff, RunSummary, MIN_DURATION_CHANGE_S};

pub fn run(config: &Config, global: &GlobalArgs, args: &DiffArgs) -> Result<ExitCode> {
    let Some(db) = BuildDb::open_existing(&config.database_path)? else {
        bail!("no build database yet at {}: there is no run to compare", config.database_path.display());
    };
    let ((old, old_builds), (new, new_builds)) = pick_runs(&db, args.old.as_deref(), args.new.as_deref())?;
    let diff = compare(&old, &old_builds, &new, &new_builds, args.threshold);
    let mut out = std::io::stdout().lock();
    if global.json {
        serde_json::to_writer_pretty(&mut out, &diff)?;
        writeln!(out)?;
    } else {
        write_text(&mut out, &diff, args.threshold)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn write_origins(out: &mut impl Write, title: &str, origins: &[String]) -> Result<()> {
    writeln!(out, "\n{title} ({}):", origins.len())?;
    for origin in origins {
        writeln!(out, "  {origin}")?;
    }
    Ok(())
}

fn write_text(out: &mut impl Write, diff: &RunDiff, threshold: f64) -> Result<()> {
    let run = |r: &RunSummary| format!("{} ({}, {})", r.id, crate::report::utc_time(r.started_ms), r.command);
    writeln!(out, "from run {}\n  to run {}", run(&diff.old), run(&diff.new))?;
    writeln!(out, "\nNew failures ({}):", diff.new_failures.len())?;
    for failure in &diff.new_failures {
        let phase = failure.phase.as_deref().unwrap_or("-");
        writeln!(out, "  {:<40} {:<12} {}", failure.origin, phase, failure.reason.as_deref().unwrap_or(""))?;
        let changed = failure.inputs_changed.as_deref().unwrap_or("unknown");
        writeln!(out, "      changed since its last success: {changed}")?;
        if let Some(log) = &failure.log {
            writeln!(out, "      log: {log}")?;
        }
    }
    write_origins(out, "Fixed", &diff.fixed)?;
    writeln!(out, "\nNewly skipped ({}):", diff.newly_skipped.len())?;
    for skipped in &diff.newly_skipped {
        writeln!(out, "  {:<40} {}", skipped.origin, skipped.reason.as_deref().unwrap_or(""))?;
    }
    write_origins(out, "Still failing", &diff.still_failing)?;
    writeln!(
        out,
        "\nDurations changed by {threshold} % and {MIN_DURATION_CHANGE_S} s or more ({}):",
        diff.durations.len()
    )?;
    for change in &diff.durations {
        let percent = (change.new_s - change.old_s) / change.old_s.max(1e-9) * 100.0;
        writeln!(out, "  {:<40} {:>8.1} s -> {:>8.1} s ({percent:+.0} %)", change.origin, change.old_s, change.new_s)?;
    }
    Ok(())
}

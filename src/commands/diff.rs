//! `portsynth diff [OLD] [NEW]`: what changed between two runs of a build
//! base, port by port — new failures (with what had changed in their inputs
//! since their last success), fixed ports, newly skipped ones, and builds
//! whose duration moved beyond a threshold.
//!
//! A port's outcome in a run is its last build row there; a port a run did
//! not touch was up to date in it. "What changed" is the plan's reason for
//! the failing build, stored with it: the build keys' own answer (`changed`:
//! its files; `framework changed`: its makefiles; `config changed`;
//! `dependency changed: cat/port`; `new`).

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

use anyhow::{bail, Result};
use serde::Serialize;

use crate::builddb::{BuildDb, BuildRecord, BuildStatus, RunId, RunRecord};
use crate::cli::{DiffArgs, GlobalArgs};
use crate::config::Config;

/// A duration change below this many seconds is noise, whatever its share.
const MIN_DURATION_CHANGE_S: f64 = 5.0;

#[derive(Debug, Serialize)]
struct RunDiff {
    old: RunSummary,
    new: RunSummary,
    new_failures: Vec<NewFailure>,
    fixed: Vec<String>,
    newly_skipped: Vec<Skipped>,
    still_failing: Vec<String>,
    durations: Vec<DurationChange>,
}

#[derive(Debug, Serialize)]
struct RunSummary {
    id: String,
    command: String,
    started_ms: i64,
}

#[derive(Debug, Serialize)]
struct NewFailure {
    origin: String,
    phase: Option<String>,
    reason: Option<String>,
    /// Why it was built: what changed in its inputs since its last success.
    changed: Option<String>,
    log: Option<String>,
}

#[derive(Debug, Serialize)]
struct Skipped {
    origin: String,
    reason: Option<String>,
}

#[derive(Debug, Serialize)]
struct DurationChange {
    origin: String,
    old_s: f64,
    new_s: f64,
}

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

/// A run and its build rows.
type RunWithBuilds = (RunRecord, Vec<BuildRecord>);

/// The runs named (an id or a unique prefix of one), else the two newest
/// runs that built something; each with its builds, read once.
fn pick_runs(db: &BuildDb, old: Option<&str>, new: Option<&str>) -> Result<(RunWithBuilds, RunWithBuilds)> {
    let runs = db.runs(usize::MAX)?;
    let with_builds = |run: &RunRecord| -> Result<RunWithBuilds> { Ok((run.clone(), db.builds_of_run(&run.id)?)) };
    let find = |prefix: &str| -> Result<&RunRecord> {
        let found: Vec<&RunRecord> = runs.iter().filter(|r| r.id.as_str().starts_with(prefix)).collect();
        match found.as_slice() {
            [one] => Ok(one),
            [] => bail!("no run '{prefix}' in {} (see portsynth history)", db.path().display()),
            _ => bail!("'{prefix}' names {} runs; give more of the id", found.len()),
        }
    };
    // Newest first, read as far as needed; a read error is not "built nothing".
    let built_something = |except: Option<RunId>| {
        let runs = runs.iter().filter(move |r| Some(&r.id) != except.as_ref());
        runs.map(with_builds).filter(|run| !matches!(run, Ok((_, builds)) if builds.is_empty()))
    };
    match (old, new) {
        (Some(old), Some(new)) => Ok((with_builds(find(old)?)?, with_builds(find(new)?)?)),
        (Some(old), None) => {
            let old = with_builds(find(old)?)?;
            let Some(newest) = built_something(Some(old.0.id.clone())).next() else {
                bail!("no other run that built something to compare run {} with", old.0.id)
            };
            Ok((old, newest?))
        }
        (None, _) => {
            let mut built = built_something(None);
            match (built.next(), built.next()) {
                (Some(new), Some(old)) => Ok((old?, new?)),
                _ => bail!("fewer than two runs that built something in {}", db.path().display()),
            }
        }
    }
}

/// Each port's last build row of a run.
fn outcomes(builds: &[BuildRecord]) -> BTreeMap<&str, &BuildRecord> {
    builds.iter().map(|b| (b.origin.as_str(), b)).collect()
}

fn compare(
    old: &RunRecord,
    old_builds: &[BuildRecord],
    new: &RunRecord,
    new_builds: &[BuildRecord],
    threshold: f64,
) -> RunDiff {
    let (before, after) = (outcomes(old_builds), outcomes(new_builds));
    let status = |map: &BTreeMap<&str, &BuildRecord>, origin: &str| map.get(origin).map(|b| b.status);
    let mut diff = RunDiff {
        old: summary(old),
        new: summary(new),
        new_failures: vec![],
        fixed: vec![],
        newly_skipped: vec![],
        still_failing: vec![],
        durations: vec![],
    };
    for (&origin, build) in &after {
        let was = status(&before, origin);
        match build.status {
            BuildStatus::Failed if was == Some(BuildStatus::Failed) => diff.still_failing.push(origin.into()),
            BuildStatus::Failed => diff.new_failures.push(NewFailure {
                origin: origin.into(),
                phase: build.last_phase.clone(),
                reason: build.reason.clone(),
                changed: build.why.clone(),
                log: build.log_path.as_ref().map(|p| p.display().to_string()),
            }),
            BuildStatus::Success if was == Some(BuildStatus::Failed) => diff.fixed.push(origin.into()),
            BuildStatus::Skipped if was != Some(BuildStatus::Skipped) => {
                diff.newly_skipped.push(Skipped { origin: origin.into(), reason: build.reason.clone() })
            }
            _ => {}
        }
        if let (Some(old_ms), Some(new_ms), BuildStatus::Success, Some(BuildStatus::Success)) =
            (before.get(origin).and_then(|b| b.duration_ms), build.duration_ms, build.status, was)
        {
            let (old_s, new_s) = (old_ms as f64 / 1000.0, new_ms as f64 / 1000.0);
            let change = (new_s - old_s).abs();
            if change >= MIN_DURATION_CHANGE_S && change >= old_s * threshold / 100.0 {
                diff.durations.push(DurationChange { origin: origin.into(), old_s, new_s });
            }
        }
    }
    diff
}

fn summary(run: &RunRecord) -> RunSummary {
    RunSummary { id: run.id.as_str().into(), command: run.command.clone(), started_ms: run.started_ms }
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
        writeln!(out, "      changed since its last success: {}", failure.changed.as_deref().unwrap_or("unknown"))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builddb::{RunCounts, RunId, RunStatus};

    fn run(id: &str) -> RunRecord {
        RunRecord {
            id: RunId::from(id.to_string()),
            command: "everything".into(),
            profile: None,
            pid: 1,
            started_ms: 0,
            ended_ms: Some(1),
            status: RunStatus::Completed,
            counts: RunCounts::default(),
        }
    }

    fn build(origin: &str, status: BuildStatus, duration_ms: u64, why: &str) -> BuildRecord {
        BuildRecord {
            last_phase: Some("build".into()),
            ended_ms: Some(duration_ms as i64),
            duration_ms: Some(duration_ms),
            reason: (status == BuildStatus::Failed).then(|| "bmake build exited with status 2".into()),
            why: Some(why.into()),
            ..BuildRecord::example(origin, status)
        }
    }

    #[test]
    fn outcomes_are_compared_port_by_port() {
        use BuildStatus::*;
        let old = [
            build("a/fixed", Failed, 1000, "new"),
            build("a/still", Failed, 1000, "new"),
            build("a/slower", Success, 10_000, "new"),
            build("a/steady", Success, 10_000, "new"),
            build("a/skip-again", Skipped, 0, "new"),
        ];
        let new = [
            build("a/fixed", Success, 1000, "changed"),
            build("a/still", Failed, 1000, "changed"),
            build("a/broken", Failed, 1000, "dependency changed: a/lib"),
            build("a/slower", Success, 30_000, "changed"),
            build("a/steady", Success, 12_000, "changed"),
            build("a/skip-again", Skipped, 0, "changed"),
            build("a/skip-new", Skipped, 0, "changed"),
        ];
        let diff = compare(&run("old"), &old, &run("new"), &new, 25.0);
        let failures: Vec<_> = diff.new_failures.iter().map(|f| (f.origin.as_str(), f.changed.as_deref())).collect();
        assert_eq!(failures, [("a/broken", Some("dependency changed: a/lib"))]);
        assert_eq!(diff.fixed, ["a/fixed"]);
        assert_eq!(diff.still_failing, ["a/still"]);
        assert_eq!(diff.newly_skipped.iter().map(|s| s.origin.as_str()).collect::<Vec<_>>(), ["a/skip-new"]);
        // 10 s -> 30 s moved; 10 s -> 12 s is 20 % and 2 s: noise.
        let moved: Vec<_> = diff.durations.iter().map(|d| (d.origin.as_str(), d.old_s, d.new_s)).collect();
        assert_eq!(moved, [("a/slower", 10.0, 30.0)]);
    }
}

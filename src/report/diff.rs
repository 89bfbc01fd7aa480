//! What changed between two runs of a build base, port by port: new
//! failures (with what had changed in their inputs since their last
//! success), fixed ports, newly skipped ones, and builds whose duration
//! moved beyond a threshold. `portsynth diff` prints it; the HTML report
//! shows a run's diff against the run before it ([`against_previous`]).
//!
//! A port's outcome in a run is its last build row there; a port a run did
//! not touch was up to date in it. "What changed" is the plan's reason for
//! the failing build, stored with it: the build keys' own answer (`changed`:
//! its files; `framework changed`: its makefiles; `config changed`;
//! `dependency changed: cat/port`; `new`).

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::builddb::{BuildDb, BuildRecord, BuildStatus, RunId, RunRecord};

/// Durations are listed when they move by this many percent (and
/// [`MIN_DURATION_CHANGE_S`]), unless told otherwise (`diff --threshold`).
pub const DEFAULT_THRESHOLD_PERCENT: f64 = 25.0;

/// A duration change below this many seconds is noise, whatever its share.
pub const MIN_DURATION_CHANGE_S: f64 = 5.0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunDiff {
    pub old: RunSummary,
    pub new: RunSummary,
    pub new_failures: Vec<NewFailure>,
    pub fixed: Vec<String>,
    pub newly_skipped: Vec<Skipped>,
    pub still_failing: Vec<String>,
    pub durations: Vec<DurationChange>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub id: String,
    pub command: String,
    pub started_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewFailure {
    pub origin: String,
    pub phase: Option<String>,
    pub reason: Option<String>,
    /// Why it was built: what changed in its inputs since its last success
    /// (the build keys' reason, as `status` shows it).
    pub changed: Option<String>,
    /// The same, said for a person ([`inputs_changed`]).
    pub inputs_changed: Option<String>,
    pub log: Option<String>,
}

/// Which of a port's inputs a build reason names: its own files, the
/// framework's makefiles it reads, the configuration, or a dependency.
pub fn inputs_changed(why: &str) -> String {
    match why {
        "changed" => "its own files (the port's directory)".into(),
        "framework changed" => "the framework makefiles it reads".into(),
        "config changed" => "the configuration (make.conf, options, environment)".into(),
        "new" => "nothing recorded: never built successfully before".into(),
        "package missing" => "nothing: its package was missing from the repository".into(),
        other => match other.strip_prefix("dependency changed: ") {
            Some(dependency) => format!("its dependency {dependency}"),
            None => other.into(),
        },
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    pub origin: String,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DurationChange {
    pub origin: String,
    pub old_s: f64,
    pub new_s: f64,
}

/// A run and its build rows.
pub type RunWithBuilds = (RunRecord, Vec<BuildRecord>);

/// The runs named (an id or a unique prefix of one), else the two newest
/// runs that built something; each with its builds, read once.
pub fn pick_runs(db: &BuildDb, old: Option<&str>, new: Option<&str>) -> Result<(RunWithBuilds, RunWithBuilds)> {
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

pub fn compare(
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
                inputs_changed: build.why.as_deref().map(inputs_changed),
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

/// The diff of run `new` against the newest run before it that built
/// something; `None` when there is none (the base's first run) or `new`
/// itself built nothing.
pub fn against_previous(db: &BuildDb, new: &RunId, threshold: f64) -> Result<Option<RunDiff>> {
    let runs = db.runs(usize::MAX)?;
    let Some(position) = runs.iter().position(|r| &r.id == new) else {
        bail!("no run {new} in {}", db.path().display())
    };
    let new_builds = db.builds_of_run(new)?;
    if new_builds.is_empty() {
        return Ok(None);
    }
    // Newest first: the runs after `new` in the list started before it.
    for old in &runs[position + 1..] {
        let old_builds = db.builds_of_run(&old.id)?;
        if !old_builds.is_empty() {
            return Ok(Some(compare(old, &old_builds, &runs[position], &new_builds, threshold)));
        }
    }
    Ok(None)
}

fn summary(run: &RunRecord) -> RunSummary {
    RunSummary { id: run.id.as_str().into(), command: run.command.clone(), started_ms: run.started_ms }
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
        assert_eq!(diff.new_failures[0].inputs_changed.as_deref(), Some("its dependency a/lib"));
        assert_eq!(diff.fixed, ["a/fixed"]);
        assert_eq!(diff.still_failing, ["a/still"]);
        assert_eq!(diff.newly_skipped.iter().map(|s| s.origin.as_str()).collect::<Vec<_>>(), ["a/skip-new"]);
        // 10 s -> 30 s moved; 10 s -> 12 s is 20 % and 2 s: noise.
        let moved: Vec<_> = diff.durations.iter().map(|d| (d.origin.as_str(), d.old_s, d.new_s)).collect();
        assert_eq!(moved, [("a/slower", 10.0, 30.0)]);
    }
}

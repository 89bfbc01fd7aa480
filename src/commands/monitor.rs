//! `portsynth monitor [--once]`: what the current (or last) run is doing,
//! read from the build database by another process. WAL mode lets this
//! read while the run writes, without ever blocking it.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use serde_json::json;

use super::history::duration;
use crate::builddb::{BuildDb, BuildRecord, BuildStatus, RunRecord, RunStatus};
use crate::cli::{GlobalArgs, MonitorArgs};
use crate::config::Config;
use crate::report::utc_time;

const REFRESH: Duration = Duration::from_secs(1);

pub fn run(config: &Config, global: &GlobalArgs, args: &MonitorArgs) -> Result<ExitCode> {
    let Some(db) = BuildDb::open_existing(&config.database_path)? else {
        writeln!(std::io::stdout().lock(), "no build database yet at {}", config.database_path.display())?;
        return Ok(ExitCode::SUCCESS);
    };
    let live = !args.once && !global.json && std::io::stdout().is_terminal();
    loop {
        let Some(run) = db.runs(1)?.into_iter().next() else {
            writeln!(std::io::stdout().lock(), "no run recorded yet")?;
            return Ok(ExitCode::SUCCESS);
        };
        let builds = db.builds_of_run(&run.id)?;
        let mut out = std::io::stdout().lock();
        if global.json {
            serde_json::to_writer_pretty(&mut out, &json!({"run": run, "builds": builds}))?;
            writeln!(out)?;
            return Ok(ExitCode::SUCCESS);
        }
        if live {
            write!(out, "\x1b[H\x1b[2J")?;
        }
        write!(out, "{}", snapshot(&run, &builds, crate::builddb::now_ms()))?;
        out.flush()?;
        if !live || run.status != RunStatus::Running {
            return Ok(ExitCode::SUCCESS);
        }
        drop(out);
        std::thread::sleep(REFRESH);
    }
}

fn snapshot(run: &RunRecord, builds: &[BuildRecord], now_ms: i64) -> String {
    let count = |status: BuildStatus| builds.iter().filter(|b| b.status == status).count();
    let elapsed = run.ended_ms.unwrap_or(now_ms) - run.started_ms;
    let mut text = format!(
        "run {} ({}), {}, started {} UTC, {}\n",
        run.id,
        run.command,
        run.status,
        utc_time(run.started_ms),
        duration(elapsed)
    );
    text.push_str(&format!(
        "built {}  failed {}  interrupted {}  ignored {}  skipped {}  running {}\n",
        count(BuildStatus::Success),
        count(BuildStatus::Failed),
        count(BuildStatus::Interrupted),
        count(BuildStatus::Ignored),
        count(BuildStatus::Skipped),
        count(BuildStatus::Running)
    ));
    let mut running: Vec<&BuildRecord> = builds.iter().filter(|b| b.status == BuildStatus::Running).collect();
    running.sort_by_key(|b| b.slot);
    for build in running {
        text.push_str(&format!(
            "  SL{:02}  {:<32}  {:<12}  {}\n",
            build.slot.unwrap_or(0),
            build.origin,
            build.last_phase.as_deref().unwrap_or("starting"),
            duration(now_ms - build.started_ms)
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builddb::{RunCounts, RunId};

    fn build(origin: &str, status: BuildStatus, slot: Option<u32>, phase: Option<&str>) -> BuildRecord {
        BuildRecord {
            slot,
            last_phase: phase.map(String::from),
            started_ms: 1_000,
            ..BuildRecord::example(origin, status)
        }
    }

    #[test]
    fn the_snapshot_counts_outcomes_and_lists_running_slots_in_order() {
        let run = RunRecord {
            id: RunId::from("r1"),
            command: "everything".into(),
            profile: None,
            pid: 1,
            started_ms: 0,
            ended_ms: None,
            status: RunStatus::Running,
            counts: RunCounts::default(),
        };
        let builds = [
            build("a/done", BuildStatus::Success, Some(1), Some("package")),
            build("b/two", BuildStatus::Running, Some(2), Some("build")),
            build("c/one", BuildStatus::Running, Some(1), None),
            build("d/bad", BuildStatus::Failed, Some(2), Some("configure")),
        ];
        let text = snapshot(&run, &builds, 61_000);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].contains("everything") && lines[0].contains("running") && lines[0].ends_with("1m01s"),
            "{text}"
        );
        assert_eq!(lines[1], "built 1  failed 1  interrupted 0  ignored 0  skipped 0  running 2");
        assert!(lines[2].starts_with("  SL01  c/one") && lines[2].contains("starting"), "{text}");
        assert!(lines[3].starts_with("  SL02  b/two") && lines[3].contains("build"), "{text}");
        assert_eq!(lines.len(), 4);
    }
}

//! Runs: one row per invocation of a building command, and the recovery of
//! runs whose process died without finishing them.
//!
//! A run records the pid of the process that owns it. A `running` run whose
//! pid no longer exists cannot finish any more, so the next run marks it (and
//! its builds still `running`) `interrupted`. Pids can be reused, so a dead
//! run might look alive for a while; that only delays the cleanup.

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::records::{BuildStatus, Recovered, RunCounts, RunId, RunRecord, RunStatus};
use super::store::{now_ms, sql_limit, BuildDb};

/// Why builds left `running` by a dead process are `interrupted`.
pub const REASON_PROCESS_DIED: &str = "portsynth process died";
/// Why builds left `running` by [`BuildDb::interrupt_run_builds`] are `interrupted`.
pub const REASON_RUN_INTERRUPTED: &str = "run interrupted";

const RUN_COLUMNS: &str =
    "id, command, profile, pid, started_ms, ended_ms, status, built, failed, ignored, skipped, up_to_date";

impl BuildDb {
    /// Records the start of a run owned by this process.
    pub fn start_run(&self, command: &str, profile: Option<&str>) -> Result<RunId> {
        self.insert_run(command, profile, std::process::id())
    }

    pub(super) fn insert_run(&self, command: &str, profile: Option<&str>, pid: u32) -> Result<RunId> {
        let id = RunId::generate();
        self.conn
            .execute(
                "INSERT INTO runs (id, command, profile, pid, started_ms, status) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![id.as_str(), command, profile, pid, now_ms(), RunStatus::Running],
            )
            .with_context(|| self.at(format_args!("recording the start of a '{command}' run")))?;
        Ok(id)
    }

    /// Records how a run ended and its tallies.
    pub fn finish_run(&self, run: &RunId, status: RunStatus, counts: &RunCounts) -> Result<()> {
        if status == RunStatus::Running {
            bail!(self.at(format_args!("run {run} cannot finish as 'running'")));
        }
        let changed = self
            .conn
            .execute(
                "UPDATE runs SET status = ?2, ended_ms = ?3,
                    built = ?4, failed = ?5, ignored = ?6, skipped = ?7, up_to_date = ?8
                 WHERE id = ?1",
                params![
                    run.as_str(),
                    status,
                    now_ms(),
                    counts.built,
                    counts.failed,
                    counts.ignored,
                    counts.skipped,
                    counts.up_to_date
                ],
            )
            .with_context(|| self.at(format_args!("recording the end of run {run}")))?;
        if changed == 0 {
            bail!(self.at(format_args!("no run {run} to finish")));
        }
        Ok(())
    }

    /// Marks `running` runs whose process is gone, and their `running`
    /// builds, `interrupted`. Also marks `running` builds of runs that are no
    /// longer running. The end time of a dead run is its last recorded
    /// activity, not now, so `history` does not show it lasting until today;
    /// its builds' durations stay unknown.
    pub fn recover_dangling(&self) -> Result<Recovered> {
        let tx = self.write_tx()?;
        let dead = dead_runs(&tx).with_context(|| self.at("looking for runs left running"))?;
        let mut recovered = Recovered::default();
        for run in &dead {
            recovered.builds +=
                interrupt_dead_run(&tx, run).with_context(|| self.at(format_args!("marking run {run} interrupted")))?;
            recovered.runs += 1;
        }
        recovered.builds +=
            interrupt_orphaned_builds(&tx).with_context(|| self.at("marking builds of finished runs interrupted"))?;
        tx.commit().with_context(|| self.at("committing the recovery of interrupted runs"))?;
        Ok(recovered)
    }

    /// Marks the builds of `run` still `running` as `interrupted` (the user
    /// gave up waiting for them); returns how many there were.
    pub fn interrupt_run_builds(&self, run: &RunId) -> Result<usize> {
        let now = now_ms();
        self.conn
            .execute(
                "UPDATE builds SET status = ?2, ended_ms = ?3, duration_ms = max(0, ?3 - started_ms), reason = ?4
                 WHERE run_id = ?1 AND status = ?5",
                params![run.as_str(), BuildStatus::Interrupted, now, REASON_RUN_INTERRUPTED, BuildStatus::Running],
            )
            .with_context(|| self.at(format_args!("marking the running builds of run {run} interrupted")))
    }

    /// The latest `limit` runs, newest first.
    pub fn runs(&self, limit: usize) -> Result<Vec<RunRecord>> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs ORDER BY started_ms DESC, id DESC LIMIT ?1");
        self.query_runs(&sql, [sql_limit(limit)]).with_context(|| self.at("reading runs"))
    }

    pub fn run(&self, id: &RunId) -> Result<Option<RunRecord>> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1");
        self.conn
            .query_row(&sql, [id.as_str()], run_from_row)
            .optional()
            .with_context(|| self.at(format_args!("reading run {id}")))
    }

    fn query_runs(&self, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<Vec<RunRecord>> {
        let mut statement = self.conn.prepare_cached(sql)?;
        let rows = statement.query_map(params, run_from_row)?;
        rows.collect()
    }
}

fn run_from_row(row: &Row<'_>) -> rusqlite::Result<RunRecord> {
    Ok(RunRecord {
        id: RunId(row.get(0)?),
        command: row.get(1)?,
        profile: row.get(2)?,
        pid: row.get(3)?,
        started_ms: row.get(4)?,
        ended_ms: row.get(5)?,
        status: row.get(6)?,
        counts: RunCounts {
            built: row.get(7)?,
            failed: row.get(8)?,
            ignored: row.get(9)?,
            skipped: row.get(10)?,
            up_to_date: row.get(11)?,
        },
    })
}

/// `running` runs whose process no longer exists.
fn dead_runs(conn: &Connection) -> rusqlite::Result<Vec<RunId>> {
    let mut statement = conn.prepare("SELECT id, pid FROM runs WHERE status = ?1")?;
    let running = statement
        .query_map([RunStatus::Running], |row| Ok((RunId(row.get(0)?), row.get::<_, i64>(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(running.into_iter().filter(|(_, pid)| !process_alive(*pid)).map(|(id, _)| id).collect())
}

/// Whether a process with this pid exists (signal 0 checks without sending).
/// `EPERM` means it exists but belongs to someone else.
fn process_alive(pid: i64) -> bool {
    match i32::try_from(pid) {
        Ok(raw) if raw > 0 => matches!(kill(Pid::from_raw(raw), None), Ok(()) | Err(Errno::EPERM)),
        _ => false,
    }
}

/// Marks one dead run and its running builds interrupted; returns the number of builds.
fn interrupt_dead_run(conn: &Connection, run: &RunId) -> rusqlite::Result<usize> {
    let last_activity: i64 = conn.query_row(
        "SELECT max(runs.started_ms, coalesce(max(builds.started_ms), 0), coalesce(max(builds.ended_ms), 0))
         FROM runs LEFT JOIN builds ON builds.run_id = runs.id WHERE runs.id = ?1",
        [run.as_str()],
        |row| row.get(0),
    )?;
    conn.execute(
        "UPDATE runs SET status = ?2, ended_ms = ?3 WHERE id = ?1",
        params![run.as_str(), RunStatus::Interrupted, last_activity],
    )?;
    conn.execute(
        "UPDATE builds SET status = ?2, ended_ms = max(started_ms, ?3), reason = ?4 WHERE run_id = ?1 AND status = ?5",
        params![run.as_str(), BuildStatus::Interrupted, last_activity, REASON_PROCESS_DIED, BuildStatus::Running],
    )
}

/// Builds still `running` although their run has ended.
fn interrupt_orphaned_builds(conn: &Connection) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE builds SET status = ?1, reason = ?3,
            ended_ms = max(started_ms, coalesce((SELECT ended_ms FROM runs WHERE runs.id = builds.run_id), ?2))
         WHERE status = ?4 AND run_id IN (SELECT id FROM runs WHERE status != ?5)",
        params![BuildStatus::Interrupted, now_ms(), REASON_PROCESS_DIED, BuildStatus::Running, RunStatus::Running],
    )
}

//! Builds, and the port states and package index that successful builds
//! update.
//!
//! A build row is written when a build starts (`running`) and updated when it
//! ends. `interrupted` is the one end state that can still change: it is set
//! on a worker's behalf (double Ctrl-C) and the worker's own later report of
//! what really happened wins. A success updates the build, `ports` and
//! `packages` in one transaction, so the package index never names a build
//! that did not succeed and a failed build never touches either table.

use std::collections::HashMap;

use anyhow::{anyhow, bail, Context, Result};
use rusqlite::types::Type;
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::records::{
    BuildId, BuildRecord, BuildStatus, BuildUsage, NewBuild, PackageEntry, PackageRecord, PhaseUsage, PortState,
    ResourceSample, RunId,
};
use super::store::{now_ms, sql_limit, unsigned, BuildDb};

const BUILD_COLUMNS: &str =
    "id, run_id, origin, pkgname, version, status, last_phase, slot, started_ms, ended_ms, duration_ms, reason, log_path, \
                             cpu_ms, peak_memory, peak_work, make_jobs, work_dir, retried_on_disk, why";
const PORT_COLUMNS: &str = "origin, port_crc, makefiles_crc, config_crc, dep_keys, effective_key, pkgname, version, \
                            package_file, last_build_id";
const PACKAGE_COLUMNS: &str = "origin, pkgname, version, file, sha256, size, build_id, updated_ms";

impl BuildDb {
    /// Records that a build has started now.
    pub fn start_build(&self, run: &RunId, build: &NewBuild<'_>) -> Result<BuildId> {
        let id = BuildId::generate();
        let log_path = build.log_path.map(|path| path.to_string_lossy().into_owned());
        self.conn
            .execute(
                "INSERT INTO builds (id, run_id, origin, pkgname, version, status, slot, started_ms, log_path, why)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    id.as_str(),
                    run.as_str(),
                    build.origin,
                    build.pkgname,
                    build.version,
                    BuildStatus::Running,
                    build.slot,
                    now_ms(),
                    log_path,
                    build.why
                ],
            )
            .with_context(|| self.at(format_args!("recording the start of the build of {}", build.origin)))?;
        Ok(id)
    }

    /// Records the phase a running build has reached, for `monitor` and `status`.
    pub fn update_build_phase(&self, build: &BuildId, phase: &str) -> Result<()> {
        self.conn
            .execute("UPDATE builds SET last_phase = ?2 WHERE id = ?1", params![build.as_str(), phase])
            .with_context(|| self.at(format_args!("recording phase {phase} of build {build}")))?;
        Ok(())
    }

    /// Records how a build ended: `Success`, `Failed` or `Interrupted`. A
    /// `None` phase keeps the last one recorded. For a success that produced
    /// a package, use [`record_success`](Self::record_success) instead.
    pub fn finish_build(
        &self,
        build: &BuildId,
        status: BuildStatus,
        last_phase: Option<&str>,
        reason: Option<&str>,
    ) -> Result<()> {
        if !status.ends_a_build() {
            bail!(self.at(format_args!("build {build} cannot end as '{status}'")));
        }
        self.end_build(&self.conn, build, status, last_phase, reason)
    }

    /// Records what a build used, as a whole and per phase, in one
    /// transaction (the phases replace any recorded before).
    pub fn record_usage(&self, build: &BuildId, usage: &BuildUsage) -> Result<()> {
        let cpu_ms = usage.cpu.map(|c| c.as_millis().min(i64::MAX as u128) as i64);
        let tx = self.write_tx()?;
        tx.execute(
            "UPDATE builds SET cpu_ms = ?2, peak_memory = ?3, peak_work = ?4, make_jobs = ?5, work_dir = ?6,
                               retried_on_disk = ?7
             WHERE id = ?1",
            params![
                build.as_str(),
                cpu_ms,
                usage.peak_memory.map(signed),
                usage.peak_work.map(signed),
                usage.make_jobs,
                usage.work_dir,
                usage.retried_on_disk
            ],
        )
        .and_then(|_| tx.execute("DELETE FROM build_phases WHERE build_id = ?1", [build.as_str()]))
        .with_context(|| self.at(format_args!("recording the resource usage of build {build}")))?;
        for (seq, phase) in usage.phases.iter().enumerate() {
            tx.execute(
                "INSERT INTO build_phases (build_id, seq, phase, wall_ms, cpu_ms, make_jobs, peak_memory, peak_work,
                                           serial_ms, parallel_cpu_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    build.as_str(),
                    seq as i64,
                    phase.phase,
                    signed(phase.wall_ms),
                    phase.cpu_ms.map(signed),
                    phase.make_jobs,
                    phase.peak_memory.map(signed),
                    phase.peak_work.map(signed),
                    phase.serial_ms.map(signed),
                    phase.parallel_cpu_ms.map(signed)
                ],
            )
            .with_context(|| self.at(format_args!("recording phase {} of build {build}", phase.phase)))?;
        }
        tx.commit().with_context(|| self.at(format_args!("committing the resource usage of build {build}")))
    }

    /// The recorded phases of a build, in the order they ran.
    pub fn build_phases(&self, build: &BuildId) -> Result<Vec<PhaseUsage>> {
        let read = || -> rusqlite::Result<Vec<PhaseUsage>> {
            let mut statement = self.conn.prepare_cached(
                "SELECT phase, wall_ms, cpu_ms, make_jobs, peak_memory, peak_work, serial_ms, parallel_cpu_ms
                 FROM build_phases WHERE build_id = ?1 ORDER BY seq",
            )?;
            let rows = statement.query_map([build.as_str()], phase_from_row)?;
            rows.collect()
        };
        read().with_context(|| self.at(format_args!("reading the phases of build {build}")))
    }

    /// The resource history of every port: its latest `per_port` successful
    /// builds that recorded their phases, newest first, by origin.
    pub fn resource_history_all(&self, per_port: usize) -> Result<HashMap<String, Vec<ResourceSample>>> {
        let read = || -> rusqlite::Result<Vec<(String, String, ResourceSample, PhaseUsage)>> {
            let mut statement = self.conn.prepare_cached(
                "SELECT b.origin, b.id, b.make_jobs, b.duration_ms, b.cpu_ms, b.peak_memory, b.peak_work,
                        b.retried_on_disk,
                        p.phase, p.wall_ms, p.cpu_ms, p.make_jobs, p.peak_memory, p.peak_work,
                        p.serial_ms, p.parallel_cpu_ms
                 FROM builds b JOIN build_phases p ON p.build_id = b.id
                 WHERE b.status = ?1
                 ORDER BY b.origin, b.started_ms DESC, b.id DESC, p.seq",
            )?;
            let rows = statement.query_map([BuildStatus::Success], |row| {
                let sample = ResourceSample {
                    make_jobs: row.get::<_, Option<u32>>(2)?.unwrap_or(1),
                    wall_ms: row.get::<_, Option<i64>>(3)?.map_or(0, unsigned),
                    cpu_ms: row.get::<_, Option<i64>>(4)?.map(unsigned),
                    serial_ms: 0,
                    build_wall_ms: 0,
                    build_cpu_ms: None,
                    build_serial_ms: None,
                    build_parallel_cpu_ms: None,
                    peak_memory: row.get::<_, Option<i64>>(5)?.map(unsigned),
                    peak_work: row.get::<_, Option<i64>>(6)?.map(unsigned),
                    retried_on_disk: row.get(7)?,
                };
                Ok((row.get(0)?, row.get(1)?, sample, phase_from_row_at(row, 8)?))
            })?;
            rows.collect()
        };
        let rows = read().with_context(|| self.at("reading the resource history"))?;
        Ok(history_from_rows(rows, per_port))
    }

    /// Records a port that was not built (`Skipped` because a dependency
    /// failed, `Ignored` because the port says so) as a finished build row.
    pub fn record_outcome(
        &self,
        run: &RunId,
        origin: &str,
        pkgname: &str,
        version: &str,
        status: BuildStatus,
        reason: &str,
    ) -> Result<BuildId> {
        if !status.is_outcome_without_build() {
            bail!(self.at(format_args!("'{status}' is not an outcome without a build ({origin})")));
        }
        let id = BuildId::generate();
        let now = now_ms();
        self.conn
            .execute(
                "INSERT INTO builds (id, run_id, origin, pkgname, version, status, started_ms, ended_ms, reason)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8)",
                params![id.as_str(), run.as_str(), origin, pkgname, version, status, now, reason],
            )
            .with_context(|| self.at(format_args!("recording {origin} as {status}")))?;
        Ok(id)
    }

    /// In one transaction: ends `build` as a success, stores the state its
    /// port was built from and enters its package in the index. A success
    /// has a `reason` only when it was retried (on disk, or requeued by
    /// Slurm on another node): what happened, for `history` and `diff`.
    pub fn record_success(
        &self,
        build: &BuildId,
        state: &PortState,
        package: &PackageEntry,
        reason: Option<&str>,
    ) -> Result<()> {
        let tx = self.write_tx()?;
        self.end_build(&tx, build, BuildStatus::Success, None, reason)?;
        let origin: String = tx
            .query_row("SELECT origin FROM builds WHERE id = ?1", [build.as_str()], |row| row.get(0))
            .with_context(|| self.at(format_args!("reading the origin of build {build}")))?;
        self.upsert_port(&tx, &origin, build, state)?;
        self.upsert_package(&tx, &origin, build, package)?;
        tx.commit().with_context(|| self.at(format_args!("committing the success of build {build} ({origin})")))
    }

    fn end_build(
        &self,
        conn: &Connection,
        build: &BuildId,
        status: BuildStatus,
        last_phase: Option<&str>,
        reason: Option<&str>,
    ) -> Result<()> {
        let changed = conn
            .execute(
                "UPDATE builds SET status = ?2, last_phase = coalesce(?3, last_phase), reason = ?4,
                    ended_ms = ?5, duration_ms = max(0, ?5 - started_ms)
                 WHERE id = ?1 AND status IN (?6, ?7)",
                params![
                    build.as_str(),
                    status,
                    last_phase,
                    reason,
                    now_ms(),
                    BuildStatus::Running,
                    BuildStatus::Interrupted
                ],
            )
            .with_context(|| self.at(format_args!("recording the end of build {build}")))?;
        if changed == 0 {
            return Err(self.why_not_running(conn, build));
        }
        Ok(())
    }

    fn why_not_running(&self, conn: &Connection, build: &BuildId) -> anyhow::Error {
        let status = conn
            .query_row("SELECT status FROM builds WHERE id = ?1", [build.as_str()], |row| row.get::<_, BuildStatus>(0))
            .optional();
        match status {
            Ok(None) => anyhow!(self.at(format_args!("no build {build} to finish"))),
            Ok(Some(status)) => anyhow!(self.at(format_args!("build {build} has already ended as '{status}'"))),
            Err(e) => anyhow::Error::new(e).context(self.at(format_args!("reading build {build}"))),
        }
    }

    fn upsert_port(&self, conn: &Connection, origin: &str, build: &BuildId, state: &PortState) -> Result<()> {
        let dep_keys = serde_json::to_string(&state.dep_keys)
            .with_context(|| self.at(format_args!("encoding the dependency keys of {origin}")))?;
        conn.execute(
            "INSERT INTO ports (origin, port_crc, makefiles_crc, config_crc, dep_keys, effective_key, pkgname, version,
                                package_file, last_build_id, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT (origin) DO UPDATE SET
                port_crc = excluded.port_crc, makefiles_crc = excluded.makefiles_crc,
                config_crc = excluded.config_crc, dep_keys = excluded.dep_keys,
                effective_key = excluded.effective_key, pkgname = excluded.pkgname, version = excluded.version,
                package_file = excluded.package_file, last_build_id = excluded.last_build_id,
                updated_ms = excluded.updated_ms",
            params![
                origin,
                state.port_crc,
                state.makefiles_crc,
                state.config_crc,
                dep_keys,
                state.effective_key,
                state.pkgname,
                state.version,
                state.package_file,
                build.as_str(),
                now_ms()
            ],
        )
        .with_context(|| self.at(format_args!("storing the port state of {origin}")))?;
        Ok(())
    }

    fn upsert_package(&self, conn: &Connection, origin: &str, build: &BuildId, package: &PackageEntry) -> Result<()> {
        let size = i64::try_from(package.size)
            .with_context(|| self.at(format_args!("package {} is too large to record", package.file)))?;
        conn.execute(
            "INSERT INTO packages (origin, pkgname, version, file, sha256, size, build_id, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (origin) DO UPDATE SET
                pkgname = excluded.pkgname, version = excluded.version, file = excluded.file,
                sha256 = excluded.sha256, size = excluded.size, build_id = excluded.build_id,
                updated_ms = excluded.updated_ms",
            params![
                origin,
                package.pkgname,
                package.version,
                package.file,
                package.sha256,
                size,
                build.as_str(),
                now_ms()
            ],
        )
        .with_context(|| self.at(format_args!("storing the package of {origin} in the index")))?;
        Ok(())
    }

    /// Forgets removed package files (`rebuild-repository --prune`): their
    /// index rows and the stored states that name them, so the database
    /// never points at a file that is gone. Returns the rows removed.
    pub fn forget_packages(&self, files: &[String]) -> Result<usize> {
        let tx = self.write_tx()?;
        let mut removed = 0;
        for file in files {
            removed += tx
                .execute("DELETE FROM packages WHERE file = ?1", [file])
                .with_context(|| self.at(format_args!("forgetting package {file}")))?;
            removed += tx
                .execute("DELETE FROM ports WHERE package_file = ?1", [file])
                .with_context(|| self.at(format_args!("forgetting the port state naming {file}")))?;
        }
        tx.commit().with_context(|| self.at("committing forgotten packages"))?;
        Ok(removed)
    }

    pub fn build(&self, id: &BuildId) -> Result<Option<BuildRecord>> {
        let sql = format!("SELECT {BUILD_COLUMNS} FROM builds WHERE id = ?1");
        self.conn
            .query_row(&sql, [id.as_str()], build_from_row)
            .optional()
            .with_context(|| self.at(format_args!("reading build {id}")))
    }

    /// The latest `limit` builds of a port, newest first.
    pub fn builds_of_port(&self, origin: &str, limit: usize) -> Result<Vec<BuildRecord>> {
        let sql =
            format!("SELECT {BUILD_COLUMNS} FROM builds WHERE origin = ?1 ORDER BY started_ms DESC, id DESC LIMIT ?2");
        self.query_builds(&sql, params![origin, sql_limit(limit)])
            .with_context(|| self.at(format_args!("reading the builds of {origin}")))
    }

    /// Every build of a run, in the order they started.
    pub fn builds_of_run(&self, run: &RunId) -> Result<Vec<BuildRecord>> {
        let sql = format!("SELECT {BUILD_COLUMNS} FROM builds WHERE run_id = ?1 ORDER BY started_ms, id");
        self.query_builds(&sql, [run.as_str()])
            .with_context(|| self.at(format_args!("reading the builds of run {run}")))
    }

    fn query_builds(&self, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<Vec<BuildRecord>> {
        let mut statement = self.conn.prepare_cached(sql)?;
        let rows = statement.query_map(params, build_from_row)?;
        rows.collect()
    }

    /// Durations of the latest `limit` successful builds of a port, newest first.
    pub fn success_durations(&self, origin: &str, limit: usize) -> Result<Vec<u64>> {
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT duration_ms FROM builds
                 WHERE origin = ?1 AND status = ?2 AND duration_ms IS NOT NULL
                 ORDER BY started_ms DESC LIMIT ?3",
            )
            .with_context(|| self.at("preparing to read build durations"))?;
        let rows = statement.query_map(params![origin, BuildStatus::Success, sql_limit(limit)], |row| row.get(0));
        rows.and_then(|rows| rows.map(|duration| duration.map(unsigned)).collect())
            .with_context(|| self.at(format_args!("reading the build durations of {origin}")))
    }

    /// Durations of every successful build, by origin, newest first.
    pub fn success_durations_all(&self) -> Result<HashMap<String, Vec<u64>>> {
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT origin, duration_ms FROM builds WHERE status = ?1 AND duration_ms IS NOT NULL
                 ORDER BY origin, started_ms DESC",
            )
            .with_context(|| self.at("preparing to read build durations"))?;
        let rows = statement
            .query_map([BuildStatus::Success], |row| Ok((row.get::<_, String>(0)?, unsigned(row.get(1)?))))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .with_context(|| self.at("reading build durations"))?;
        let mut durations: HashMap<String, Vec<u64>> = HashMap::new();
        for (origin, duration) in rows {
            durations.entry(origin).or_default().push(duration);
        }
        Ok(durations)
    }

    /// The state `origin` was last built successfully from.
    pub fn port_state(&self, origin: &str) -> Result<Option<PortState>> {
        let sql = format!("SELECT {PORT_COLUMNS} FROM ports WHERE origin = ?1");
        self.conn
            .query_row(&sql, [origin], port_from_row)
            .optional()
            .map(|found| found.map(|(_, state)| state))
            .with_context(|| self.at(format_args!("reading the port state of {origin}")))
    }

    /// Every stored port state, by origin.
    pub fn port_states(&self) -> Result<HashMap<String, PortState>> {
        let sql = format!("SELECT {PORT_COLUMNS} FROM ports");
        let read = || -> rusqlite::Result<HashMap<String, PortState>> {
            let mut statement = self.conn.prepare_cached(&sql)?;
            let rows = statement.query_map([], port_from_row)?;
            rows.collect()
        };
        read().with_context(|| self.at("reading port states"))
    }

    pub fn package(&self, origin: &str) -> Result<Option<PackageRecord>> {
        let sql = format!("SELECT {PACKAGE_COLUMNS} FROM packages WHERE origin = ?1");
        self.conn
            .query_row(&sql, [origin], package_from_row)
            .optional()
            .with_context(|| self.at(format_args!("reading the package of {origin}")))
    }

    /// The package index, ordered by origin.
    pub fn packages(&self) -> Result<Vec<PackageRecord>> {
        let sql = format!("SELECT {PACKAGE_COLUMNS} FROM packages ORDER BY origin");
        let read = || -> rusqlite::Result<Vec<PackageRecord>> {
            let mut statement = self.conn.prepare_cached(&sql)?;
            let rows = statement.query_map([], package_from_row)?;
            rows.collect()
        };
        read().with_context(|| self.at("reading the package index"))
    }
}

fn build_from_row(row: &Row<'_>) -> rusqlite::Result<BuildRecord> {
    Ok(BuildRecord {
        id: BuildId(row.get(0)?),
        run_id: RunId(row.get(1)?),
        origin: row.get(2)?,
        pkgname: row.get(3)?,
        version: row.get(4)?,
        status: row.get(5)?,
        last_phase: row.get(6)?,
        slot: row.get(7)?,
        started_ms: row.get(8)?,
        ended_ms: row.get(9)?,
        duration_ms: row.get::<_, Option<i64>>(10)?.map(unsigned),
        reason: row.get(11)?,
        log_path: row.get::<_, Option<String>>(12)?.map(Into::into),
        cpu_ms: row.get::<_, Option<i64>>(13)?.map(unsigned),
        peak_memory: row.get::<_, Option<i64>>(14)?.map(unsigned),
        peak_work: row.get::<_, Option<i64>>(15)?.map(unsigned),
        make_jobs: row.get(16)?,
        work_dir: row.get(17)?,
        retried_on_disk: row.get(18)?,
        why: row.get(19)?,
    })
}

fn phase_from_row(row: &Row<'_>) -> rusqlite::Result<PhaseUsage> {
    phase_from_row_at(row, 0)
}

/// A [`PhaseUsage`] from the eight columns starting at `at`.
fn phase_from_row_at(row: &Row<'_>, at: usize) -> rusqlite::Result<PhaseUsage> {
    Ok(PhaseUsage {
        phase: row.get(at)?,
        wall_ms: unsigned(row.get(at + 1)?),
        cpu_ms: row.get::<_, Option<i64>>(at + 2)?.map(unsigned),
        make_jobs: row.get(at + 3)?,
        peak_memory: row.get::<_, Option<i64>>(at + 4)?.map(unsigned),
        peak_work: row.get::<_, Option<i64>>(at + 5)?.map(unsigned),
        serial_ms: row.get::<_, Option<i64>>(at + 6)?.map(unsigned),
        parallel_cpu_ms: row.get::<_, Option<i64>>(at + 7)?.map(unsigned),
    })
}

/// Folds (origin, build, sample, phase) rows, ordered by origin, build
/// (newest first) and phase, into samples: the `build` phase's time and
/// CPU, the other phases' time as serial time; at most `per_port` builds
/// per origin.
fn history_from_rows(
    rows: Vec<(String, String, ResourceSample, PhaseUsage)>,
    per_port: usize,
) -> HashMap<String, Vec<ResourceSample>> {
    let mut history: HashMap<String, Vec<ResourceSample>> = HashMap::new();
    let mut current: Option<String> = None;
    for (origin, build, sample, phase) in rows {
        let samples = history.entry(origin).or_default();
        if current.as_deref() != Some(build.as_str()) {
            current = Some(build);
            samples.push(sample);
        }
        if samples.len() > per_port {
            continue;
        }
        let sample = samples.last_mut().expect("pushed");
        if phase.phase == crate::ports::Phase::Build.name() {
            sample.build_wall_ms += phase.wall_ms;
            sample.build_cpu_ms = sum(sample.build_cpu_ms, phase.cpu_ms);
            sample.build_serial_ms = sum(sample.build_serial_ms, phase.serial_ms);
            sample.build_parallel_cpu_ms = sum(sample.build_parallel_cpu_ms, phase.parallel_cpu_ms);
        } else {
            sample.serial_ms += phase.wall_ms;
        }
    }
    for samples in history.values_mut() {
        samples.truncate(per_port);
    }
    history
}

/// Two measurements added, either where only one exists.
fn sum(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a + b),
        (a, b) => a.or(b),
    }
}

/// A size or duration as SQLite stores it.
fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn port_from_row(row: &Row<'_>) -> rusqlite::Result<(String, PortState)> {
    let dep_keys: String = row.get(4)?;
    let state = PortState {
        port_crc: row.get(1)?,
        makefiles_crc: row.get(2)?,
        config_crc: row.get(3)?,
        dep_keys: serde_json::from_str(&dep_keys)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(4, Type::Text, Box::new(e)))?,
        effective_key: row.get(5)?,
        pkgname: row.get(6)?,
        version: row.get(7)?,
        package_file: row.get(8)?,
        last_build_id: row.get(9)?,
    };
    Ok((row.get(0)?, state))
}

fn package_from_row(row: &Row<'_>) -> rusqlite::Result<PackageRecord> {
    Ok(PackageRecord {
        origin: row.get(0)?,
        pkgname: row.get(1)?,
        version: row.get(2)?,
        file: row.get(3)?,
        sha256: row.get(4)?,
        size: unsigned(row.get(5)?),
        build_id: row.get::<_, Option<String>>(6)?.map(BuildId),
        updated_ms: row.get(7)?,
    })
}

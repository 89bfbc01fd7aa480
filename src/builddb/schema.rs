//! Opening a connection safely: integrity check, pragmas, migrations.
//!
//! The schema is an ordered list of SQL steps, [`MIGRATIONS`]; version N is
//! the result of applying the first N. Changing the schema means appending a
//! step, never editing one that has shipped. The version lives in a one-row
//! `schema_version` table; a missing table means version 0 (a new file).
//!
//! Opening reads first and writes only when it must: a database that is
//! already current is never locked for writing, so read-only commands open it
//! while a build is running without waiting. Pending migrations run in one
//! `BEGIN IMMEDIATE` transaction that re-reads the version under the write
//! lock, so two processes opening a new file at once migrate it exactly once,
//! and a failing step leaves the previous version intact.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rusqlite::{Connection, ErrorCode, OptionalExtension, Transaction, TransactionBehavior};

use super::error::DbOpenError;

/// How long a statement waits for another connection's lock before failing.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Schema version 1: runs, builds, port states, package index, scan cache.
const SCHEMA_V1: &str = "
CREATE TABLE runs (
    id          TEXT PRIMARY KEY,
    command     TEXT NOT NULL,
    profile     TEXT,
    pid         INTEGER NOT NULL,
    started_ms  INTEGER NOT NULL,
    ended_ms    INTEGER,
    status      TEXT NOT NULL CHECK (status IN ('running', 'completed', 'aborted', 'interrupted')),
    built       INTEGER NOT NULL DEFAULT 0,
    failed      INTEGER NOT NULL DEFAULT 0,
    ignored     INTEGER NOT NULL DEFAULT 0,
    skipped     INTEGER NOT NULL DEFAULT 0,
    up_to_date  INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE builds (
    id          TEXT PRIMARY KEY,
    run_id      TEXT NOT NULL REFERENCES runs (id),
    origin      TEXT NOT NULL,
    pkgname     TEXT NOT NULL,
    version     TEXT NOT NULL,
    status      TEXT NOT NULL
                CHECK (status IN ('running', 'success', 'failed', 'interrupted', 'skipped', 'ignored')),
    last_phase  TEXT,
    slot        INTEGER,
    started_ms  INTEGER NOT NULL,
    ended_ms    INTEGER,
    duration_ms INTEGER,
    reason      TEXT,
    log_path    TEXT
);
CREATE INDEX builds_by_origin ON builds (origin, started_ms);
CREATE INDEX builds_by_run ON builds (run_id);

-- Updated only when a build succeeds.
CREATE TABLE ports (
    origin         TEXT PRIMARY KEY,
    port_crc       INTEGER NOT NULL,
    makefiles_crc  INTEGER NOT NULL,
    config_crc     INTEGER NOT NULL,
    dep_keys       TEXT NOT NULL,  -- JSON object: dependency origin -> effective key
    effective_key  INTEGER NOT NULL,
    pkgname        TEXT NOT NULL,
    version        TEXT NOT NULL,
    package_file   TEXT NOT NULL,
    last_build_id  TEXT REFERENCES builds (id),
    updated_ms     INTEGER NOT NULL
);

CREATE TABLE packages (
    origin      TEXT PRIMARY KEY,
    pkgname     TEXT NOT NULL,
    version     TEXT NOT NULL,
    file        TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    size        INTEGER NOT NULL,
    build_id    TEXT REFERENCES builds (id),
    updated_ms  INTEGER NOT NULL
);

CREATE TABLE scan_cache (
    dir         TEXT PRIMARY KEY,  -- category/port
    dir_crc     INTEGER NOT NULL,
    makefiles   TEXT NOT NULL,     -- JSON array of [path, crc]
    metadata    TEXT NOT NULL,     -- JSON, opaque to the database
    updated_ms  INTEGER NOT NULL
);
";

/// What a build's cgroup measured: CPU time of everything it ran and its
/// peak memory (NULL where no cgroup was usable).
const SCHEMA_V2: &str = "
ALTER TABLE builds ADD COLUMN cpu_ms INTEGER;
ALTER TABLE builds ADD COLUMN peak_memory INTEGER;
";

/// Stat signatures (git's index): per path, what `stat` said when the file's
/// content CRC (or the directory's listing) was taken, so that a warm check
/// reads only what changed (`builddb::crc`). `crc` is a file's content CRC or
/// a port directory's port CRC, `basis` the CRC of the file CRCs that port
/// CRC was made from; `listing` a directory's counted entries. Inode and
/// device are stored as the bits of the unsigned values.
const SCHEMA_V3: &str = "
CREATE TABLE signatures (
    path         TEXT PRIMARY KEY,
    kind         INTEGER NOT NULL CHECK (kind IN (0, 1)),  -- 0 file, 1 directory
    size         INTEGER NOT NULL,
    mtime_ns     INTEGER NOT NULL,
    ctime_ns     INTEGER NOT NULL,
    inode        INTEGER NOT NULL,
    device       INTEGER NOT NULL,
    crc          INTEGER,
    basis        INTEGER,
    listing      TEXT,
    recorded_ns  INTEGER NOT NULL
) WITHOUT ROWID;
";

/// What each phase of a build used (wall and CPU time, make jobs, peak
/// memory and peak work-area size, `seq` its place in the build) and, per
/// build, the peak work area, make jobs, where the work area was (`tmpfs`
/// or `disk`) and whether a full tmpfs made the runner retry it on disk:
/// the history the scheduler places builds by.
const SCHEMA_V4: &str = "
ALTER TABLE builds ADD COLUMN peak_work INTEGER;
ALTER TABLE builds ADD COLUMN make_jobs INTEGER;
ALTER TABLE builds ADD COLUMN work_dir TEXT CHECK (work_dir IN ('tmpfs', 'disk'));
ALTER TABLE builds ADD COLUMN retried_on_disk INTEGER NOT NULL DEFAULT 0;
CREATE TABLE build_phases (
    build_id     TEXT NOT NULL REFERENCES builds (id),
    seq          INTEGER NOT NULL,
    phase        TEXT NOT NULL,
    wall_ms      INTEGER NOT NULL,
    cpu_ms       INTEGER,
    make_jobs    INTEGER NOT NULL,
    peak_memory  INTEGER,
    peak_work    INTEGER,
    PRIMARY KEY (build_id, seq)
) WITHOUT ROWID;
";

/// Per phase, its serial time and parallel CPU time as sampled from
/// the runnable threads of the sandbox's cgroup (`sandbox::parallelism`):
/// the speed-up a port showed, whatever the other builds took of the cores.
/// Per build, why the plan built it (`changed`, `dependency changed: …`):
/// what `diff` says changed in a new failure's inputs.
const SCHEMA_V5: &str = "
ALTER TABLE build_phases ADD COLUMN serial_ms INTEGER;
ALTER TABLE build_phases ADD COLUMN parallel_cpu_ms INTEGER;
ALTER TABLE builds ADD COLUMN why TEXT;
";

/// Every schema step, oldest first. Append to change the schema.
pub(crate) const MIGRATIONS: &[&str] = &[SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4, SCHEMA_V5];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Makes a freshly opened connection ready for use, or explains why it cannot be.
pub(crate) fn prepare(conn: &Connection, path: &Path, migrations: &[&str]) -> Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT).with_context(|| format!("{}: setting busy_timeout", path.display()))?;
    check_integrity(conn, path)?;
    set_pragmas(conn).with_context(|| format!("{}: setting pragmas on the build database", path.display()))?;
    migrate(conn, path, migrations)
}

/// Runs `PRAGMA quick_check` before anything that could write to the file.
fn check_integrity(conn: &Connection, path: &Path) -> Result<()> {
    match quick_check(conn) {
        Ok(problems) if problems.is_empty() => Ok(()),
        Ok(problems) => Err(DbOpenError::corrupt(path, summarize(&problems)).into()),
        Err(e) if means_corrupt(&e) => Err(DbOpenError::corrupt(path, e.to_string()).into()),
        Err(e) => Err(e).with_context(|| format!("{}: cannot read the build database", path.display())),
    }
}

/// The problems `quick_check` reports; empty when it says "ok".
fn quick_check(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut statement = conn.prepare("PRAGMA quick_check")?;
    let lines = statement.query_map([], |row| row.get::<_, String>(0))?.collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(lines.into_iter().filter(|line| line != "ok").collect())
}

fn summarize(problems: &[String]) -> String {
    const SHOWN: usize = 3;
    let mut text = problems.iter().take(SHOWN).cloned().collect::<Vec<_>>().join("; ");
    if problems.len() > SHOWN {
        text.push_str(&format!("; and {} more problems", problems.len() - SHOWN));
    }
    text
}

fn means_corrupt(error: &rusqlite::Error) -> bool {
    matches!(error.sqlite_error_code(), Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt))
}

fn set_pragmas(conn: &Connection) -> rusqlite::Result<()> {
    enable_wal(conn)?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")
}

/// Switching to WAL needs an exclusive lock, and SQLite reports `SQLITE_BUSY`
/// for it at once instead of calling the busy handler (this happens when
/// several processes create the file together), so retry for as long as the
/// busy timeout would have waited. The mode is stored in the file: once any
/// connection has switched it, the others find it switched.
fn enable_wal(conn: &Connection) -> rusqlite::Result<()> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    loop {
        match try_enable_wal(conn) {
            Err(e) if is_busy(&e) && Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            done => return done,
        }
    }
}

fn try_enable_wal(conn: &Connection) -> rusqlite::Result<()> {
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get::<_, String>(0))?;
    }
    Ok(())
}

fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(error.sqlite_error_code(), Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked))
}

/// Brings the schema to `migrations.len()`, or refuses a newer one.
pub(crate) fn migrate(conn: &Connection, path: &Path, migrations: &[&str]) -> Result<()> {
    let known = migrations.len() as u32;
    let found = read_version(conn).with_context(|| format!("{}: reading the schema version", path.display()))?;
    if found == known {
        return Ok(());
    }
    if found > known {
        return Err(DbOpenError::too_new(path, found, known).into());
    }
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)
        .with_context(|| format!("{}: locking the build database to migrate it", path.display()))?;
    // Another process may have migrated while we waited for the lock.
    let found = read_version(&tx).with_context(|| format!("{}: reading the schema version", path.display()))?;
    if found > known {
        return Err(DbOpenError::too_new(path, found, known).into());
    }
    for (index, step) in migrations.iter().enumerate().skip(found as usize) {
        tx.execute_batch(step)
            .with_context(|| format!("{}: migrating the build database to schema {}", path.display(), index + 1))?;
    }
    write_version(&tx, known).with_context(|| format!("{}: recording schema version {known}", path.display()))?;
    tx.commit().with_context(|| format!("{}: committing the schema migration", path.display()))
}

/// The schema version recorded in the file; 0 for a database without one.
pub(crate) fn read_version(conn: &Connection) -> rusqlite::Result<u32> {
    let has_table: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version')",
        [],
        |row| row.get(0),
    )?;
    if !has_table {
        return Ok(0);
    }
    let version = conn.query_row("SELECT max(version) FROM schema_version", [], |row| row.get::<_, Option<u32>>(0));
    Ok(version.optional()?.flatten().unwrap_or(0))
}

fn write_version(conn: &Connection, version: u32) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL); DELETE FROM schema_version;",
    )?;
    conn.execute("INSERT INTO schema_version (version) VALUES (?1)", [version])?;
    Ok(())
}

//! Lifecycle, recovery, corruption and migration tests on real SQLite files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection};
use tempfile::TempDir;
use uuid::Uuid;

use super::schema::{read_version, MIGRATIONS};
use super::*;

fn temp_db() -> (TempDir, BuildDb) {
    let dir = TempDir::new().unwrap();
    let db = BuildDb::open(dir.path().join("builddb.sqlite")).unwrap();
    (dir, db)
}

fn new_build(origin: &str) -> NewBuild<'_> {
    NewBuild {
        origin,
        pkgname: "pkg",
        version: "1.0",
        slot: Some(3),
        log_path: Some(Path::new("/logs/pkg.log")),
        why: Some("changed"),
    }
}

fn port_state(key: u32) -> PortState {
    PortState {
        port_crc: 0xdead_beef,
        makefiles_crc: 2,
        config_crc: 3,
        dep_keys: BTreeMap::from([("devel/gmake".to_owned(), 7), ("lang/perl5".to_owned(), u32::MAX)]),
        effective_key: key,
        pkgname: "pkg".into(),
        version: "1.0".into(),
        package_file: "pkg-1.0.pkg".into(),
        last_build_id: None,
    }
}

fn package(version: &str) -> PackageEntry {
    PackageEntry {
        pkgname: "pkg".into(),
        version: version.into(),
        file: format!("pkg-{version}.pkg"),
        sha256: "ab".repeat(32),
        size: 12345,
    }
}

fn open_error(path: &Path) -> DbOpenError {
    let error = BuildDb::open(path).err().expect("opening should fail");
    error.downcast_ref::<DbOpenError>().cloned().unwrap_or_else(|| panic!("not a DbOpenError: {error:#}"))
}

fn raw(path: &Path) -> Connection {
    Connection::open(path).unwrap()
}

/// Moves a build's start back in time, so its duration is measurable.
fn backdate_build(db: &BuildDb, build: &BuildId, ms: i64) {
    db.conn
        .execute("UPDATE builds SET started_ms = started_ms - ?2 WHERE id = ?1", params![build.as_str(), ms])
        .unwrap();
}

// --- opening ---------------------------------------------------------------

#[test]
fn open_creates_the_file_and_its_directory_with_wal_and_foreign_keys() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("a/b/builddb.sqlite");
    let db = BuildDb::open(&path).unwrap();
    assert!(path.is_file());
    assert_eq!(db.path(), path);
    assert_eq!(read_version(&db.conn).unwrap(), SCHEMA_VERSION);
    let mode: String = db.conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
    let foreign_keys: i64 = db.conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0)).unwrap();
    assert_eq!(foreign_keys, 1);
    let synchronous: i64 = db.conn.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
    assert_eq!(synchronous, 1, "NORMAL");
}

#[test]
fn reopening_keeps_data() {
    let (dir, db) = temp_db();
    let run = db.start_run("build", Some("default")).unwrap();
    drop(db);
    let db = BuildDb::open(dir.path().join("builddb.sqlite")).unwrap();
    assert_eq!(db.run(&run).unwrap().unwrap().profile.as_deref(), Some("default"));
}

#[test]
fn open_existing_does_not_create_a_missing_file() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("builddb.sqlite");
    assert!(BuildDb::open_existing(&path).unwrap().is_none());
    assert!(!path.exists());
    BuildDb::open(&path).unwrap();
    assert!(BuildDb::open_existing(&path).unwrap().is_some());
}

#[test]
fn an_empty_file_is_a_new_database() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("builddb.sqlite");
    std::fs::write(&path, b"").unwrap();
    let db = BuildDb::open(&path).unwrap();
    assert_eq!(read_version(&db.conn).unwrap(), SCHEMA_VERSION);
}

fn assert_corrupt_and_untouched(path: &Path) {
    let before = std::fs::read(path).unwrap();
    let error = open_error(path);
    assert!(matches!(error.problem, DbOpenProblem::Corrupt { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.starts_with(&format!("{}: the build database is corrupt or unreadable (", path.display())),
        "{message}"
    );
    assert!(message.ends_with("); remove it with 'portsynth reset-db'"), "{message}");
    let existing = BuildDb::open_existing(path).err().expect("open_existing should fail too");
    assert!(existing.downcast_ref::<DbOpenError>().is_some(), "{existing:#}");
    assert_eq!(std::fs::read(path).unwrap(), before, "the corrupt file must not be modified");
}

#[test]
fn garbage_is_reported_as_corrupt_and_left_alone() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("builddb.sqlite");
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(&path, &garbage).unwrap();
    assert_corrupt_and_untouched(&path);
    let error = open_error(&path);
    assert!(error.to_string().contains("file is not a database"), "{error}");
}

#[test]
fn a_truncated_database_is_reported_as_corrupt_and_left_alone() {
    let (dir, db) = temp_db();
    let run = db.start_run("build", None).unwrap();
    for i in 0..2000 {
        db.record_outcome(&run, &format!("cat/port{i}"), "pkg", "1.0", BuildStatus::Skipped, "dependency failed")
            .unwrap();
    }
    drop(db); // checkpoints the WAL into the main file and removes it
    let path = dir.path().join("builddb.sqlite");
    assert!(!PathBuf::from(format!("{}-wal", path.display())).exists());
    let length = std::fs::metadata(&path).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(length / 2).unwrap();
    drop(file);
    assert_corrupt_and_untouched(&path);
}

#[test]
fn a_newer_schema_is_refused_without_changes() {
    let (dir, db) = temp_db();
    drop(db);
    let path = dir.path().join("builddb.sqlite");
    raw(&path).execute("UPDATE schema_version SET version = ?1", [SCHEMA_VERSION + 1]).unwrap();
    let error = open_error(&path);
    assert_eq!(error.problem, DbOpenProblem::TooNew { found: SCHEMA_VERSION + 1, known: SCHEMA_VERSION });
    let expected = format!(
        "{}: the build database was written by a newer portsynth (schema {}, this binary knows {})",
        path.display(),
        SCHEMA_VERSION + 1,
        SCHEMA_VERSION
    );
    assert!(error.to_string().starts_with(&expected), "{error}");
    assert_eq!(read_version(&raw(&path)).unwrap(), SCHEMA_VERSION + 1);
}

// --- migrations ------------------------------------------------------------

const TEST_V2: &str = "
ALTER TABLE builds ADD COLUMN note TEXT;
CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL);
";

#[test]
fn an_older_schema_migrates_forward_and_keeps_its_data() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("builddb.sqlite");
    let v1 = &MIGRATIONS[..1];
    let db = BuildDb::open_with(&path, v1).unwrap();
    assert_eq!(read_version(&db.conn).unwrap(), 1);
    let run = db.start_run("build", None).unwrap();
    let build = old_build(&db, &run, "devel/a");
    db.record_success(&build, &port_state(42), &package("1.0"), None).unwrap();
    db.scan_cache_store(&[("devel/a".into(), ScanCacheEntry::default())]).unwrap();
    drop(db);

    // Every real step after v1, then one of the test's own.
    let newer: Vec<&str> = MIGRATIONS.iter().copied().chain([TEST_V2]).collect();
    let db = BuildDb::open_with(&path, &newer).unwrap();
    assert_eq!(read_version(&db.conn).unwrap(), newer.len() as u32);
    assert_eq!(db.builds_of_run(&run).unwrap().len(), 1);
    assert_eq!(db.port_state("devel/a").unwrap().unwrap().effective_key, 42);
    assert_eq!(db.package("devel/a").unwrap().unwrap().version, "1.0");
    assert!(db.scan_cache_load().unwrap().contains_key("devel/a"));
    db.conn.execute("UPDATE builds SET note = 'migrated'", []).unwrap();
    db.conn.execute("INSERT INTO notes (text) VALUES ('new table')", []).unwrap();
    drop(db);

    // A binary that knows only the real steps now refuses the file.
    let (found, known) = (newer.len() as u32, SCHEMA_VERSION);
    assert!(
        matches!(open_error(&path).problem, DbOpenProblem::TooNew { found: f, known: k } if (f, k) == (found, known))
    );
}

#[test]
fn a_failing_migration_step_leaves_the_previous_version() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("builddb.sqlite");
    let db = BuildDb::open_with(&path, &MIGRATIONS[..1]).unwrap();
    let run = db.start_run("build", None).unwrap();
    drop(db);
    let broken = "CREATE TABLE half_done (a); THIS IS NOT SQL;";
    let error = BuildDb::open_with(&path, &[MIGRATIONS[0], broken]).err().unwrap();
    assert!(format!("{error:#}").contains("migrating the build database to schema 2"), "{error:#}");
    let db = BuildDb::open_with(&path, &MIGRATIONS[..1]).unwrap();
    assert_eq!(read_version(&db.conn).unwrap(), 1);
    assert!(db.run(&run).unwrap().is_some());
    let half_done: bool = db
        .conn
        .query_row("SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'half_done')", [], |r| r.get(0))
        .unwrap();
    assert!(!half_done);
}

// --- runs ------------------------------------------------------------------

#[test]
fn a_run_starts_running_and_ends_with_its_counts() {
    let (_dir, db) = temp_db();
    for status in [RunStatus::Completed, RunStatus::Aborted, RunStatus::Interrupted] {
        let run = db.start_run("build", Some("p")).unwrap();
        let started = db.run(&run).unwrap().unwrap();
        assert_eq!(started.status, RunStatus::Running);
        assert_eq!(started.pid, std::process::id());
        assert_eq!(started.command, "build");
        assert_eq!(started.ended_ms, None);
        assert_eq!(started.counts, RunCounts::default());

        let counts = RunCounts { built: 5, failed: 1, ignored: 2, skipped: 3, up_to_date: 400 };
        db.finish_run(&run, status, &counts).unwrap();
        let ended = db.run(&run).unwrap().unwrap();
        assert_eq!(ended.status, status);
        assert_eq!(ended.counts, counts);
        assert!(ended.ended_ms.unwrap() >= ended.started_ms);
    }
}

#[test]
fn finishing_a_run_as_running_or_an_unknown_run_fails() {
    let (_dir, db) = temp_db();
    let run = db.start_run("build", None).unwrap();
    assert!(db.finish_run(&run, RunStatus::Running, &RunCounts::default()).is_err());
    let error = db.finish_run(&RunId::from("nope"), RunStatus::Completed, &RunCounts::default()).err().unwrap();
    assert!(error.to_string().contains("builddb.sqlite: no run nope"), "{error}");
}

#[test]
fn runs_lists_newest_first_up_to_the_limit() {
    let (_dir, db) = temp_db();
    let ids: Vec<RunId> = (0..5).map(|_| db.start_run("build", None).unwrap()).collect();
    let listed: Vec<RunId> = db.runs(3).unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(listed, vec![ids[4].clone(), ids[3].clone(), ids[2].clone()]);
    assert!(db.run(&RunId::from("missing")).unwrap().is_none());
}

#[test]
fn ids_are_uuid_v7_in_creation_order() {
    let (_dir, db) = temp_db();
    let run = db.start_run("build", None).unwrap();
    let mut ids = vec![run.0.clone()];
    for _ in 0..200 {
        ids.push(db.start_build(&run, &new_build("a/b")).unwrap().0);
    }
    ids.push(db.start_run("build", None).unwrap().0);
    for id in &ids {
        assert_eq!(Uuid::parse_str(id).unwrap().get_version_num(), 7, "{id}");
    }
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, ids);
}

// --- builds ----------------------------------------------------------------

#[test]
fn a_build_starts_running_with_what_the_scheduler_knows() {
    let (_dir, db) = temp_db();
    let run = db.start_run("build", None).unwrap();
    let build = db.start_build(&run, &new_build("devel/a")).unwrap();
    let record = db.build(&build).unwrap().unwrap();
    assert_eq!(record.run_id, run);
    assert_eq!(record.origin, "devel/a");
    assert_eq!((record.pkgname.as_str(), record.version.as_str()), ("pkg", "1.0"));
    assert_eq!(record.status, BuildStatus::Running);
    assert_eq!(record.slot, Some(3));
    assert_eq!(record.log_path, Some(PathBuf::from("/logs/pkg.log")));
    assert_eq!((record.ended_ms, record.duration_ms, record.reason), (None, None, None));
    assert_eq!((record.cpu_ms, record.peak_memory), (None, None));
    let usage = BuildUsage {
        cpu: Some(std::time::Duration::from_millis(1234)),
        peak_memory: Some(5 << 20),
        ..BuildUsage::default()
    };
    db.record_usage(&build, &usage).unwrap();
    let record = db.build(&build).unwrap().unwrap();
    assert_eq!((record.cpu_ms, record.peak_memory), (Some(1234), Some(5 << 20)));
}

fn phase(name: &str, wall_ms: u64, cpu_ms: u64) -> PhaseUsage {
    PhaseUsage {
        phase: name.into(),
        wall_ms,
        cpu_ms: Some(cpu_ms),
        make_jobs: 4,
        peak_memory: Some(wall_ms << 10),
        peak_work: Some(wall_ms << 20),
        serial_ms: Some(wall_ms / 4),
        parallel_cpu_ms: Some(cpu_ms / 2),
    }
}

fn usage(phases: Vec<PhaseUsage>, retried: bool) -> BuildUsage {
    BuildUsage {
        cpu: Some(std::time::Duration::from_millis(phases.iter().filter_map(|p| p.cpu_ms).sum())),
        peak_memory: phases.iter().filter_map(|p| p.peak_memory).max(),
        peak_work: phases.iter().filter_map(|p| p.peak_work).max(),
        make_jobs: Some(4),
        work_dir: Some(if retried { "disk" } else { "tmpfs" }),
        retried_on_disk: retried,
        phases,
    }
}

#[test]
fn phases_and_the_whole_builds_usage_are_stored_and_read_back() {
    let (_dir, db) = temp_db();
    let run = db.start_run("build", None).unwrap();
    let build = db.start_build(&run, &new_build("devel/a")).unwrap();
    let phases = vec![phase("extract", 10, 5), phase("build", 300, 1100), phase("package", 20, 15)];
    db.record_usage(&build, &usage(phases.clone(), true)).unwrap();
    // A second record replaces the phases.
    db.record_usage(&build, &usage(phases.clone(), true)).unwrap();
    assert_eq!(db.build_phases(&build).unwrap(), phases);
    let record = db.build(&build).unwrap().unwrap();
    assert_eq!((record.peak_work, record.make_jobs), (Some(300 << 20), Some(4)));
    assert_eq!((record.work_dir.as_deref(), record.retried_on_disk), (Some("disk"), true));
}

#[test]
fn the_resource_history_sums_build_and_serial_phases_of_the_latest_successes() {
    let (_dir, db) = temp_db();
    let run = db.start_run("build", None).unwrap();
    for (n, status) in [(1, BuildStatus::Success), (2, BuildStatus::Failed), (3, BuildStatus::Success)] {
        let build = db.start_build(&run, &new_build("devel/a")).unwrap();
        backdate_build(&db, &build, 10_000 - n * 1000);
        let phases =
            vec![phase("extract", 10 * n as u64, 5), phase("build", 100 * n as u64, 400), phase("package", 7, 3)];
        db.record_usage(&build, &usage(phases, n == 3)).unwrap();
        db.finish_build(&build, status, None, None).unwrap();
    }
    let unmeasured = db.start_build(&run, &new_build("devel/old")).unwrap();
    db.finish_build(&unmeasured, BuildStatus::Success, None, None).unwrap();
    let history = db.resource_history_all(5).unwrap();
    assert!(!history.contains_key("devel/old"), "builds without phases are no history");
    let samples = &history["devel/a"];
    assert_eq!(samples.len(), 2, "successes only: {samples:?}");
    let newest = &samples[0];
    assert_eq!((newest.build_wall_ms, newest.build_cpu_ms, newest.serial_ms), (300, Some(400), 37));
    assert_eq!((newest.make_jobs, newest.cpu_ms, newest.peak_work), (4, Some(408), Some(300 << 20)));
    assert_eq!((newest.build_serial_ms, newest.build_parallel_cpu_ms), (Some(75), Some(200)), "the build phase's");
    assert!(newest.retried_on_disk && !samples[1].retried_on_disk);
    assert_eq!(samples[1].build_wall_ms, 100);
    assert_eq!(db.resource_history_all(1).unwrap()["devel/a"].len(), 1);
}

#[test]
fn a_v3_database_migrates_to_the_phase_table_and_keeps_its_builds() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("builddb.sqlite");
    let db = BuildDb::open_with(&path, &MIGRATIONS[..3]).unwrap();
    let run = db.start_run("build", None).unwrap();
    let build = old_build(&db, &run, "devel/a");
    db.conn.execute("UPDATE builds SET cpu_ms = 5, peak_memory = 6 WHERE id = ?1", [build.as_str()]).unwrap();
    drop(db);
    let db = BuildDb::open(&path).unwrap();
    assert_eq!(read_version(&db.conn).unwrap(), SCHEMA_VERSION);
    let record = db.build(&build).unwrap().unwrap();
    assert_eq!((record.cpu_ms, record.peak_memory, record.peak_work), (Some(5), Some(6), None));
    assert_eq!((record.make_jobs, record.work_dir, record.retried_on_disk), (None, None, false));
    assert!(db.build_phases(&build).unwrap().is_empty());
    db.record_usage(&build, &usage(vec![phase("build", 1, 1)], false)).unwrap();
    assert_eq!(db.build_phases(&build).unwrap().len(), 1);
}

#[test]
fn v4_phases_migrate_without_a_parallelism_split() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("builddb.sqlite");
    let db = BuildDb::open_with(&path, &MIGRATIONS[..4]).unwrap();
    let run = db.start_run("build", None).unwrap();
    let build = old_build(&db, &run, "devel/a");
    db.conn
        .execute(
            "INSERT INTO build_phases (build_id, seq, phase, wall_ms, cpu_ms, make_jobs) VALUES (?1, 0, 'build', 9, 8, 2)",
            [build.as_str()],
        )
        .unwrap();
    drop(db);
    let db = BuildDb::open(&path).unwrap();
    let phases = db.build_phases(&build).unwrap();
    assert_eq!((phases[0].wall_ms, phases[0].make_jobs), (9, 2));
    assert_eq!((phases[0].serial_ms, phases[0].parallel_cpu_ms), (None, None));
}

#[test]
fn a_build_ends_as_success_failed_or_interrupted() {
    let (_dir, db) = temp_db();
    let run = db.start_run("build", None).unwrap();
    for (status, reason) in [
        (BuildStatus::Success, None),
        (BuildStatus::Failed, Some("exit 2")),
        (BuildStatus::Interrupted, Some("sigint")),
    ] {
        let build = db.start_build(&run, &new_build("devel/a")).unwrap();
        backdate_build(&db, &build, 1500);
        db.finish_build(&build, status, Some("build"), reason).unwrap();
        let record = db.build(&build).unwrap().unwrap();
        assert_eq!(record.status, status);
        assert_eq!(record.last_phase.as_deref(), Some("build"));
        assert_eq!(record.reason.as_deref(), reason);
        assert!(record.duration_ms.unwrap() >= 1500);
        assert_eq!(record.ended_ms.unwrap() - record.started_ms, record.duration_ms.unwrap() as i64);
    }
}

#[test]
fn a_finished_build_cannot_end_again_but_an_interrupted_one_can() {
    let (_dir, db) = temp_db();
    let run = db.start_run("build", None).unwrap();
    let build = db.start_build(&run, &new_build("devel/a")).unwrap();
    db.finish_build(&build, BuildStatus::Interrupted, None, Some("double ctrl-c")).unwrap();
    db.finish_build(&build, BuildStatus::Failed, Some("stage"), Some("exit 1")).unwrap();
    let error = db.finish_build(&build, BuildStatus::Success, None, None).err().unwrap();
    assert!(error.to_string().contains("has already ended as 'failed'"), "{error}");
    let record = db.build(&build).unwrap().unwrap();
    assert_eq!((record.status, record.reason.as_deref()), (BuildStatus::Failed, Some("exit 1")));
    assert!(db.finish_build(&BuildId::from("missing"), BuildStatus::Failed, None, None).is_err());
}

#[test]
fn finish_build_rejects_statuses_that_do_not_end_a_build() {
    let (_dir, db) = temp_db();
    let run = db.start_run("build", None).unwrap();
    let build = db.start_build(&run, &new_build("devel/a")).unwrap();
    for status in [BuildStatus::Running, BuildStatus::Skipped, BuildStatus::Ignored] {
        assert!(db.finish_build(&build, status, None, None).is_err());
    }
    assert_eq!(db.build(&build).unwrap().unwrap().status, BuildStatus::Running);
}

#[test]
fn the_last_recorded_phase_is_kept_when_finishing_without_one() {
    let (_dir, db) = temp_db();
    let run = db.start_run("build", None).unwrap();
    let build = db.start_build(&run, &new_build("devel/a")).unwrap();
    db.update_build_phase(&build, "configure").unwrap();
    assert_eq!(db.build(&build).unwrap().unwrap().last_phase.as_deref(), Some("configure"));
    db.finish_build(&build, BuildStatus::Failed, None, Some("configure failed")).unwrap();
    assert_eq!(db.build(&build).unwrap().unwrap().last_phase.as_deref(), Some("configure"));
}

#[test]
fn a_build_needs_an_existing_run() {
    let (_dir, db) = temp_db();
    let error = db.start_build(&RunId::from("no-such-run"), &new_build("devel/a")).err().unwrap();
    assert!(format!("{error:#}").contains("FOREIGN KEY"), "{error:#}");
}

#[test]
fn skipped_and_ignored_are_recorded_as_outcomes() {
    let (_dir, db) = temp_db();
    let run = db.start_run("build", None).unwrap();
    let skipped = db.record_outcome(&run, "devel/b", "b", "2", BuildStatus::Skipped, "devel/a failed").unwrap();
    let ignored = db.record_outcome(&run, "devel/c", "c", "3", BuildStatus::Ignored, "broken on Linux").unwrap();
    let records = db.builds_of_run(&run).unwrap();
    assert_eq!(records.iter().map(|b| b.id.clone()).collect::<Vec<_>>(), vec![skipped, ignored]);
    assert_eq!(records[0].status, BuildStatus::Skipped);
    assert_eq!(records[0].reason.as_deref(), Some("devel/a failed"));
    assert_eq!(records[1].status, BuildStatus::Ignored);
    assert_eq!(records[1].ended_ms, Some(records[1].started_ms));
    assert!(db.record_outcome(&run, "devel/d", "d", "4", BuildStatus::Success, "no").is_err());
    assert!(db.record_outcome(&run, "devel/d", "d", "4", BuildStatus::Running, "no").is_err());
}

#[test]
fn record_success_updates_build_port_and_package_together() {
    let (_dir, db) = temp_db();
    let run = db.start_run("build", None).unwrap();
    let first = db.start_build(&run, &new_build("devel/a")).unwrap();
    db.update_build_phase(&first, "package").unwrap();
    db.record_success(&first, &port_state(1), &package("1.0"), None).unwrap();

    let record = db.build(&first).unwrap().unwrap();
    assert_eq!(record.status, BuildStatus::Success);
    assert_eq!(record.last_phase.as_deref(), Some("package"));
    assert!(record.duration_ms.is_some());
    let state = db.port_state("devel/a").unwrap().unwrap();
    assert_eq!(state, PortState { last_build_id: Some(first.0.clone()), ..port_state(1) });
    let index = db.package("devel/a").unwrap().unwrap();
    assert_eq!((index.origin.as_str(), index.version.as_str(), index.size), ("devel/a", "1.0", 12345));
    assert_eq!(index.build_id, Some(first.clone()));

    assert_eq!(record.reason, None, "a success retried nowhere has no reason");

    // A later success replaces both; it was retried, and says so.
    let second = db.start_build(&run, &new_build("devel/a")).unwrap();
    let retried = "job 7 lost its node node2; Slurm requeued it";
    db.record_success(&second, &port_state(2), &package("1.1"), Some(retried)).unwrap();
    assert_eq!(db.build(&second).unwrap().unwrap().reason.as_deref(), Some(retried));
    assert_eq!(db.port_state("devel/a").unwrap().unwrap().effective_key, 2);
    assert_eq!(db.port_state("devel/a").unwrap().unwrap().last_build_id, Some(second.0.clone()));
    let packages = db.packages().unwrap();
    assert_eq!(packages.len(), 1);
    assert_eq!((packages[0].version.as_str(), packages[0].build_id.clone()), ("1.1", Some(second)));
}

#[test]
fn a_failed_build_leaves_port_and_package_untouched() {
    let (_dir, db) = temp_db();
    let run = db.start_run("build", None).unwrap();
    let good = db.start_build(&run, &new_build("devel/a")).unwrap();
    db.record_success(&good, &port_state(1), &package("1.0"), None).unwrap();
    let before = (db.port_states().unwrap(), db.packages().unwrap());

    let bad = db.start_build(&run, &new_build("devel/a")).unwrap();
    db.finish_build(&bad, BuildStatus::Failed, Some("build"), Some("exit 2")).unwrap();
    assert_eq!((db.port_states().unwrap(), db.packages().unwrap()), before);
    // And a failed build cannot be turned into a success afterwards.
    assert!(db.record_success(&bad, &port_state(9), &package("9.9"), None).is_err());
    assert_eq!((db.port_states().unwrap(), db.packages().unwrap()), before);
}

#[test]
fn record_success_is_all_or_nothing() {
    let (_dir, db) = temp_db();
    let run = db.start_run("build", None).unwrap();
    let build = db.start_build(&run, &new_build("devel/a")).unwrap();
    // The package entry cannot be stored (size beyond SQLite's integers), after
    // the build row and the port state were already written in the transaction.
    let oversized = PackageEntry { size: u64::MAX, ..package("1.0") };
    let error = db.record_success(&build, &port_state(1), &oversized, None).err().unwrap();
    assert!(error.to_string().contains("builddb.sqlite"), "{error}");
    assert_eq!(db.build(&build).unwrap().unwrap().status, BuildStatus::Running);
    assert!(db.port_state("devel/a").unwrap().is_none());
    assert!(db.packages().unwrap().is_empty());
    // The transaction is gone; the connection still works.
    db.record_success(&build, &port_state(1), &package("1.0"), None).unwrap();
    assert!(db.port_state("devel/a").unwrap().is_some());
}

#[test]
fn builds_of_port_are_newest_first_and_durations_count_only_successes() {
    let (_dir, db) = temp_db();
    let run = db.start_run("build", None).unwrap();
    let mut ids = Vec::new();
    for (i, status) in
        [BuildStatus::Success, BuildStatus::Failed, BuildStatus::Success, BuildStatus::Success].into_iter().enumerate()
    {
        let build = db.start_build(&run, &new_build("devel/a")).unwrap();
        // Older builds started earlier and took longer: 4000, 3000, 2000, 1000 ms.
        let age = 1000 * (4 - i as i64);
        backdate_build(&db, &build, age);
        db.finish_build(&build, status, None, None).unwrap();
        ids.push(build);
    }
    let other = db.start_build(&run, &new_build("devel/b")).unwrap();
    backdate_build(&db, &other, 500);
    db.finish_build(&other, BuildStatus::Success, None, None).unwrap();

    let listed: Vec<BuildId> = db.builds_of_port("devel/a", 3).unwrap().into_iter().map(|b| b.id).collect();
    assert_eq!(listed, vec![ids[3].clone(), ids[2].clone(), ids[1].clone()]);

    let near = |durations: Vec<u64>, expected: &[u64]| {
        assert_eq!(durations.len(), expected.len(), "{durations:?}");
        for (got, want) in durations.iter().zip(expected) {
            assert!(got >= want && *got < want + 500, "{durations:?} vs {expected:?}");
        }
    };
    near(db.success_durations("devel/a", 10).unwrap(), &[1000, 2000, 4000]);
    near(db.success_durations("devel/a", 2).unwrap(), &[1000, 2000]);
    let all = db.success_durations_all().unwrap();
    assert_eq!(all.len(), 2);
    near(all["devel/a"].clone(), &[1000, 2000, 4000]);
    near(all["devel/b"].clone(), &[500]);
    assert!(db.success_durations("devel/none", 10).unwrap().is_empty());
}

// --- recovery --------------------------------------------------------------

fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn recover_dangling_interrupts_runs_of_dead_processes_only() {
    let (_dir, db) = temp_db();
    let dead = db.insert_run("build", None, dead_pid()).unwrap();
    let dead_running = db.start_build(&dead, &new_build("devel/a")).unwrap();
    let dead_done = db.start_build(&dead, &new_build("devel/b")).unwrap();
    db.finish_build(&dead_done, BuildStatus::Failed, None, Some("exit 1")).unwrap();
    let live = db.start_run("build", None).unwrap();
    let live_running = db.start_build(&live, &new_build("devel/c")).unwrap();

    assert_eq!(db.recover_dangling().unwrap(), Recovered { runs: 1, builds: 1 });

    let run = db.run(&dead).unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Interrupted);
    assert!(run.ended_ms.unwrap() >= run.started_ms);
    let build = db.build(&dead_running).unwrap().unwrap();
    assert_eq!(build.status, BuildStatus::Interrupted);
    assert_eq!(build.reason.as_deref(), Some(REASON_PROCESS_DIED));
    assert!(build.ended_ms.is_some());
    assert_eq!(db.build(&dead_done).unwrap().unwrap().status, BuildStatus::Failed);

    assert_eq!(db.run(&live).unwrap().unwrap().status, RunStatus::Running);
    assert_eq!(db.build(&live_running).unwrap().unwrap().status, BuildStatus::Running);
    assert_eq!(db.recover_dangling().unwrap(), Recovered::default());
}

#[test]
fn recover_dangling_interrupts_running_builds_of_ended_runs() {
    let (_dir, db) = temp_db();
    let run = db.start_run("build", None).unwrap();
    let build = db.start_build(&run, &new_build("devel/a")).unwrap();
    db.finish_run(&run, RunStatus::Aborted, &RunCounts::default()).unwrap();
    assert_eq!(db.recover_dangling().unwrap(), Recovered { runs: 0, builds: 1 });
    let record = db.build(&build).unwrap().unwrap();
    assert_eq!(record.status, BuildStatus::Interrupted);
    assert!(record.ended_ms.unwrap() >= record.started_ms);
}

#[test]
fn interrupt_run_builds_marks_only_that_runs_running_builds() {
    let (_dir, db) = temp_db();
    let run = db.start_run("build", None).unwrap();
    let other = db.start_run("build", None).unwrap();
    let a = db.start_build(&run, &new_build("devel/a")).unwrap();
    let b = db.start_build(&run, &new_build("devel/b")).unwrap();
    db.finish_build(&b, BuildStatus::Success, None, None).unwrap();
    let c = db.start_build(&other, &new_build("devel/c")).unwrap();

    assert_eq!(db.interrupt_run_builds(&run).unwrap(), 1);
    let record = db.build(&a).unwrap().unwrap();
    assert_eq!((record.status, record.reason.as_deref()), (BuildStatus::Interrupted, Some(REASON_RUN_INTERRUPTED)));
    assert!(record.duration_ms.is_some());
    assert_eq!(db.build(&b).unwrap().unwrap().status, BuildStatus::Success);
    assert_eq!(db.build(&c).unwrap().unwrap().status, BuildStatus::Running);
}

// --- scan cache ------------------------------------------------------------

#[test]
fn the_scan_cache_round_trips_updates_and_removes() {
    let (_dir, db) = temp_db();
    assert!(db.scan_cache_load().unwrap().is_empty());
    let a = ScanCacheEntry {
        dir_crc: u32::MAX,
        makefiles: vec![("Mk/bsd.port.mk".into(), 1), ("devel/a/Makefile".into(), 0x8000_0000)],
        metadata: r#"{"pkgname":"a-1.0","depends":["devel/b"]}"#.into(),
    };
    let b = ScanCacheEntry { dir_crc: 7, makefiles: vec![], metadata: "{}".into() };
    db.scan_cache_store(&[("devel/a".into(), a.clone()), ("devel/b".into(), b.clone())]).unwrap();
    let loaded = db.scan_cache_load().unwrap();
    assert_eq!(loaded.len(), 2);
    assert_eq!(loaded["devel/a"], a);
    assert_eq!(loaded["devel/b"], b);

    let b2 = ScanCacheEntry { dir_crc: 8, ..b };
    db.scan_cache_store(&[("devel/b".into(), b2.clone())]).unwrap();
    assert_eq!(db.scan_cache_load().unwrap()["devel/b"], b2);

    assert_eq!(db.scan_cache_remove(["devel/a", "devel/missing"]).unwrap(), 1);
    let loaded = db.scan_cache_load().unwrap();
    assert_eq!(loaded.keys().collect::<Vec<_>>(), vec!["devel/b"]);
    assert_eq!(db.scan_cache_remove(Vec::<String>::new()).unwrap(), 0);
}

#[test]
fn stat_signatures_round_trip_and_replace() {
    use super::crc::{Signature, Signed, StatSig};
    let (_dir, db) = temp_db();
    assert!(db.signatures_load().unwrap().is_empty());
    // Inode and device use all 64 bits; SQLite stores them as their bits.
    let stat = StatSig {
        size: 12,
        mtime_ns: 1_700_000_000_123_456_789,
        ctime_ns: 1_700_000_001_000_000_001,
        inode: u64::MAX - 1,
        device: 1 << 63,
    };
    let file = Signature { stat, recorded_ns: 1_800_000_000_000_000_000, signed: Signed::File { crc: u32::MAX } };
    let port = Signature {
        signed: Signed::Dir { listing: "dfiles/fMakefile".into(), port: Some((7, u32::MAX)) },
        ..file.clone()
    };
    let sub = Signature { signed: Signed::Dir { listing: String::new(), port: None }, ..file.clone() };
    db.signatures_store(&[
        ("/t/a/b/Makefile".into(), file.clone()),
        ("/t/a/b".into(), port.clone()),
        ("/t/a/b/files".into(), sub.clone()),
    ])
    .unwrap();
    let loaded = db.signatures_load().unwrap();
    assert_eq!(loaded.len(), 3);
    assert_eq!(loaded["/t/a/b/Makefile"], file);
    assert_eq!(loaded["/t/a/b"], port);
    assert_eq!(loaded["/t/a/b/files"], sub);
    let changed = Signature { signed: Signed::File { crc: 5 }, ..file };
    db.signatures_store(&[("/t/a/b/Makefile".into(), changed.clone())]).unwrap();
    let loaded = db.signatures_load().unwrap();
    assert_eq!((loaded.len(), &loaded["/t/a/b/Makefile"]), (3, &changed));
    db.signatures_store(&[]).unwrap();
}

// --- reset -----------------------------------------------------------------

#[test]
fn reset_removes_the_database_and_its_companions() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("builddb.sqlite");
    let db = BuildDb::open(&path).unwrap();
    db.start_run("build", None).unwrap();
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    let shm = PathBuf::from(format!("{}-shm", path.display()));
    assert!(wal.exists() && shm.exists(), "WAL companions exist while the database is open");
    drop(db);
    std::fs::write(&wal, b"stale").unwrap();
    std::fs::write(&shm, b"stale").unwrap();
    assert!(reset(&path).unwrap());
    assert!(!path.exists() && !wal.exists() && !shm.exists());
    assert!(!reset(&path).unwrap());
    BuildDb::open(&path).unwrap();
}

// --- records ---------------------------------------------------------------

#[test]
fn records_serialize_with_lowercase_statuses() {
    let (_dir, db) = temp_db();
    let run = db.start_run("build", None).unwrap();
    let build = db.start_build(&run, &new_build("devel/a")).unwrap();
    let json = serde_json::to_value(db.build(&build).unwrap().unwrap()).unwrap();
    assert_eq!(json["status"], "running");
    assert_eq!(json["id"], build.as_str());
    let json = serde_json::to_value(db.run(&run).unwrap().unwrap()).unwrap();
    assert_eq!(json["status"], "running");
    assert_eq!(json["counts"]["up_to_date"], 0);
}

/// A build row as an older binary started it: only the columns of schema v1.
fn old_build(db: &BuildDb, run: &RunId, origin: &str) -> BuildId {
    let id = BuildId::generate();
    db.conn
        .execute(
            "INSERT INTO builds (id, run_id, origin, pkgname, version, status, started_ms)
             VALUES (?1, ?2, ?3, 'pkg', '1.0', 'running', 0)",
            params![id.as_str(), run.as_str(), origin],
        )
        .unwrap();
    id
}

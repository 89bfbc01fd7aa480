//! The build database under concurrent use: writers (each with its own
//! connection, as separate portsynth processes would have) record builds
//! while a reader polls the way `status`/`history`/`monitor` do. No operation
//! may fail with SQLITE_BUSY or "database is locked", and the reader must see
//! the numbers grow while the writers are still going.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Barrier;
use std::time::Duration;

use anyhow::Result;
use portsynth::builddb::{BuildDb, BuildStatus, NewBuild, PackageEntry, PortState, RunCounts, RunStatus};

const WRITERS: usize = 2;
const BUILDS_PER_WRITER: usize = 300;
const PORTS_PER_WRITER: usize = 25;

fn origin(writer: usize, build: usize) -> String {
    format!("w{writer}/port{}", build % PORTS_PER_WRITER)
}

fn fail(what: &str, error: anyhow::Error) -> ! {
    let text = format!("{error:#}");
    let busy = text.contains("database is locked") || text.contains("busy");
    panic!("{what} failed{}: {text}", if busy { " with SQLITE_BUSY" } else { "" });
}

fn write_builds(path: &Path, writer: usize) -> Result<()> {
    let db = BuildDb::open(path)?;
    db.recover_dangling()?;
    let run = db.start_run("build", Some(&format!("writer{writer}")))?;
    for i in 0..BUILDS_PER_WRITER {
        let origin = origin(writer, i);
        let version = i.to_string();
        let build = db.start_build(
            &run,
            &NewBuild {
                origin: &origin,
                pkgname: "pkg",
                version: &version,
                slot: Some(i as u32 % 4),
                log_path: None,
                why: None,
            },
        )?;
        db.update_build_phase(&build, "build")?;
        let state = PortState { effective_key: i as u32, package_file: format!("pkg-{i}.pkg"), ..PortState::default() };
        let package =
            PackageEntry { pkgname: "pkg".into(), version, file: state.package_file.clone(), ..Default::default() };
        db.record_success(&build, &state, &package, None)?;
    }
    let counts = RunCounts { built: BUILDS_PER_WRITER as u32, ..RunCounts::default() };
    db.finish_run(&run, RunStatus::Completed, &counts)
}

/// Counts a writer as finished when its thread ends, even by panicking, so
/// the reader never waits forever.
struct Finished<'a>(&'a AtomicUsize);

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// What one round of reads saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Seen {
    builds: usize,
    port_states: usize,
    port0_builds: usize,
}

fn read_once(db: &BuildDb) -> Result<Seen> {
    let mut builds = 0;
    for run in db.runs(10)? {
        builds += db.builds_of_run(&run.id)?.len();
    }
    let port0_builds = db.builds_of_port(&origin(0, 0), 1000)?.len();
    let port_states = db.port_states()?.len();
    db.success_durations_all()?;
    db.packages()?;
    Ok(Seen { builds, port_states, port0_builds })
}

#[test]
fn readers_and_writers_never_see_busy() {
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("db/builddb.sqlite");
    drop(BuildDb::open(&path).unwrap());
    let start = Barrier::new(WRITERS + 1);
    let writers_done = AtomicUsize::new(0);

    let (history, reads) = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let (path, start, writers_done) = (&path, &start, &writers_done);
                scope.spawn(move || {
                    let _done = Finished(writers_done);
                    start.wait();
                    write_builds(path, writer).map_err(|error| (writer, error))
                })
            })
            .collect();
        let reader = scope.spawn(|| {
            start.wait();
            let db = BuildDb::open(&path).unwrap_or_else(|e| fail("reader open", e));
            let mut history = Vec::new();
            let mut reads = 0usize;
            while writers_done.load(Ordering::SeqCst) < WRITERS {
                history.push(read_once(&db).unwrap_or_else(|e| fail("reader", e)));
                reads += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            history.push(read_once(&db).unwrap_or_else(|e| fail("final read", e)));
            (history, reads)
        });
        for writer in writers {
            if let Err((writer, error)) = writer.join().unwrap() {
                fail(&format!("writer {writer}"), error);
            }
        }
        reader.join().unwrap()
    });

    for pair in history.windows(2) {
        let (before, after) = (pair[0], pair[1]);
        assert!(after.builds >= before.builds, "build count went down: {before:?} -> {after:?}");
        assert!(after.port_states >= before.port_states, "port states went down: {before:?} -> {after:?}");
        assert!(after.port0_builds >= before.port0_builds, "builds of a port went down: {before:?} -> {after:?}");
    }
    let last = *history.last().unwrap();
    assert_eq!(
        last,
        Seen {
            builds: WRITERS * BUILDS_PER_WRITER,
            port_states: WRITERS * PORTS_PER_WRITER,
            port0_builds: BUILDS_PER_WRITER / PORTS_PER_WRITER
        }
    );
    let distinct: HashSet<usize> = history.iter().map(|seen| seen.builds).collect();
    assert!(distinct.len() >= 3, "the reader should watch the count grow, saw {distinct:?} in {reads} reads");

    let db = BuildDb::open(&path).unwrap();
    let runs = db.runs(10).unwrap();
    assert_eq!(runs.len(), WRITERS);
    assert!(runs.iter().all(|run| run.status == RunStatus::Completed));
    for run in &runs {
        let builds = db.builds_of_run(&run.id).unwrap();
        assert!(builds.iter().all(|build| build.status == BuildStatus::Success));
    }
}

#[test]
fn processes_creating_the_database_together_all_succeed() {
    const OPENERS: usize = 6;
    for _ in 0..20 {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("db/builddb.sqlite");
        let start = Barrier::new(OPENERS);
        std::thread::scope(|scope| {
            for opener in 0..OPENERS {
                let (path, start) = (&path, &start);
                scope.spawn(move || {
                    start.wait();
                    let db = BuildDb::open(path).unwrap_or_else(|e| fail(&format!("opener {opener}"), e));
                    db.start_run("build", None).unwrap_or_else(|e| fail(&format!("opener {opener} start_run"), e));
                });
            }
        });
        let db = BuildDb::open(&path).unwrap();
        assert_eq!(db.runs(100).unwrap().len(), OPENERS);
        let conn = rusqlite::Connection::open(&path).unwrap();
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |row| row.get(0)).unwrap();
        assert_eq!(mode, "wal");
        let version: u32 = conn.query_row("SELECT version FROM schema_version", [], |row| row.get(0)).unwrap();
        assert_eq!(version, portsynth::builddb::SCHEMA_VERSION);
    }
}

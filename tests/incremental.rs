//! Incremental decisions end to end: real bmake, real SQLite files, the real
//! binary. Successful builds are recorded through the library API the
//! builder uses (`record_success`), with a package file placed in `All/`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{stderr, Env};
use portsynth::builddb::{BuildDb, NewBuild, PackageEntry, RunCounts, RunStatus};
use portsynth::commands::prepare::prepare;

fn load_config(env: &Env) -> portsynth::config::Config {
    portsynth::config::load(&env.config(), None).unwrap()
}

/// Records every port the plan wants to build as built successfully.
fn mark_all_built(env: &Env) {
    let config = load_config(env);
    let db = BuildDb::open(&config.database_path).unwrap();
    let prepared = prepare(&config, &db, &[]).unwrap();
    let run = db.start_run("test-build", None).unwrap();
    let all = config.packages_dir.join("All");
    std::fs::create_dir_all(&all).unwrap();
    let mut built = 0;
    for entry in prepared.plan.to_build() {
        let meta = prepared.tree.nodes[entry.node].meta.as_ref().unwrap();
        let keys = prepared.keys[entry.node].as_ref().unwrap();
        let origin = entry.origin.to_string();
        let file = all.join(format!("{}.pkg", meta.pkgname));
        std::fs::write(&file, format!("package of {origin}")).unwrap();
        let build = db
            .start_build(
                &run,
                &NewBuild {
                    origin: &origin,
                    pkgname: &meta.pkgname,
                    version: &meta.pkgversion,
                    slot: Some(1),
                    log_path: None,
                    why: None,
                },
            )
            .unwrap();
        let state = keys.to_state(&meta.pkgname, &meta.pkgversion, &file.to_string_lossy());
        let package = PackageEntry {
            pkgname: meta.pkgname.clone(),
            version: meta.pkgversion.clone(),
            file: file.to_string_lossy().into_owned(),
            sha256: "0".repeat(64),
            size: 1,
        };
        db.record_success(&build, &state, &package, None).unwrap();
        built += 1;
    }
    db.finish_run(&run, RunStatus::Completed, &RunCounts { built, ..Default::default() }).unwrap();
}

/// origin → reason, for the ports that need building.
fn to_build(env: &Env) -> BTreeMap<String, String> {
    let plan = env.status_json(&[]);
    plan["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["verdict"] == "build")
        .map(|e| (e["origin"].as_str().unwrap().to_string(), e["reason"].as_str().unwrap().to_string()))
        .collect()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

fn append(path: &Path, text: &str) {
    let mut content = std::fs::read_to_string(path).unwrap();
    content.push_str(text);
    std::fs::write(path, content).unwrap();
}

/// "scan: H port directories from the cache, S scanned with bmake" → (H, S).
fn scan_stats(env: &Env) -> (usize, usize) {
    let output = env.run(&["-v", "status"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let err = stderr(&output);
    let line = err.lines().find(|l| l.starts_with("scan: ")).unwrap_or_else(|| panic!("no scan line: {err}"));
    let numbers: Vec<usize> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    (numbers[0], numbers[1])
}

#[test]
fn nothing_changed_means_nothing_to_build() {
    let env = Env::testdata();
    assert_eq!(to_build(&env).len(), 16);
    assert!(to_build(&env).values().all(|r| r == "new"));
    mark_all_built(&env);
    assert_eq!(to_build(&env), BTreeMap::new());
    let plan = env.status_json(&[]);
    assert_eq!(plan["counts"]["up_to_date"], 16);
}

#[test]
fn touching_mtimes_changes_nothing() {
    let env = Env::testdata();
    mark_all_built(&env);
    for file in ["devel/libgreet/Makefile", "Mk/bsd.port.mk", "Mk/Uses/warnings.mk"] {
        let f = std::fs::File::options().write(true).open(env.ports().join(file)).unwrap();
        f.set_modified(std::time::SystemTime::now()).unwrap();
    }
    assert_eq!(to_build(&env), BTreeMap::new());
}

#[test]
fn editing_a_library_rebuilds_it_and_its_dependents_only() {
    let env = Env::testdata();
    mark_all_built(&env);
    append(&env.ports().join("devel/libgreet/Makefile"), "# a comment\n");
    assert_eq!(
        to_build(&env),
        map(&[
            ("devel/libgreet", "changed"),
            ("misc/hello", "dependency changed: devel/libgreet"),
            ("x11/meta-bundle", "dependency changed: misc/hello"),
        ])
    );
}

#[test]
fn a_change_propagates_through_a_chain_of_three() {
    let env = Env::testdata();
    mark_all_built(&env);
    append(&env.ports().join("misc/chain-top/pkg-descr"), "more\n");
    assert_eq!(to_build(&env), map(&[("misc/chain-top", "changed")]));
    mark_all_built(&env);
    append(&env.ports().join("misc/chain-bottom/pkg-descr"), "more\n");
    assert_eq!(
        to_build(&env),
        map(&[
            ("misc/chain-bottom", "changed"),
            ("misc/chain-middle", "dependency changed: misc/chain-bottom"),
            ("misc/chain-top", "dependency changed: misc/chain-middle"),
        ])
    );
}

#[test]
fn framework_change_rebuilds_everything_and_shared_include_its_users() {
    let env = Env::testdata();
    mark_all_built(&env);
    append(&env.ports().join("Mk/Uses/warnings.mk"), "# tweak\n");
    assert_eq!(
        to_build(&env),
        map(&[
            ("devel/codegen", "framework changed"),
            ("misc/generated", "dependency changed: devel/codegen"),
            ("misc/hello", "framework changed"),
            ("textproc/wordcount", "framework changed"),
            ("x11/meta-bundle", "dependency changed: misc/generated"),
        ])
    );
    append(&env.ports().join("Mk/bsd.port.mk"), "# tweak\n");
    let all = to_build(&env);
    assert_eq!(all.len(), 16);
    assert!(all.values().all(|r| r == "framework changed"), "{all:?}");
}

#[test]
fn config_change_and_missing_package_have_their_reasons() {
    let env = Env::testdata();
    mark_all_built(&env);
    std::fs::remove_file(env.base().join("packages/All/hello-2.1.pkg")).unwrap();
    assert_eq!(to_build(&env), map(&[("misc/hello", "package missing")]));
    mark_all_built(&env);
    env.write_config("[make_conf]\nCFLAGS = \"-O1\"\n");
    let all = to_build(&env);
    assert_eq!(all.len(), 16);
    assert!(all.values().all(|r| r == "config changed"), "{all:?}");
}

#[test]
fn scan_cache_hits_and_each_invalidation() {
    let env = Env::testdata();
    // 17 port directories (lang/minilang holds two flavors, counted once).
    let dirs = 17;
    assert_eq!(scan_stats(&env), (0, dirs));
    assert_eq!(scan_stats(&env), (dirs, 0), "no change: everything from the cache");

    append(&env.ports().join("misc/hello/Makefile"), "# edit\n");
    assert_eq!(scan_stats(&env), (dirs - 1, 1), "one port's Makefile");

    append(&env.ports().join("Mk/Uses/warnings.mk"), "# edit\n");
    assert_eq!(scan_stats(&env), (dirs - 3, 3), "the shared include's three users");

    append(&env.ports().join("Mk/bsd.port.mk"), "# edit\n");
    assert_eq!(scan_stats(&env), (0, dirs), "the framework");
    assert_eq!(scan_stats(&env), (dirs, 0));

    env.write_config("[make_conf]\nFOO = \"bar\"\n");
    assert_eq!(scan_stats(&env), (0, dirs), "make variables can change metadata");
}

#[test]
fn the_cache_returns_the_same_plan_as_bmake() {
    let env = Env::testdata();
    let cold = env.status_json(&[]);
    let warm = env.status_json(&[]);
    assert_eq!(cold, warm);
}

#[test]
fn a_corrupt_database_is_a_clear_error_and_is_kept() {
    let env = Env::testdata();
    std::fs::create_dir_all(env.base()).unwrap();
    let db = env.base().join("builddb.sqlite");
    let garbage = b"this is not an SQLite database, it is garbage that must survive".repeat(100);
    std::fs::write(&db, &garbage).unwrap();
    for command in [&["status"][..], &["history"][..]] {
        let output = env.run(command);
        assert_eq!(output.status.code(), Some(2), "{command:?}");
        let err = stderr(&output);
        assert!(err.contains(&db.display().to_string()) && err.contains("portsynth reset-db"), "{err}");
    }
    assert_eq!(std::fs::read(&db).unwrap(), garbage, "the file must not be touched");
}

#[test]
fn reset_db_asks_and_removes() {
    let env = Env::testdata();
    mark_all_built(&env);
    let db = env.base().join("builddb.sqlite");
    let output = env.run(&["reset-db"]);
    assert_eq!(output.status.code(), Some(2), "no terminal and no -y: refuse");
    assert!(stderr(&output).contains("not removing"), "{}", stderr(&output));
    assert!(db.exists());
    env.run_ok(&["reset-db", "-y"]);
    assert!(!db.exists());
    assert!(!env.base().join("builddb.sqlite-wal").exists());
    assert!(to_build(&env).values().all(|r| r == "new"));
}

#[test]
fn reset_db_removes_only_a_portsynth_database() {
    let env = Env::testdata();
    std::fs::create_dir_all(env.base()).unwrap();
    let file = env.base().join("db-file");
    env.write_config("database_path = \"base/db-file\"\n");
    // Not a build database: a text file, another program's SQLite file, a directory.
    let passwd_like = b"root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534::/:/bin/false\n".to_vec();
    std::fs::write(&file, &passwd_like).unwrap();
    let output = env.run(&["reset-db", "-y"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let err = stderr(&output);
    assert!(err.contains(&format!("not removing {}", file.display())) && err.contains("not an SQLite file"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), passwd_like, "the file must be left alone");
    std::fs::remove_file(&file).unwrap();
    {
        let other = rusqlite::Connection::open(&file).unwrap();
        other.execute_batch("CREATE TABLE bookmarks (url TEXT); INSERT INTO bookmarks VALUES ('x');").unwrap();
    }
    let before = std::fs::read(&file).unwrap();
    let output = env.run(&["reset-db", "-y"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("without portsynth's schema_version table"), "{}", stderr(&output));
    assert_eq!(std::fs::read(&file).unwrap(), before);
    std::fs::remove_file(&file).unwrap();
    std::fs::create_dir(&file).unwrap();
    let output = env.run(&["reset-db", "-y"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("not a regular file") && file.is_dir(), "{}", stderr(&output));
    std::fs::remove_dir(&file).unwrap();

    // A build database: empty, corrupt (SQLite header, garbage after it), real.
    std::fs::write(&file, b"").unwrap();
    env.run_ok(&["reset-db", "-y"]);
    assert!(!file.exists());
    let mut corrupt = b"SQLite format 3\0".to_vec();
    corrupt.extend(b"garbage that no SQLite can read".repeat(200));
    std::fs::write(&file, &corrupt).unwrap();
    let output = env.run(&["status"]);
    assert!(stderr(&output).contains("portsynth reset-db"), "{}", stderr(&output));
    env.run_ok(&["reset-db", "-y"]);
    assert!(!file.exists());
    env.run_ok(&["status"]);
    assert!(file.exists());
    env.run_ok(&["reset-db", "-y"]);
    assert!(!file.exists());
}

#[test]
fn history_lists_runs_and_builds() {
    let env = Env::testdata();
    let empty = env.run_ok(&["history"]);
    assert!(empty.contains("no build database yet"), "{empty}");
    mark_all_built(&env);
    let runs: serde_json::Value = serde_json::from_str(&env.run_ok(&["--json", "history"])).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 1);
    assert_eq!(runs[0]["status"], "completed");
    assert_eq!(runs[0]["counts"]["built"], 16);
    let builds: serde_json::Value = serde_json::from_str(&env.run_ok(&["--json", "history", "misc/hello"])).unwrap();
    assert_eq!(builds.as_array().unwrap().len(), 1);
    assert_eq!(builds[0]["status"], "success");
    let text = env.run_ok(&["history", "--limit", "5"]);
    assert!(text.contains("completed") && text.contains("test-build"), "{text}");
}

#[test]
fn readers_in_other_processes_are_not_blocked_by_a_writer() {
    let env = Env::testdata();
    mark_all_built(&env);
    let config = load_config(&env);
    let writer = {
        let path = config.database_path.clone();
        std::thread::spawn(move || {
            let db = BuildDb::open(&path).unwrap();
            let run = db.start_run("writer", None).unwrap();
            for i in 0..400 {
                let origin = format!("misc/p{}", i % 20);
                let build = db
                    .start_build(
                        &run,
                        &NewBuild {
                            origin: &origin,
                            pkgname: "p",
                            version: "1",
                            slot: None,
                            log_path: None,
                            why: None,
                        },
                    )
                    .unwrap();
                db.finish_build(&build, portsynth::builddb::BuildStatus::Failed, Some("build"), Some("test")).unwrap();
            }
            db.finish_run(&run, RunStatus::Completed, &RunCounts::default()).unwrap();
        })
    };
    let mut reads = 0;
    while !writer.is_finished() || reads < 3 {
        let history = env.run(&["--json", "history", "misc/p1"]);
        assert!(history.status.success(), "history failed during writes: {}", stderr(&history));
        let status = env.run(&["--json", "status", "misc/hello"]);
        assert!(status.status.success(), "status failed during writes: {}", stderr(&status));
        reads += 1;
    }
    writer.join().unwrap();
    let builds: serde_json::Value =
        serde_json::from_str(&env.run_ok(&["--json", "history", "misc/p1", "--limit", "100"])).unwrap();
    assert_eq!(builds.as_array().unwrap().len(), 20);
}

/// (files read, directories listed) of a `-v status`, from its "files:" line.
fn reads(env: &Env) -> (usize, usize) {
    let output = env.run(&["-v", "status"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let err = stderr(&output);
    let line = err.lines().find(|l| l.starts_with("files: ")).unwrap_or_else(|| panic!("no files line: {err}"));
    let numbers: Vec<usize> = line.split_whitespace().filter_map(|w| w.trim_end_matches(';').parse().ok()).collect();
    (numbers[1], numbers[3])
}

fn mtime(path: &Path) -> std::time::SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

fn set_mtime(path: &Path, time: std::time::SystemTime) {
    std::fs::File::options().write(true).open(path).unwrap().set_modified(time).unwrap();
}

/// Every file of a fresh copy is racily clean (changed less than the racy
/// window before its signature was taken) and is read again; once that has
/// passed, one status records signatures that hold.
fn settle(env: &Env) {
    std::thread::sleep(std::time::Duration::from_millis(2100));
    reads(env);
}

#[test]
fn an_unchanged_tree_is_checked_without_reading_a_file() {
    let env = Env::testdata();
    mark_all_built(&env);
    settle(&env);
    assert_eq!(reads(&env), (0, 0), "no file read, no directory listed");
    assert_eq!(to_build(&env), BTreeMap::new());
    assert_eq!(reads(&env), (0, 0));
}

#[test]
fn stat_signatures_miss_no_change() {
    let env = Env::testdata();
    mark_all_built(&env);
    settle(&env);

    // Same size, mtime set back: only the ctime tells.
    let makefile = env.ports().join("misc/hello/Makefile");
    let before = mtime(&makefile);
    let text = std::fs::read_to_string(&makefile).unwrap();
    let same_size = text.replacen("2.1", "2.2", 1);
    assert_eq!(same_size.len(), text.len());
    assert_ne!(same_size, text);
    std::fs::write(&makefile, &same_size).unwrap();
    set_mtime(&makefile, before);
    assert_eq!(mtime(&makefile), before);
    assert_eq!(reads(&env).0, 1, "the one file whose ctime changed");
    let built = to_build(&env);
    assert_eq!(built.get("misc/hello").map(String::as_str), Some("changed"), "{built:?}");
    std::fs::write(&makefile, &text).unwrap();
    set_mtime(&makefile, before);
    assert_eq!(to_build(&env), BTreeMap::new(), "back to the built content");

    // Replaced by a rename: a new inode, even with the old size and mtime.
    let descr = env.ports().join("misc/chain-top/pkg-descr");
    let old = std::fs::read(&descr).unwrap();
    let old_mtime = mtime(&descr);
    let mut new = old.clone();
    new[0] ^= 0x20;
    let replacement = env.path().join("pkg-descr.new");
    std::fs::write(&replacement, &new).unwrap();
    set_mtime(&replacement, old_mtime);
    std::fs::rename(&replacement, &descr).unwrap();
    assert_eq!(to_build(&env), map(&[("misc/chain-top", "changed")]));
    std::fs::write(&descr, &old).unwrap();
    assert_eq!(to_build(&env), BTreeMap::new());

    // A new file and a removed one change the port directory's listing.
    settle(&env);
    let message = env.ports().join("misc/chain-top/pkg-message");
    std::fs::write(&message, "hello\n").unwrap();
    assert_eq!(to_build(&env), map(&[("misc/chain-top", "changed")]));
    std::fs::remove_file(&message).unwrap();
    assert_eq!(to_build(&env), BTreeMap::new());
    let patch = env.ports().join("misc/hello/files/patch-extra");
    std::fs::create_dir_all(patch.parent().unwrap()).unwrap();
    std::fs::write(&patch, "--- a\n+++ b\n").unwrap();
    let built = to_build(&env);
    assert_eq!(built.get("misc/hello").map(String::as_str), Some("changed"), "{built:?}");
    std::fs::remove_file(&patch).unwrap();
    assert_eq!(to_build(&env), BTreeMap::new());

    // A makefile outside the port, read through its signature: its users.
    settle(&env);
    let dirs = 17;
    assert_eq!(scan_stats(&env), (dirs, 0));
    append(&env.ports().join("Mk/Uses/warnings.mk"), "# edit\n");
    assert_eq!(scan_stats(&env), (dirs - 3, 3), "the shared include's three users");
}

/// git's racily clean entries: a file changed within the timestamp
/// granularity of the moment its signature was taken may change again
/// without a new signature. Simulated by giving the stored signature the
/// file's new stat (what a change within the same tick leaves) while its
/// CRC stays the old content's.
#[test]
fn a_racily_clean_file_is_read_again() {
    let env = Env::testdata();
    mark_all_built(&env);
    let makefile = env.ports().join("misc/hello/Makefile");
    // Signed just now: the copy's files are younger than the racy window.
    reads(&env);
    let text = std::fs::read_to_string(&makefile).unwrap();
    std::fs::write(&makefile, text.replacen("2.1", "2.2", 1)).unwrap();
    let db = rusqlite::Connection::open(env.base().join("builddb.sqlite")).unwrap();
    let meta = std::fs::metadata(&makefile).unwrap();
    use std::os::unix::fs::MetadataExt;
    let updated = db
        .execute(
            "UPDATE signatures SET size = ?2, mtime_ns = ?3, ctime_ns = ?4, inode = ?5, device = ?6 WHERE path = ?1",
            rusqlite::params![
                makefile.to_str().unwrap(),
                meta.size() as i64,
                meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
                meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
                meta.ino() as i64,
                meta.dev() as i64
            ],
        )
        .unwrap();
    assert_eq!(updated, 1);
    drop(db);
    let built = to_build(&env);
    assert_eq!(built.get("misc/hello").map(String::as_str), Some("changed"), "{built:?}");
}

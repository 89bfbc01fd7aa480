//! One writer per build base: while a real build runs (a gated port waiting
//! in its build phase), every other command that changes the build base
//! fails with the lock holder's pid and exit 2, and changes nothing: the
//! running build's slot directories, database rows, packages and distfiles
//! are as they were, and the build then completes.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{stderr, Env};

const TAG: &str = "one-writer";

/// A test port `misc/NAME`; a gated one waits in `build` for `ports/.gate-TAG/open`.
fn write_port(env: &Env, name: &str, gated: bool) {
    let dir = env.ports().join("misc").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let wait = if gated {
        format!(
            "\t@echo \"waiting for ${{PORTSDIR}}/.gate-{TAG}/open\"\n\
             \t@while [ ! -e ${{PORTSDIR}}/.gate-{TAG}/open ]; do sleep 0.1; done\n"
        )
    } else {
        String::new()
    };
    let makefile = format!(
        "PORTNAME=\t{name}\nPORTVERSION=\t1.0\nCATEGORIES=\tmisc\nDISTFILES=\n\n\
         MAINTAINER=\ttests@portsynth.example\nCOMMENT=\tTest port {name}\n\n\
         PLIST_FILES=\tbin/{name}\n\n\
         do-build:\n{wait}\t@echo building {name}\n\n\
         do-install:\n\tmkdir -p ${{STAGEDIR}}${{PREFIX}}/bin\n\
         \techo 'exit 0' > ${{STAGEDIR}}${{PREFIX}}/bin/{name}\n\
         \tchmod 755 ${{STAGEDIR}}${{PREFIX}}/bin/{name}\n\n\
         .include <bsd.port.mk>\n"
    );
    std::fs::write(dir.join("Makefile"), makefile).unwrap();
    std::fs::write(dir.join("pkg-descr"), format!("Test port {name}.\n")).unwrap();
}

/// Kills the build if the test panics.
struct Running(Option<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Everything a second writer could change: the build base's entries (slot
/// directories by inode and mtime), every file under packages and distfiles
/// with its content, and the database rows.
fn snapshot(env: &Env) -> BTreeMap<String, String> {
    let mut state = BTreeMap::new();
    for entry in std::fs::read_dir(env.base()).unwrap().flatten() {
        let meta = std::fs::symlink_metadata(entry.path()).unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if meta.is_dir() {
            state.insert(format!("base/{name}"), format!("dir ino {} mtime {}", meta.ino(), meta.mtime_nsec()));
        }
    }
    for dir in ["packages", "distfiles"] {
        files_under(&env.base().join(dir), &format!("base/{dir}"), &mut state);
    }
    let db = rusqlite::Connection::open_with_flags(
        env.base().join("builddb.sqlite"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    for table in ["runs", "builds", "ports", "packages"] {
        let mut statement = db.prepare(&format!("SELECT * FROM {table} ORDER BY rowid")).unwrap();
        let columns = statement.column_count();
        let rows: Vec<String> = statement
            .query_map([], |row| {
                Ok((0..columns).map(|i| format!("{:?}", row.get_ref(i).unwrap())).collect::<Vec<_>>().join("|"))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        state.insert(format!("db/{table}"), rows.join("\n"));
    }
    state
}

fn files_under(dir: &Path, label: &str, state: &mut BTreeMap<String, String>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = format!("{label}/{}", entry.file_name().to_string_lossy());
        if entry.file_type().unwrap().is_dir() {
            files_under(&entry.path(), &name, state);
        } else {
            state.insert(name, format!("{:?}", std::fs::read(entry.path()).unwrap()));
        }
    }
}

fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> bool, running: &mut Running) {
    let deadline = Instant::now() + limit;
    while !check() {
        if let Some(status) = running.0.as_mut().unwrap().try_wait().unwrap() {
            panic!("the build exited ({status}) while waiting for {what}");
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_second_writer_fails_naming_the_running_build_and_changes_nothing() {
    let env = Env { dir: tempfile::tempdir().unwrap() };
    common::copy_tree(&common::repo().join("ports-testdata/Mk"), &env.ports().join("Mk"));
    std::fs::create_dir_all(env.ports().join(format!(".gate-{TAG}"))).unwrap();
    write_port(&env, "free", false);
    write_port(&env, "gated", true);
    env.write_config("workers = 1\n");
    env.run_ok(&["-y", "build", "misc/free"]);
    assert!(env.base().join("packages/All/free-1.0.pkg").is_file());
    // Bait: what cleanup, rebuild-repository --prune and purge-distfiles
    // would remove if they ran.
    std::fs::create_dir_all(env.base().join("SL09")).unwrap();
    std::fs::write(env.base().join("packages/All/obsolete-0.1.pkg"), "obsolete").unwrap();
    std::fs::create_dir_all(env.base().join("distfiles")).unwrap();
    std::fs::write(env.base().join("distfiles/unreferenced-1.0.tar.gz"), "stale").unwrap();

    let log = std::fs::File::create(env.path().join("build.stderr")).unwrap();
    let child = env
        .command(&["--json", "-y", "build", "misc/gated"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut running = Running(Some(child));
    let port_log = env.base().join("logs/misc___gated.log");
    wait_until(
        "misc/gated to wait at its gate",
        Duration::from_secs(120),
        || std::fs::read_to_string(&port_log).unwrap_or_default().contains("waiting for"),
        &mut running,
    );
    let before = snapshot(&env);
    assert!(before.contains_key("base/SL01"), "the running build's slot: {before:?}");

    let message = format!("another portsynth run (pid {pid}) is using the build base {}", env.base().display());
    let commands: &[&[&str]] = &[
        &["cleanup"],
        &["-y", "reset-db"],
        &["build-one", "misc/free"],
        &["-y", "purge-distfiles"],
        &["rebuild-repository", "--prune"],
        &["fetch-only"],
        &["fetch-only", "misc/free"],
        &["-y", "everything"],
        &["-y", "build", "misc/free"],
        &["just-build", "misc/free"],
        &["-y", "force", "misc/free"],
        &["-y", "test", "misc/free"],
    ];
    for args in commands {
        let output = env.run(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", stderr(&output));
        assert!(stderr(&output).contains(&message), "{args:?}: {}", stderr(&output));
        assert_eq!(snapshot(&env), before, "{args:?} changed the build base");
    }
    assert!(running.0.as_mut().unwrap().try_wait().unwrap().is_none(), "the build must still be running");

    std::fs::write(env.ports().join(format!(".gate-{TAG}/open")), "").unwrap();
    let mut child = running.0.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the build did not finish");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let build_stderr = std::fs::read_to_string(env.path().join("build.stderr")).unwrap();
    assert!(status.success(), "the build failed: {status}\n{build_stderr}");
    assert!(env.base().join("packages/All/gated-1.0.pkg").is_file());
    assert!(env.base().join("packages/All/free-1.0.pkg").is_file());
    assert!(env.base().join("distfiles/unreferenced-1.0.tar.gz").is_file());
    let db = rusqlite::Connection::open(env.base().join("builddb.sqlite")).unwrap();
    let status: String = db
        .query_row("SELECT status FROM builds WHERE origin = 'misc/gated' ORDER BY rowid DESC LIMIT 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(status, "success");
    // The lock is free again.
    let output = env.run(&["cleanup"]);
    assert!(!stderr(&output).contains("another portsynth run"), "{}", stderr(&output));
}

//! The metadata scan runs port Makefiles in scan sandboxes: real binary, real
//! bmake, the small hostile tree of `tests/fixtures/scan-ports` (parse-time
//! `!=` commands that try to write to the host, read /etc/shadow, reach the
//! network, or hang).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{copy_tree, processes_with, repo, Env};
use serde_json::Value;

/// The scan-time hostile tree plus the real framework, with `extra` config.
fn hostile_env(extra: &str) -> Env {
    let env = Env { dir: tempfile::tempdir().unwrap() };
    copy_tree(&repo().join("tests/fixtures/scan-ports"), &env.ports());
    copy_tree(&repo().join("ports-testdata/Mk"), &env.ports().join("Mk"));
    env.write_config(extra);
    env
}

/// A string no other process on the machine has in its command line.
fn unique_seconds() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("1000.{}{:09}", std::process::id(), nanos)
}

fn plan_of(env: &Env) -> BTreeMap<String, (String, String)> {
    let plan = env.status_json(&[]);
    plan["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let origin = e["origin"].as_str().unwrap().to_string();
            (origin, (e["verdict"].as_str().unwrap().to_string(), e["reason"].as_str().unwrap_or("").to_string()))
        })
        .collect()
}

/// Waits (bounded: a namespace is torn down asynchronously) until no
/// process has `needle` in its command line.
fn assert_no_process_with(needle: &str, when: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = processes_with(needle);
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "{when}: processes left behind: {left:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Mount points of our namespace (the host's) that mention `dir`.
fn mounts_mentioning(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&dir))
        .map(str::to_string)
        .collect()
}

fn uid_of(user: &str) -> String {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f[0] == user)
        .map(|f| f[2].to_string())
        .unwrap_or_else(|| panic!("no user {user} in /etc/passwd"))
}

#[test]
fn scan_commands_run_unprivileged_without_host_writes_secrets_or_network() {
    let probe = tempfile::tempdir().unwrap();
    let marker = probe.path().join("host-marker");
    let tmp_marker = format!("/tmp/portsynth-scan-marker-{}", unique_seconds());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let env = hostile_env(&format!(
        "scan_timeout = 5\n[make_conf]\nHOST_MARKER = \"{}\"\nHOSTILE_PORT = \"{port}\"\nHANG_SECONDS = \"0\"\n",
        marker.display()
    ));
    let plan = plan_of(&env);
    let (verdict, reason) = &plan["hostile/scan-escape"];
    assert_eq!(verdict, "ignored", "{plan:?}");
    let uid = uid_of("nobody");
    assert_eq!(reason, &format!("uid={uid} shadow=refused net=unreachable tree=tree-read-only namespaces-denied"));
    assert_ne!(uid, "0");
    assert!(!marker.exists(), "the scan wrote {} on the host", marker.display());
    assert!(!Path::new(&format!("{}.shadow", marker.display())).exists());
    assert!(!env.ports().join("hostile/scan-escape/scan-marker").exists(), "the scan wrote into the tree");
    assert!(!env.ports().join("scan-tree-marker").exists());
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_err(), "the scan reached the host's loopback");

    // The same through /tmp: the sandbox's /tmp is its own.
    env.write_config(&format!(
        "[make_conf]\nHOST_MARKER = \"{tmp_marker}\"\nHOSTILE_PORT = \"{port}\"\nHANG_SECONDS = \"0\"\n"
    ));
    let plan = plan_of(&env);
    assert_eq!(plan["hostile/scan-escape"].0, "ignored");
    assert!(!Path::new(&tmp_marker).exists(), "the scan wrote {tmp_marker} on the host");
    assert!(!Path::new(&format!("{tmp_marker}.shadow")).exists());
    assert_eq!(plan["misc/plain"], ("build".to_string(), "new".to_string()));
}

#[test]
fn a_hanging_scan_times_out_alone_and_leaves_nothing_behind() {
    let seconds = unique_seconds();
    let env = hostile_env(&format!("scan_timeout = 2\n[make_conf]\nHANG_SECONDS = \"{seconds}\"\n"));
    let started = Instant::now();
    let output = env.run(&["--json", "status"]);
    let elapsed = started.elapsed();
    assert!(output.status.success(), "{}", common::stderr(&output));
    assert!(elapsed < Duration::from_secs(30), "status took {elapsed:?}");
    let plan: Value = serde_json::from_slice(&output.stdout).unwrap();
    let entry =
        |origin: &str| plan["entries"].as_array().unwrap().iter().find(|e| e["origin"] == origin).cloned().unwrap();
    assert_eq!(entry("hostile/scan-hang")["verdict"], "not-buildable");
    assert_eq!(entry("hostile/scan-hang")["reason"], "scan timed out after 2 s");
    assert_eq!(entry("misc/plain")["verdict"], "build");
    assert_eq!(entry("hostile/scan-escape")["verdict"], "ignored");
    assert_no_process_with(&seconds, "after status");
    assert!(mounts_mentioning(env.path()).is_empty());
    // A timed-out scan is not cached: the next status scans it again.
    let again = env.run(&["--json", "status"]);
    let plan: Value = serde_json::from_slice(&again.stdout).unwrap();
    let hang = plan["entries"].as_array().unwrap().iter().find(|e| e["origin"] == "hostile/scan-hang").unwrap();
    assert_eq!(hang["reason"], "scan timed out after 2 s");
    assert_no_process_with(&seconds, "after the second status");
}

#[test]
fn sigterm_during_a_hanging_scan_leaves_no_process_and_no_mount() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let seconds = unique_seconds();
        let env = hostile_env(&format!("scan_timeout = 600\n[make_conf]\nHANG_SECONDS = \"{seconds}\"\n"));
        let mounts_before = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let mut command = env.command(&["status"]);
        // A test run started in the background of a non-interactive shell has
        // SIGINT ignored, and the child would inherit that.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                libc::signal(libc::SIGINT, libc::SIG_DFL);
                Ok(())
            });
        }
        let mut child = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while processes_with(&format!("sleep {seconds}")).is_empty() {
            assert!(Instant::now() < deadline, "the hanging scan never started");
            assert!(child.try_wait().unwrap().is_none(), "status ended before the scan hung");
            std::thread::sleep(Duration::from_millis(50));
        }
        unsafe { libc::kill(child.id() as i32, signal) };
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "status did not exit on signal {signal}");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(!status.success());
        assert_no_process_with(&seconds, &format!("after signal {signal}"));
        assert!(mounts_mentioning(env.path()).is_empty());
        let mounts_after = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let lines = |text: &str| text.lines().map(str::to_string).collect::<std::collections::BTreeSet<_>>();
        let (before, after) = (lines(&mounts_before), lines(&mounts_after));
        let added: Vec<_> = after.difference(&before).collect();
        assert!(added.is_empty(), "host mounts appeared: {added:#?}");
    }
}

/// Rows of the scan cache, read directly from the build database.
fn cached_dirs(env: &Env) -> Vec<String> {
    let path = env.base().join("builddb.sqlite");
    if !path.exists() {
        return vec![];
    }
    let Ok(conn) = rusqlite::Connection::open(&path) else { return vec![] };
    let Ok(mut query) = conn.prepare("SELECT dir FROM scan_cache ORDER BY dir") else { return vec![] };
    query.query_map([], |row| row.get(0)).map(|rows| rows.filter_map(Result::ok).collect()).unwrap_or_default()
}

#[test]
fn a_killed_cold_scan_resumes_from_what_it_stored() {
    let seconds = unique_seconds();
    let env = hostile_env(&format!("scan_timeout = 4\n[make_conf]\nHANG_SECONDS = \"{seconds}\"\n"));
    let mut child = env
        .command(&["status"])
        .env("PORTSYNTH_SCAN_FLUSH_MS", "100")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The other ports are scanned in moments; the hanging one holds the scan.
    let deadline = Instant::now() + Duration::from_secs(30);
    while cached_dirs(&env).len() < 3 {
        assert!(Instant::now() < deadline, "nothing was stored during the scan: {:?}", cached_dirs(&env));
        assert!(child.try_wait().unwrap().is_none(), "status ended before the scan was stored");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(child.try_wait().unwrap().is_none(), "the hanging port should still hold the scan");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(cached_dirs(&env), ["hostile/scan-daemon", "hostile/scan-escape", "misc/plain"]);
    assert_no_process_with(&seconds, "after kill -9");

    let output = env.run(&["-v", "status"]);
    let err = common::stderr(&output);
    assert!(err.contains("scan: 3 port directories from the cache, 1 scanned"), "{err}");
}

#[test]
fn the_scan_mount_point_is_an_empty_directory_that_cleanup_leaves_alone() {
    let env = hostile_env("[make_conf]\nHANG_SECONDS = \"0\"\n");
    plan_of(&env);
    let root = env.base().join("scan");
    assert!(root.is_dir());
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0, "the host side of the mount point stays empty");
    let output = env.run(&["cleanup"]);
    assert!(output.status.success(), "{}", common::stderr(&output));
    // A warm status (scan cache) still plans the same.
    let plan = plan_of(&env);
    assert_eq!(plan["misc/plain"].0, "build");
}

/// Children of `parent` whose command line contains `needle`.
fn children_with(parent: u32, needle: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // pid (comm) state ppid …: comm may hold spaces, so split after ')'.
        let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        let cmdline = String::from_utf8_lossy(&std::fs::read(entry.path().join("cmdline")).unwrap_or_default())
            .replace('\0', " ");
        if ppid == Some(parent) && cmdline.contains(needle) {
            found.push(pid);
        }
    }
    found
}

#[test]
fn a_dead_scan_sandbox_fails_its_port_and_the_next_port_gets_a_new_one() {
    let seconds = unique_seconds();
    let daemon = seconds.replacen("1000.", "2000.", 1);
    let env = hostile_env(&format!(
        "scan_timeout = 600\n[make_conf]\nHANG_SECONDS = \"{seconds}\"\nDAEMON_SECONDS = \"{daemon}\"\n"
    ));
    // More ports after the hanging one (one scanning thread goes in order:
    // hostile/scan-daemon, hostile/scan-escape, hostile/scan-hang, then misc/*).
    for i in 0..5 {
        let copy = env.ports().join(format!("misc/plain{i}"));
        copy_tree(&env.ports().join("misc/plain"), &copy);
        // A package name of its own: two ports producing one are not buildable.
        let makefile = std::fs::read_to_string(copy.join("Makefile")).unwrap();
        std::fs::write(
            copy.join("Makefile"),
            makefile.replace("PORTVERSION=\t1.0", &format!("PORTVERSION=\t1.{}", i + 1)),
        )
        .unwrap();
    }
    let mut child = env
        .command(&["--json", "status"])
        .env("RAYON_NUM_THREADS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while processes_with(&format!("sleep {seconds}")).is_empty() {
        assert!(Instant::now() < deadline, "the hanging scan never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The same sandbox scanned hostile/scan-daemon before: what it left
    // running was killed after its query.
    assert!(processes_with(&format!("sleep {daemon}")).is_empty(), "a scan's daemon outlived its query");
    let helpers = children_with(child.id(), "scan-helper");
    assert_eq!(helpers.len(), 1, "one scanning thread, one scan sandbox: {helpers:?}");
    unsafe { libc::kill(helpers[0], libc::SIGKILL) };
    let output = {
        let mut stdout = child.stdout.take().unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut text).unwrap();
        assert!(child.wait().unwrap().success());
        text
    };
    let plan: Value = serde_json::from_str(&output).unwrap();
    let entries = plan["entries"].as_array().unwrap();
    let hang = entries.iter().find(|e| e["origin"] == "hostile/scan-hang").unwrap();
    assert_eq!(hang["verdict"], "not-buildable");
    let reason = hang["reason"].as_str().unwrap();
    assert!(reason.starts_with("the scan sandbox died while scanning hostile/scan-hang: "), "{reason}");
    for i in 0..5 {
        let plain = entries.iter().find(|e| e["origin"] == format!("misc/plain{i}").as_str()).unwrap();
        assert_eq!(plain["verdict"], "build", "{plain}");
    }
    assert_no_process_with(&seconds, "after the sandbox died");
}

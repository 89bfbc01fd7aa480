//! fetch-only and purge-distfiles end to end, as root: the real binary,
//! real bmake and framework scripts, real sandboxes, and an HTTP mirror on
//! loopback written here with std::net, whose behaviour each test scripts
//! (fail the first requests, serve wrong bytes, close mid-file...) and
//! whose request counts are the evidence ("downloaded exactly once").
//!
//! Nothing here depends on timing: where a test needs two things to happen
//! at once it holds a lock or a gate and waits (bounded) for the evidence
//! in the logs or the cache, then lets go.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::mirror::{Gate, Mirror, Reply};
use common::{copy_tree, dump, events, repo, run_end, stderr, Env};
use portsynth::builddb::BuildDb;
use portsynth::fetch::lock::DistfileLock;
use portsynth::framework::Kind;
use portsynth::repo::fsutil::sha256_file;
use serde_json::Value;

/// A tree of small ports on top of the real framework.
struct Tree {
    env: Env,
    mirror_url: String,
}

/// One handmade port: `cat/name`, its distfiles (name, content) and
/// optional extra Makefile lines.
struct Port<'a> {
    origin: &'a str,
    files: &'a [(&'a str, &'a [u8])],
    extra: &'a str,
}

impl Tree {
    fn new(mirror: &Mirror, ports: &[Port<'_>], config: &str) -> Tree {
        let env = Env { dir: tempfile::tempdir().unwrap() };
        copy_tree(&repo().join("ports-testdata/Mk"), &env.ports().join("Mk"));
        let tree = Tree { env, mirror_url: mirror.url() };
        for port in ports {
            tree.add(port);
        }
        tree.env.write_config(config);
        tree
    }

    fn add(&self, port: &Port<'_>) {
        let (category, name) = port.origin.split_once('/').unwrap();
        let dir = self.env.ports().join(category).join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let subdir = port.extra.lines().find_map(|l| l.strip_prefix("DIST_SUBDIR=")).map(str::trim);
        let names: Vec<&str> = port.files.iter().map(|(n, _)| *n).collect();
        let makefile = format!(
            "PORTNAME=\t{name}\nPORTVERSION=\t1.0\nCATEGORIES=\t{category}\nMASTER_SITES=\t{}\n\
             DISTFILES=\t{}\nMAINTAINER=\ttests@portsynth.example\nCOMMENT=\tfetch test port\nNO_BUILD=\tyes\n{}\n\
             .include <bsd.port.mk>\n",
            self.mirror_url,
            names.join(" "),
            port.extra
        );
        std::fs::write(dir.join("Makefile"), makefile).unwrap();
        let mut distinfo = String::new();
        for (file, body) in port.files {
            let key = subdir.map_or(file.to_string(), |s| format!("{s}/{file}"));
            let sha = portsynth_sha(body);
            distinfo.push_str(&format!("SHA256 ({key}) = {sha}\nSIZE ({key}) = {}\n", body.len()));
        }
        std::fs::write(dir.join("distinfo"), distinfo).unwrap();
    }
}

fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.split_whitespace().nth(4).is_some_and(|m| m.starts_with(&dir)))
        .map(String::from)
        .collect()
}

fn portsynth_sha(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    std::fs::write(&path, bytes).unwrap();
    sha256_file(&path).unwrap()
}

/// The test mirrors listen on loopback, which fetches may reach only when
/// the operator lists it (see the sandbox tests for the refusal).
fn config(extra: &str) -> String {
    format!("fetch_jobs = 4\nfetch_retry_delay = 0.01\nfetch_local_hosts = [\"127.0.0.1\"]\n{extra}")
}

fn distfiles(env: &Env) -> PathBuf {
    env.base().join("distfiles")
}

/// Every file below the cache (not `.locks/`), relative, sorted.
fn cache_listing(env: &Env) -> Vec<String> {
    fn walk(dir: &Path, rel: &str, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let child = if rel.is_empty() { name.clone() } else { format!("{rel}/{name}") };
            if entry.file_type().unwrap().is_dir() {
                if !(rel.is_empty() && name == ".locks") {
                    walk(&entry.path(), &child, out);
                }
            } else {
                out.push(child);
            }
        }
    }
    let mut out = Vec::new();
    walk(&distfiles(env), "", &mut out);
    out.sort();
    out
}

fn fetch(env: &Env, ports: &[&str]) -> Output {
    let mut args = vec!["--json", "fetch-only"];
    args.extend_from_slice(ports);
    env.run(&args)
}

fn spawn_fetch(env: &Env) -> Child {
    env.command(&["--json", "fetch-only"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits (bounded, generously) for `condition`; the test is about the
/// condition becoming true, never about how fast.
fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !condition() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn fetch_log(env: &Env, stem: &str) -> String {
    std::fs::read_to_string(env.base().join(format!("logs/fetch/{stem}.log"))).unwrap_or_default()
}

fn counts(end: &Value) -> (u64, u64, u64) {
    let c = &end["counts"];
    (c["fetched"].as_u64().unwrap(), c["present"].as_u64().unwrap(), c["failed"].as_u64().unwrap())
}

/// Every distfile every port of the tree lists in distinfo is in the cache
/// with the recorded size and SHA256; returns how many were checked.
fn assert_cache_matches_distinfo(env: &Env) -> usize {
    let mut checked = 0;
    for category in std::fs::read_dir(env.ports()).unwrap().flatten() {
        for port in std::fs::read_dir(category.path()).into_iter().flatten().flatten() {
            let path = port.path().join("distinfo");
            let Ok(text) = std::fs::read_to_string(&path) else { continue };
            let distinfo = Kind::Bundled.framework().parse_distinfo(&text, &path).unwrap();
            for (key, expected) in distinfo.entries.iter().filter_map(|(k, e)| Some((k, e.expected()?))) {
                let file = distfiles(env).join(key);
                assert!(file.is_file(), "{} missing", file.display());
                assert_eq!(std::fs::metadata(&file).unwrap().len(), expected.size, "{key}");
                assert_eq!(sha256_file(&file).unwrap(), expected.digests[0].hex, "{key}");
                checked += 1;
            }
        }
    }
    checked
}

#[test]
fn fetch_only_over_the_bundled_tree_fetches_every_distfile_once_then_nothing() {
    let env = Env::testdata();
    let mirror = Mirror::directory(repo().join("ports-testdata/Mirror"));
    for category in std::fs::read_dir(env.ports()).unwrap().flatten() {
        for port in std::fs::read_dir(category.path()).into_iter().flatten().flatten() {
            let makefile = port.path().join("Makefile");
            let Ok(text) = std::fs::read_to_string(&makefile) else { continue };
            let Some(master) = text.lines().find(|l| l.starts_with("MASTER_SITES")) else { continue };
            std::fs::write(&makefile, text.replace(master, &format!("MASTER_SITES=\t{}", mirror.url()))).unwrap();
        }
    }
    env.write_config(&config(""));

    let output = fetch(&env, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", dump(&output));
    let end = run_end(&output);
    assert_eq!(counts(&end), (9, 0, 0), "{end}");
    assert_eq!(end["counts"]["ignored"], 2);
    let checked = assert_cache_matches_distinfo(&env);
    assert_eq!(checked, 8, "8 distinct distfiles (the two minilang flavors share one)");
    for file in cache_listing(&env) {
        assert_eq!(mirror.hits(&file), 1, "{file} downloaded once");
    }
    assert_eq!(mirror.total_hits(), 8);
    assert!(cache_listing(&env).iter().all(|f| !f.ends_with(".part")));

    let output = fetch(&env, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", dump(&output));
    assert_eq!(counts(&run_end(&output)), (0, 9, 0));
    assert_eq!(mirror.total_hits(), 8, "the second run downloads nothing");
    assert!(!events(&output).iter().any(|e| e["event"] == "fetch_start"), "no sandbox for present files");

    let db = BuildDb::open(env.base().join("builddb.sqlite")).unwrap();
    let runs = db.runs(2).unwrap();
    assert_eq!(runs[0].command, "fetch-only");
    assert_eq!((runs[0].counts.built, runs[0].counts.up_to_date), (0, 9));
    assert_eq!((runs[1].counts.built, runs[1].counts.up_to_date, runs[1].counts.ignored), (9, 0, 2));
}

#[test]
fn a_distfile_shared_by_two_ports_fetched_at_once_is_downloaded_once() {
    let body = b"the shared distfile".as_slice();
    let served = body.to_vec();
    let mirror = Mirror::start(move |_, _| Reply::File(served.clone()));
    let shared = [("shared-1.0.tar.gz", body)];
    let ports = [
        Port { origin: "misc/one", files: &shared, extra: "" },
        Port { origin: "misc/two", files: &shared, extra: "" },
    ];
    let tree = Tree::new(&mirror, &ports, &config(""));
    let env = &tree.env;
    // Hold the distfile's lock so that both sandboxes are seen waiting for
    // it before either may download.
    let held = DistfileLock::acquire(&distfiles(env), "shared-1.0.tar.gz").unwrap();
    let child = spawn_fetch(env);
    wait_for("both ports to wait for the lock", || {
        ["misc___one", "misc___two"].iter().all(|stem| fetch_log(env, stem).contains("Waiting for shared-1.0.tar.gz"))
    });
    assert_eq!(mirror.total_hits(), 0);
    drop(held);
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", dump(&output));
    assert_eq!(counts(&run_end(&output)), (2, 0, 0));
    assert_eq!(mirror.hits("shared-1.0.tar.gz"), 1, "exactly one download");
    let meanwhile = ["misc___one", "misc___two"]
        .iter()
        .filter(|stem| fetch_log(env, stem).contains("was fetched meanwhile by another port"))
        .count();
    assert_eq!(meanwhile, 1, "one port downloaded, the other found it done");
    assert_eq!(cache_listing(env), ["shared-1.0.tar.gz"]);
    assert_cache_matches_distinfo(env);
}

#[test]
fn builds_fetching_a_shared_distfile_take_the_same_lock() {
    let body = b"shared by two builds".as_slice();
    let served = body.to_vec();
    let mirror = Mirror::start(move |_, _| Reply::File(served.clone()));
    let shared = [("both-1.0.tar.gz", body)];
    // The distfile is not a tarball: each port copies it instead.
    let copy = "PLIST_FILES=\tshare/both.txt\n\
                do-extract:\n\t@mkdir -p ${WRKSRC}\n\
                do-install:\n\tmkdir -p ${STAGEDIR}${PREFIX}/share\n\
                \tcp ${DISTDIR}/both-1.0.tar.gz ${STAGEDIR}${PREFIX}/share/both.txt\n";
    let ports = [
        Port { origin: "misc/left", files: &shared, extra: copy },
        Port { origin: "misc/right", files: &shared, extra: copy },
    ];
    let tree = Tree::new(
        &mirror,
        &ports,
        &config("workers = 2\n# Both builds must run at once, whatever the load.\nthrottle = false\n"),
    );
    let env = &tree.env;
    let held = DistfileLock::acquire(&distfiles(env), "both-1.0.tar.gz").unwrap();
    let child = env
        .command(&["--json", "-y", "everything"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let build_log =
        |stem: &str| std::fs::read_to_string(env.base().join(format!("logs/{stem}.log"))).unwrap_or_default();
    wait_for("both builds to wait for the lock in their fetch phase", || {
        ["misc___left", "misc___right"].iter().all(|stem| build_log(stem).contains("Waiting for both-1.0.tar.gz"))
    });
    assert_eq!(mirror.total_hits(), 0, "nobody downloads while the lock is held");
    drop(held);
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", dump(&output));
    assert_eq!(mirror.hits("both-1.0.tar.gz"), 1, "the two builds downloaded it once");
    assert_eq!(cache_listing(env), ["both-1.0.tar.gz"]);
    assert_cache_matches_distinfo(env);
}

#[test]
fn a_flaky_mirror_is_retried_and_a_dead_one_is_reported_with_url_and_error() {
    let mirror = Mirror::start(|path, n| match path {
        "flaky-1.0.tar.gz" if n <= 2 => Reply::Status(503),
        "flaky-1.0.tar.gz" => Reply::File(b"flaky but fine".to_vec()),
        "after-1.0.tar.gz" => Reply::File(b"after".to_vec()),
        _ => Reply::Status(503),
    });
    let ports = [
        Port { origin: "misc/flaky", files: &[("flaky-1.0.tar.gz", b"flaky but fine")], extra: "" },
        Port { origin: "misc/dead", files: &[("dead-1.0.tar.gz", b"never served")], extra: "" },
        Port {
            origin: "misc/after",
            files: &[("after-1.0.tar.gz", b"after")],
            extra: "BUILD_DEPENDS=\tdead:misc/dead",
        },
    ];
    let tree = Tree::new(&mirror, &ports, &config("fetch_retries = 3\n"));
    let env = &tree.env;

    let output = fetch(env, &["misc/after", "misc/flaky"]);
    assert_eq!(output.status.code(), Some(1), "{}", dump(&output));
    let end = run_end(&output);
    assert_eq!(counts(&end), (2, 0, 1), "{end}");
    assert_eq!(mirror.hits("flaky-1.0.tar.gz"), 3, "two failures, then success");
    assert_eq!(mirror.hits("dead-1.0.tar.gz"), 4, "the first attempt plus fetch_retries");
    assert_eq!(mirror.hits("after-1.0.tar.gz"), 1, "the dependent of a failed port is still fetched");
    let retries: Vec<Value> = events(&output).into_iter().filter(|e| e["event"] == "fetch_retry").collect();
    assert_eq!(retries.iter().filter(|e| e["origin"] == "misc/flaky").count(), 2);
    assert_eq!(retries.iter().filter(|e| e["origin"] == "misc/dead").count(), 3);

    let failed = &end["failed"][0];
    assert_eq!(failed["origin"], "misc/dead");
    assert_eq!(failed["attempts"], 4);
    let reason = failed["reason"].as_str().unwrap();
    let url = format!("{}dead-1.0.tar.gz", mirror.url());
    assert!(reason.contains(&format!("fetch of {url} failed")) && reason.contains("503"), "{reason}");
    let failures = std::fs::read_to_string(env.base().join("logs/02_failure_list.log")).unwrap();
    assert!(failures.contains("misc/dead") && failures.contains(&url), "{failures}");
    let log = fetch_log(env, "misc___dead");
    for n in 1..=4 {
        assert!(log.contains(&format!("attempt {n} ")), "attempt {n} missing from the log:\n{log}");
    }
    assert_eq!(env.run_ok(&["logs", "--fetch", "misc/dead"]), log, "`logs --fetch` prints the fetch log");
    assert_eq!(cache_listing(env), ["after-1.0.tar.gz", "flaky-1.0.tar.gz"]);
}

#[test]
fn wrong_bytes_fail_the_checksum_leave_nothing_and_are_fetched_again_next_run() {
    let good = b"the real release tarball".as_slice();
    let wrong = b"an HTML error page, not a tarball".as_slice();
    let fixed = Arc::new(Mutex::new(false));
    let serving = fixed.clone();
    let mirror = Mirror::start(move |_, _| Reply::File(if *serving.lock().unwrap() { good } else { wrong }.to_vec()));
    let ports = [Port { origin: "misc/bad", files: &[("bad-1.0.tar.gz", good)], extra: "" }];
    let tree = Tree::new(&mirror, &ports, &config("fetch_retries = 1\n"));
    let env = &tree.env;

    let output = fetch(env, &[]);
    assert_eq!(output.status.code(), Some(1), "{}", dump(&output));
    assert_eq!(mirror.hits("bad-1.0.tar.gz"), 2, "tried once more, not more than the budget");
    let reason = run_end(&output)["failed"][0]["reason"].as_str().unwrap().to_string();
    let (want, got) = (portsynth_sha(good), portsynth_sha(wrong));
    assert!(reason.contains("checksum mismatch for bad-1.0.tar.gz"), "{reason}");
    assert!(reason.contains(&format!("expected: SIZE {} SHA256 {want}", good.len())), "{reason}");
    assert!(reason.contains(&format!("actual: SIZE {} SHA256 {got}", wrong.len())), "{reason}");
    assert!(cache_listing(env).is_empty(), "no bad or partial file: {:?}", cache_listing(env));

    // A corrupt file under the final name (say, a disk error) is replaced too.
    std::fs::write(distfiles(env).join("bad-1.0.tar.gz"), wrong).unwrap();
    *fixed.lock().unwrap() = true;
    let output = fetch(env, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", dump(&output));
    assert_eq!(counts(&run_end(&output)), (1, 0, 0));
    let notices: Vec<String> = events(&output)
        .iter()
        .filter(|e| e["event"] == "notice")
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect();
    assert!(notices.iter().any(|n| n.contains("removed corrupt distfile") && n.contains(&got)), "{notices:?}");
    assert_eq!(mirror.hits("bad-1.0.tar.gz"), 3);
    assert_cache_matches_distinfo(env);
}

#[test]
fn a_download_cut_mid_file_never_leaves_a_partial_file_under_the_final_name() {
    let body: Vec<u8> = (0..64 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    let gate = Arc::new(Gate::default());
    let (served, first_gate) = (body.clone(), gate.clone());
    let mirror = Mirror::start(move |_, n| match n {
        1 => Reply::Cut { body: served.clone(), sent: served.len() / 2, gate: first_gate.clone() },
        _ => Reply::File(served.clone()),
    });
    let ports = [Port { origin: "misc/cut", files: &[("cut-1.0.tar.gz", &body)], extra: "" }];
    let tree = Tree::new(&mirror, &ports, &config("fetch_retries = 1\n"));
    let env = &tree.env;
    let child = spawn_fetch(env);
    let part = distfiles(env).join("cut-1.0.tar.gz.part");
    wait_for("the download to be under way", || std::fs::metadata(&part).is_ok_and(|m| m.len() > 0));
    assert!(!distfiles(env).join("cut-1.0.tar.gz").exists(), "mid-download, the final name must not exist");
    gate.open();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", dump(&output));
    let retry = events(&output).into_iter().find(|e| e["event"] == "fetch_retry").expect("the cut attempt is retried");
    let reason = retry["reason"].as_str().unwrap();
    assert!(reason.contains("fetch of") && reason.contains("curl: (18)"), "{reason}");
    assert_eq!(mirror.hits("cut-1.0.tar.gz"), 2);
    assert_eq!(cache_listing(env), ["cut-1.0.tar.gz"]);
    assert_cache_matches_distinfo(env);
}

#[test]
fn ctrl_c_twice_kills_a_hanging_download_and_leaves_nothing_in_the_cache() {
    let body: Vec<u8> = (0..64 * 1024).map(|i| (i * 13 % 251) as u8).collect();
    let gate = Arc::new(Gate::default());
    let (served, hang) = (body.clone(), gate.clone());
    let mirror =
        Mirror::start(move |_, _| Reply::Cut { body: served.clone(), sent: served.len() / 2, gate: hang.clone() });
    let ports = [Port { origin: "misc/hangs", files: &[("hangs-1.0.tar.gz", &body)], extra: "" }];
    let tree = Tree::new(&mirror, &ports, &config(""));
    let env = &tree.env;
    let child = spawn_fetch(env);
    let part = distfiles(env).join("hangs-1.0.tar.gz.part");
    wait_for("the download to hang half-way", || std::fs::metadata(&part).is_ok_and(|m| m.len() > 0));
    let mut child = child;
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let interrupt = || nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut seen: Vec<Value> = Vec::new();
    let mut next_event = |seen: &mut Vec<Value>| -> Option<Value> {
        let mut line = String::new();
        (stdout.read_line(&mut line).unwrap() > 0).then(|| {
            let event: Value = serde_json::from_str(&line).unwrap();
            seen.push(event.clone());
            event
        })
    };
    interrupt();
    // The second interrupt only after the first was announced, so the two
    // are never merged into one signal.
    while let Some(event) = next_event(&mut seen) {
        if event["event"] == "notice" {
            break;
        }
    }
    interrupt();
    while next_event(&mut seen).is_some() {}
    let status = child.wait().unwrap();
    gate.open();
    assert_eq!(status.code(), Some(3), "{seen:?}");
    let end = seen.iter().find(|e| e["event"] == "run_end").expect("a run_end event");
    assert_eq!(end["status"], "interrupted", "{end}");
    let notices = seen.iter().filter(|e| e["event"] == "notice").count();
    assert_eq!(notices, 2, "both interrupts are announced: {seen:?}");
    assert!(
        cache_listing(env).iter().all(|f| f != "hangs-1.0.tar.gz"),
        "no file under the final name: {:?}",
        cache_listing(env)
    );
    assert!(mounts_under(&env.base()).is_empty(), "no mount left: {:?}", mounts_under(&env.base()));
}

#[test]
fn purge_distfiles_removes_exactly_the_unreferenced_files() {
    let served: HashMap<&str, &[u8]> =
        [("keep-1.0.tar.gz", b"keep".as_slice()), ("sub/inner-2.0.tgz", b"inner")].into();
    let served: HashMap<String, Vec<u8>> = served.into_iter().map(|(k, v)| (k.to_string(), v.to_vec())).collect();
    let mirror = Mirror::start(move |path, _| match served.get(path) {
        Some(body) => Reply::File(body.clone()),
        None => Reply::Status(404),
    });
    let ports = [
        Port { origin: "misc/keep", files: &[("keep-1.0.tar.gz", b"keep")], extra: "" },
        Port {
            origin: "misc/inner",
            files: &[("inner-2.0.tgz", b"inner")],
            extra: "DIST_SUBDIR=\tsub\nMASTER_SITES:=\t${MASTER_SITES}sub/",
        },
    ];
    let tree = Tree::new(&mirror, &ports, &config(""));
    let env = &tree.env;
    let output = fetch(env, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", dump(&output));
    assert_eq!(cache_listing(env), ["keep-1.0.tar.gz", "sub/inner-2.0.tgz"], "DIST_SUBDIR is honoured");

    let cache = distfiles(env);
    let junk = ["gone/old-0.1.tgz", "keep-0.9.tar.gz", "keep-1.0.tar.gz.part", "sub/inner-1.0.tgz"];
    for file in junk {
        std::fs::create_dir_all(cache.join(file).parent().unwrap()).unwrap();
        std::fs::write(cache.join(file), "x".repeat(100)).unwrap();
    }
    std::fs::write(cache.join(".locks/keep-0.9.tar.gz.lock"), "").unwrap();

    let output = env.command(&["purge-distfiles"]).stdin(Stdio::null()).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", dump(&output));
    let text = stderr(&output);
    assert!(text.contains("4 unreferenced file(s)") && text.contains("400 B in total"), "{text}");
    assert!(text.contains("nothing deleted"), "{text}");
    assert_eq!(cache_listing(env).len(), 6, "no confirmation, no deletion");

    let listed: Value = serde_json::from_slice(&env.run_ok_output(&["--json", "purge-distfiles"]).stdout).unwrap();
    let names: Vec<&str> =
        listed["unreferenced"].as_array().unwrap().iter().map(|f| f["file"].as_str().unwrap()).collect();
    assert_eq!(names, junk);
    assert_eq!(listed["bytes"], 400);
    assert_eq!(listed["deleted"], false);

    let purged: Value =
        serde_json::from_slice(&env.run_ok_output(&["--json", "-y", "purge-distfiles"]).stdout).unwrap();
    assert_eq!(purged["removed"], 4, "{purged}");
    assert_eq!(purged["lock_files_removed"], 1, "{purged}");
    assert_eq!(cache_listing(env), ["keep-1.0.tar.gz", "sub/inner-2.0.tgz"]);
    assert!(!cache.join("gone").exists() && !cache.join(".locks/keep-0.9.tar.gz.lock").exists());
    assert!(cache.join(".locks/keep-1.0.tar.gz.lock").exists(), "locks of referenced files stay");

    let hits = mirror.total_hits();
    let output = fetch(env, &[]);
    assert_eq!(counts(&run_end(&output)), (0, 2, 0), "{}", dump(&output));
    assert_eq!(mirror.total_hits(), hits);
}

trait RunOutput {
    fn run_ok_output(&self, args: &[&str]) -> Output;
}

impl RunOutput for Env {
    fn run_ok_output(&self, args: &[&str]) -> Output {
        let output = self.command(args).stdin(Stdio::null()).output().unwrap();
        assert!(output.status.success(), "portsynth {args:?}: {}", dump(&output));
        output
    }
}

//! The run's event stream and what consumes it, end to end (issue 15):
//! the NDJSON of a real run parses back into `portsynth::events::Event`
//! without losing a field, the operator's hooks fire with their variables
//! and never change a run, `logs -f` follows a running build to its end,
//! and a closed stdout ends a command quietly.
//!
//! The trees are `tests/fixtures/ports` (misc/good builds, misc/fails
//! fails, misc/needs-fails and misc/needs-needs-fails are skipped), plus
//! `ports-testdata`'s misc/ignored and the sleeping resource/nap-a.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::{dump, events, Env};
use portsynth::builddb::{BuildDb, BuildStatus};
use portsynth::events::Record;
use serde_json::Value;

/// The fixture tree with an ignored port and `extra` config.
fn fixtures(extra: &str) -> Env {
    let env = Env::fixtures();
    common::copy_tree(&common::repo().join("ports-testdata/misc/ignored"), &env.ports().join("misc/ignored"));
    env.write_config(&format!("workers = 2\nthrottle = false\n{extra}"));
    env
}

const PORTS: [&str; 3] = ["misc/good", "misc/needs-needs-fails", "misc/ignored"];

fn json_run(env: &Env, args: &[&str]) -> Output {
    let mut all = vec!["--json", "-y"];
    all.extend_from_slice(args);
    env.command(&all).stdin(Stdio::null()).output().unwrap()
}

/// A hook program that writes its `PORTSYNTH_*` variables to
/// `OUT/EVENT[-cat_port]`.
fn hook_script(env: &Env) -> (String, std::path::PathBuf) {
    let out = env.path().join("hook-out");
    std::fs::create_dir_all(&out).unwrap();
    let script = env.path().join("hook.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\n\
         name=\"$PORTSYNTH_EVENT\"\n\
         [ -n \"$PORTSYNTH_ORIGIN\" ] && name=\"$name-$(echo \"$PORTSYNTH_ORIGIN\" | tr / _)\"\n\
         env | grep '^PORTSYNTH_' | sort > \"$1/$name\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let command = format!("[\"{}\", \"{}\"]", script.display(), out.display());
    (command, out)
}

fn vars(path: &Path) -> BTreeMap<String, String> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e} (the hook did not run)", path.display()));
    text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn notices(output: &Output) -> Vec<String> {
    events(output).iter().filter(|e| e["event"] == "notice").map(|e| e["message"].as_str().unwrap().into()).collect()
}

#[test]
fn a_real_run_s_stream_parses_back_and_every_hook_fires_with_its_facts() {
    let env = fixtures("");
    let (hook, out) = hook_script(&env);
    let keys = ["run_start", "run_end", "success", "failure", "ignored", "skipped"];
    let hooks: String = keys.iter().map(|k| format!("{k} = {hook}\n")).collect();
    env.write_config(&format!("workers = 2\nthrottle = false\n[hooks]\n{hooks}"));
    let output = json_run(&env, &["build", PORTS[0], PORTS[1], PORTS[2]]);
    assert_eq!(output.status.code(), Some(1), "a port failed: {}", dump(&output));

    // Every line is an Event, and the Event says all the line said.
    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    let mut kinds = std::collections::BTreeSet::new();
    for line in stdout.lines() {
        let value: Value = serde_json::from_str(line).unwrap();
        let record: Record = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(serde_json::to_value(&record).unwrap(), value, "lost in the round trip: {line}");
        kinds.insert(record.event.name());
    }
    let records: Vec<Record> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(records.windows(2).all(|w| w[0].time_ms <= w[1].time_ms), "times go forward");
    for kind in ["run_start", "ignored", "skip", "build_start", "build_phase", "progress", "build_end", "run_end"] {
        assert!(kinds.contains(kind), "no {kind} event in\n{stdout}");
    }
    for record in &records {
        if let portsynth::events::Event::BuildStart { origin, why, make_jobs, .. } = &record.event {
            assert!(!why.is_empty() && *make_jobs >= 1, "{origin}: {record:?}");
        }
    }

    // Each hook with the documented variables.
    let run =
        events(&output).into_iter().find(|e| e["event"] == "run_start").unwrap()["run"].as_str().unwrap().to_string();
    let command = "build misc/good misc/needs-needs-fails misc/ignored";
    for (file, event) in [
        ("run_start", "run_start"),
        ("run_end", "run_end"),
        ("success-misc_good", "success"),
        ("failure-misc_fails", "failure"),
        ("skipped-misc_needs-fails", "skipped"),
        ("skipped-misc_needs-needs-fails", "skipped"),
        ("ignored-misc_ignored", "ignored"),
    ] {
        let vars = vars(&out.join(file));
        assert_eq!(vars["PORTSYNTH_EVENT"], event, "{file}: {vars:?}");
        assert_eq!(vars["PORTSYNTH_RUN_ID"], run, "{file}: {vars:?}");
        assert_eq!(vars["PORTSYNTH_COMMAND"], command, "{file}: {vars:?}");
    }
    let start = vars(&out.join("run_start"));
    assert_eq!((start["PORTSYNTH_TO_BUILD"].as_str(), start["PORTSYNTH_IGNORED"].as_str()), ("4", "1"), "{start:?}");
    let success = vars(&out.join("success-misc_good"));
    assert_eq!(success["PORTSYNTH_PKGNAME"], "good-1.0");
    assert!(Path::new(&success["PORTSYNTH_LOG"]).is_file(), "{success:?}");
    let failure = vars(&out.join("failure-misc_fails"));
    assert_eq!(failure["PORTSYNTH_PHASE"], "build", "{failure:?}");
    assert!(!failure["PORTSYNTH_REASON"].is_empty() && failure["PORTSYNTH_LOG"].ends_with("misc___fails.log"));
    let skipped = vars(&out.join("skipped-misc_needs-needs-fails"));
    assert_eq!(skipped["PORTSYNTH_SKIP_CAUSE"], "failed_dependency", "{skipped:?}");
    assert_eq!(skipped["PORTSYNTH_FAILED_DEPENDENCY"], "misc/fails", "{skipped:?}");
    assert!(skipped["PORTSYNTH_REASON"].contains("misc/fails"), "{skipped:?}");
    assert!(vars(&out.join("ignored-misc_ignored"))["PORTSYNTH_REASON"].contains("is ignored on purpose"));
    let end = vars(&out.join("run_end"));
    assert_eq!(end["PORTSYNTH_STATUS"], "completed", "{end:?}");
    let counts = [("BUILT", "1"), ("FAILED", "1"), ("IGNORED", "1"), ("SKIPPED", "2"), ("NOT_BUILDABLE", "0")];
    for (name, value) in counts {
        assert_eq!(end[&format!("PORTSYNTH_{name}")], value, "{name}: {end:?}");
    }
    assert!(notices(&output).iter().all(|n| !n.contains("hook")), "every hook succeeded: {:?}", notices(&output));
}

#[test]
fn failing_and_hanging_hooks_are_notices_and_never_change_the_run() {
    let env = fixtures("");
    env.write_config(
        "workers = 1\nthrottle = false\nhook_timeout = 1\n[hooks]\n\
         run_start = [\"/bin/sleep\", \"30\"]\nsuccess = [\"/bin/false\"]\nrun_end = [\"/nonexistent/hook\"]\n",
    );
    let started = Instant::now();
    let output = json_run(&env, &["build", "misc/good"]);
    assert_eq!(output.status.code(), Some(0), "the hooks changed the exit status: {}", dump(&output));
    assert!(started.elapsed() < Duration::from_secs(25), "the hanging hook was not killed: {:?}", started.elapsed());
    let all = events(&output);
    let end = all.iter().find(|e| e["event"] == "run_end").unwrap();
    assert_eq!((end["status"].as_str(), end["counts"]["built"].as_i64()), (Some("completed"), Some(1)), "{end}");

    let notices = notices(&output);
    let find = |needle: &str| {
        notices.iter().find(|n| n.contains(needle)).unwrap_or_else(|| panic!("no notice with {needle:?}: {notices:?}"))
    };
    find("hook run_start (/bin/sleep 30) timed out after 1 s (hook_timeout) and was killed");
    find("hook success (/bin/false) exited with status 1");
    find("hook run_end (/nonexistent/hook) cannot start");
    // The coordinator did not wait for the hanging run_start hook.
    let position = |pred: &dyn Fn(&Value) -> bool| all.iter().position(pred).unwrap();
    let build_start = position(&|e| e["event"] == "build_start");
    let timeout = position(&|e| e["message"].as_str().is_some_and(|m| m.contains("timed out")));
    assert!(build_start < timeout, "the build waited for the hook: {all:?}");
    // The run's logs have them too.
    let debug = std::fs::read_to_string(env.base().join("logs/07_debug.log")).unwrap();
    assert!(debug.contains("hook run_start") && debug.contains("hook success"), "{debug}");
}

#[test]
fn logs_follow_prints_a_running_build_as_it_grows_and_ends_with_it() {
    let env = Env::fixtures();
    common::copy_tree(&common::repo().join("tests/fixtures/resources/resource"), &env.ports().join("resource"));
    env.write_config("workers = 1\nthrottle = false\n[make_conf]\nNAP = \"4\"\n");
    let mut build = env
        .command(&["-y", "-q", "build", "resource/nap-a"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let db_path = env.base().join("builddb.sqlite");
    let deadline = Instant::now() + Duration::from_secs(120);
    // Wait for the build's row to say it runs.
    loop {
        assert!(Instant::now() < deadline, "resource/nap-a never started");
        assert!(build.try_wait().unwrap().is_none(), "the build ended before it was seen running");
        let running = BuildDb::open_existing(&db_path)
            .ok()
            .flatten()
            .and_then(|db| db.builds_of_port("resource/nap-a", 1).ok())
            .and_then(|mut b| b.pop())
            .is_some_and(|b| b.status == BuildStatus::Running);
        if running {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut follow = env.command(&["logs", "-f", "resource/nap-a"]).stdout(Stdio::piped()).spawn().unwrap();
    let reader = BufReader::new(follow.stdout.take().unwrap());
    let mut lines: Vec<(Instant, String)> = Vec::new();
    for line in reader.lines() {
        lines.push((Instant::now(), line.unwrap()));
    }
    let follow_ended = Instant::now();
    let status = follow.wait().unwrap();
    assert!(status.success(), "logs -f: {status}");
    assert!(build.wait().unwrap().success());

    let record = BuildDb::open_existing(&db_path).unwrap().unwrap().builds_of_port("resource/nap-a", 1).unwrap().pop();
    let record = record.unwrap();
    assert_eq!(record.status, BuildStatus::Success);
    let log = std::fs::read_to_string(record.log_path.as_ref().unwrap()).unwrap();
    let printed: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(printed, log.lines().collect::<Vec<_>>(), "logs -f printed the whole log, once");
    // It printed the build phase's line while the build slept on, and ended with the build.
    let (seen, _) = lines.iter().find(|(_, l)| l.contains("make jobs:")).expect("the build phase's line");
    assert!(follow_ended.duration_since(*seen) >= Duration::from_secs(2), "the line came only at the end");
}

#[test]
fn logs_follow_of_a_port_not_building_prints_its_last_log_once() {
    let env = fixtures("");
    let output = env.run(&["-y", "-q", "build", "misc/good"]);
    assert!(output.status.success(), "{}", dump(&output));
    let followed = env.run(&["logs", "-f", "misc/good"]);
    assert!(followed.status.success(), "{}", dump(&followed));
    assert_eq!(followed.stdout, env.run(&["logs", "misc/good"]).stdout);
}

#[test]
fn a_closed_stdout_ends_commands_quietly_with_success() {
    let env = fixtures("");
    let commands: [&[&str]; 4] =
        [&["status", "misc/good", "misc/needs-fails"], &["--json", "status", "misc/good"], &["history"], &["version"]];
    for args in commands {
        let mut child =
            env.command(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        // The reader goes away before portsynth writes anything (`| head -0`).
        drop(child.stdout.take());
        let output = child.wait_with_output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{args:?}: {}", dump(&output));
        assert_eq!(String::from_utf8_lossy(&output.stderr), "", "{args:?}: nothing on stderr");
    }
}

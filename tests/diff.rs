//! `portsynth diff`: between two real runs of a build base, a port broken in
//! between is a new failure with what changed in its inputs, and the run
//! after its repair lists it as fixed.

mod common;

use common::Env;

fn env() -> Env {
    let env = Env::fixtures();
    common::copy_tree(&common::repo().join("tests/fixtures/resources/resource"), &env.ports().join("resource"));
    env.write_config("throttle = false\nworkers = 2\n[make_conf]\nNAP = \"0\"\n");
    env
}

fn diff_json(env: &Env, args: &[&str]) -> serde_json::Value {
    let mut argv = vec!["--json", "diff"];
    argv.extend_from_slice(args);
    let output = env.run(&argv);
    assert!(output.status.success(), "diff: {}", common::stderr(&output));
    serde_json::from_slice(&output.stdout).expect("diff --json prints one JSON document")
}

fn origins(list: &serde_json::Value) -> Vec<String> {
    list.as_array().unwrap().iter().map(|v| v.get("origin").unwrap_or(v).as_str().unwrap().to_string()).collect()
}

#[test]
fn a_port_broken_between_runs_is_a_new_failure_and_then_fixed() {
    let env = env();
    let ports = ["resource/nap-a", "resource/nap-b"];
    let build = |expect_ok: bool| {
        let mut args = vec!["-y", "-q", "build"];
        args.extend(ports);
        let output = env.run(&args);
        assert_eq!(output.status.success(), expect_ok, "{}", common::stderr(&output));
    };
    let output = env.run(&["diff"]);
    assert!(!output.status.success(), "no runs yet");
    assert!(common::stderr(&output).contains("no run to compare"), "{}", common::stderr(&output));

    build(true);
    let output = env.run(&["diff"]);
    assert!(common::stderr(&output).contains("fewer than two runs"), "{}", common::stderr(&output));
    let makefile = env.ports().join("resource/nap-a/Makefile");
    let good = std::fs::read_to_string(&makefile).unwrap();
    std::fs::write(&makefile, format!("{good}\npost-build:\n\t@echo broken on purpose; false\n")).unwrap();
    build(false);
    let diff = diff_json(&env, &[]);
    assert_eq!(origins(&diff["new_failures"]), ["resource/nap-a"], "{diff:#}");
    let failure = &diff["new_failures"][0];
    assert_eq!(failure["changed"], "changed", "its own files changed: {diff:#}");
    assert_eq!(failure["phase"], "build", "{diff:#}");
    assert!(origins(&diff["fixed"]).is_empty() && origins(&diff["still_failing"]).is_empty(), "{diff:#}");

    // The repair differs from the first version (which is still packaged and
    // would be up to date again).
    std::fs::write(&makefile, format!("{good}# repaired\n")).unwrap();
    build(true);
    let diff = diff_json(&env, &[]);
    assert_eq!(origins(&diff["fixed"]), ["resource/nap-a"], "{diff:#}");
    assert!(origins(&diff["new_failures"]).is_empty(), "{diff:#}");

    // Runs named by a prefix of their ids, the text form.
    let first = diff["old"]["id"].as_str().unwrap();
    let second = diff["new"]["id"].as_str().unwrap();
    let text = env.run_ok(&["diff", &first[..24], second]);
    assert!(text.contains("Fixed (1):\n  resource/nap-a"), "{text}");
    let output = env.run(&["diff", "no-such-run"]);
    assert!(common::stderr(&output).contains("no run 'no-such-run'"), "{}", common::stderr(&output));
}

//! `status` over real trees with real bmake: the bundled tree's exact graph
//! and order, the requested-port closure, and every bad input's error.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{stderr, Env};
use serde_json::Value;

fn entries(plan: &Value) -> &Vec<Value> {
    plan["entries"].as_array().unwrap()
}

fn verdicts(plan: &Value) -> BTreeMap<String, String> {
    entries(plan)
        .iter()
        .map(|e| (e["origin"].as_str().unwrap().to_string(), e["verdict"].as_str().unwrap().to_string()))
        .collect()
}

fn reasons(plan: &Value) -> BTreeMap<String, String> {
    entries(plan)
        .iter()
        .map(|e| (e["origin"].as_str().unwrap().to_string(), e["reason"].as_str().unwrap_or("").to_string()))
        .collect()
}

fn edges(plan: &Value) -> BTreeSet<(String, String, String)> {
    let mut edges = BTreeSet::new();
    for entry in entries(plan) {
        for dep in entry["depends"].as_array().unwrap() {
            edges.insert((
                entry["origin"].as_str().unwrap().to_string(),
                dep["origin"].as_str().unwrap().to_string(),
                dep["kind"].as_str().unwrap().to_string(),
            ));
        }
    }
    edges
}

fn build_order(plan: &Value) -> Vec<String> {
    entries(plan)
        .iter()
        .filter(|e| e["verdict"] == "build")
        .map(|e| e["origin"].as_str().unwrap().to_string())
        .collect()
}

const TESTDATA_BUILDABLE: &[&str] = &[
    "devel/codegen",
    "devel/gnu-configure",
    "devel/libgreet",
    "lang/minilang-tests",
    "lang/minilang@full",
    "lang/minilang@lite",
    "misc/calc",
    "misc/chain-bottom",
    "misc/chain-middle",
    "misc/chain-top",
    "misc/generated",
    "misc/hello",
    "misc/noisy",
    "misc/sleeper",
    "textproc/wordcount",
    "x11/meta-bundle",
];

#[test]
fn bundled_tree_plan_has_the_exact_graph() {
    let env = Env::testdata();
    let plan = env.status_json(&[]);
    let mut want: BTreeMap<String, String> =
        TESTDATA_BUILDABLE.iter().map(|o| (o.to_string(), "build".to_string())).collect();
    want.insert("misc/ignored".into(), "ignored".into());
    want.insert("sysutils/broken".into(), "ignored".into());
    assert_eq!(verdicts(&plan), want);

    let edge = |a: &str, b: &str, k: &str| (a.to_string(), b.to_string(), k.to_string());
    let want_edges: BTreeSet<_> = [
        edge("misc/hello", "devel/libgreet", "LIB_DEPENDS"),
        edge("misc/generated", "devel/codegen", "BUILD_DEPENDS"),
        edge("lang/minilang-tests", "lang/minilang@full", "BUILD_DEPENDS"),
        edge("misc/calc", "lang/minilang@lite", "RUN_DEPENDS"),
        edge("misc/chain-top", "misc/chain-middle", "RUN_DEPENDS"),
        edge("misc/chain-middle", "misc/chain-bottom", "RUN_DEPENDS"),
        edge("x11/meta-bundle", "misc/hello", "RUN_DEPENDS"),
        edge("x11/meta-bundle", "misc/calc", "RUN_DEPENDS"),
        edge("x11/meta-bundle", "textproc/wordcount", "RUN_DEPENDS"),
        edge("x11/meta-bundle", "misc/generated", "RUN_DEPENDS"),
    ]
    .into_iter()
    .collect();
    assert_eq!(edges(&plan), want_edges);

    let order = build_order(&plan);
    let position = |o: &str| order.iter().position(|x| x == o).unwrap_or_else(|| panic!("{o} not in order"));
    for (dependent, dependency, _) in &want_edges {
        assert!(position(dependency) < position(dependent), "{dependency} must come before {dependent}: {order:?}");
    }
    let reasons = reasons(&plan);
    assert_eq!(reasons["misc/hello"], "new");
    assert_eq!(reasons["sysutils/broken"], "is marked as broken: fails to build on purpose (portsynth test data)");
    assert!(reasons["misc/ignored"].contains("ignored"), "{}", reasons["misc/ignored"]);
    assert_eq!(plan["counts"]["to_build"], 16);
    assert_eq!(plan["counts"]["ignored"], 2);
}

#[test]
fn bundled_tree_text_status_lists_sections_and_counts() {
    let env = Env::testdata();
    let text = env.run_ok(&["status"]);
    assert!(text.contains("To build, in build order (16):"), "{text}");
    assert!(text.contains("Ignored (2):"), "{text}");
    assert!(text.contains("sysutils/broken"), "{text}");
    assert!(text.ends_with("16 to build, 0 up to date, 2 ignored, 0 skipped, 0 not buildable\n"), "{text}");
}

#[test]
fn requested_ports_bring_exactly_their_dependencies() {
    let env = Env::testdata();
    let cases: &[(&[&str], &[&str])] = &[
        (&["misc/hello"], &["devel/libgreet", "misc/hello"]),
        (&["lang/minilang-tests"], &["lang/minilang-tests", "lang/minilang@full"]),
        (&["lang/minilang"], &["lang/minilang@lite"]),
        (&["lang/minilang@full"], &["lang/minilang@full"]),
        (&["misc/chain-top"], &["misc/chain-bottom", "misc/chain-middle", "misc/chain-top"]),
        (
            &["x11/meta-bundle"],
            &[
                "devel/codegen",
                "devel/libgreet",
                "lang/minilang@lite",
                "misc/calc",
                "misc/generated",
                "misc/hello",
                "textproc/wordcount",
                "x11/meta-bundle",
            ],
        ),
    ];
    for (request, want) in cases {
        let plan = env.status_json(request);
        let got: Vec<String> = verdicts(&plan).into_keys().collect();
        assert_eq!(got, want.iter().map(|s| s.to_string()).collect::<Vec<_>>(), "status {request:?}");
    }
}

#[test]
fn dependents_of_an_ignored_port_are_skipped_with_the_chain() {
    let env = Env::testdata();
    for (name, dep) in [("uses-ignored", "misc/ignored"), ("uses-uses-ignored", "misc/uses-ignored")] {
        let dir = env.ports().join("misc").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let makefile = format!(
            "PORTNAME={name}\nPORTVERSION=1.0\nCATEGORIES=misc\nMAINTAINER=t@example.org\nCOMMENT=test\n\
             DISTFILES=\nNO_BUILD=yes\nRUN_DEPENDS=x:{dep}\n.include <bsd.port.mk>\n"
        );
        std::fs::write(dir.join("Makefile"), makefile).unwrap();
    }
    let plan = env.status_json(&["misc/uses-uses-ignored"]);
    let reasons = reasons(&plan);
    assert_eq!(verdicts(&plan)["misc/uses-uses-ignored"], "skipped");
    assert_eq!(reasons["misc/uses-ignored"], "depends on ignored misc/ignored");
    assert_eq!(reasons["misc/uses-uses-ignored"], "depends on ignored misc/ignored (via misc/uses-ignored)");
    assert_eq!(plan["counts"]["skipped"], 2);
}

#[test]
fn every_bad_input_gets_its_own_clear_error() {
    let env = Env::fixtures();
    let plan = env.status_json(&[]);
    let verdicts = verdicts(&plan);
    let reasons = reasons(&plan);
    let ports = env.ports().display().to_string();
    let cycle = "dependency cycle: bad/cycle-a -[BUILD_DEPENDS]-> bad/cycle-b -[RUN_DEPENDS]-> bad/cycle-c \
                 -[LIB_DEPENDS]-> bad/cycle-a";
    let want: &[(&str, String)] = &[
        ("bad/cycle-a", cycle.to_string()),
        ("bad/cycle-b", cycle.to_string()),
        ("bad/cycle-c", cycle.to_string()),
        ("bad/depends-on-malformed", "depends on bad/malformed, which is not buildable".into()),
        (
            "bad/missing-dep",
            format!(
                "BUILD_DEPENDS: entry 'nothere:misc/does-not-exist': no such port misc/does-not-exist \
                 (no Makefile in {ports}/misc/does-not-exist)"
            ),
        ),
        (
            "bad/unknown-flavor",
            "BUILD_DEPENDS: entry 'flavored-three:bad/flavored@three': unknown flavor 'three' of bad/flavored \
             (FLAVORS: one two)"
                .into(),
        ),
        (
            "bad/malformed-dep",
            "BUILD_DEPENDS: malformed entry 'just-a-word' is not of the form what:origin[:target]; \
             BUILD_DEPENDS: malformed entry 'foo:': empty origin"
                .into(),
        ),
    ];
    for (origin, reason) in want {
        assert_eq!(verdicts[*origin], "not-buildable", "{origin}");
        assert_eq!(&reasons[*origin], reason, "{origin}");
    }
    let malformed = &reasons["bad/malformed"];
    assert_eq!(verdicts["bad/malformed"], "not-buildable");
    assert!(malformed.starts_with("bmake failed (exit status: 1): "), "{malformed}");
    assert!(malformed.contains(&format!("{ports}/bad/malformed/Makefile")), "{malformed}");
    assert!(malformed.contains("open conditional"), "{malformed}");

    // The rest of the tree still plans.
    for good in ["misc/good", "misc/fails", "misc/needs-fails", "bad/flavored-ok", "bad/flavored@two"] {
        assert_eq!(verdicts[good], "build", "{good}");
    }
    assert_eq!(plan["counts"]["not_buildable"], 8);
}

#[test]
fn the_text_status_names_each_bad_port() {
    let env = Env::fixtures();
    let text = env.run_ok(&["status"]);
    assert!(text.contains("Not buildable (8):"), "{text}");
    for port in ["bad/cycle-a", "bad/malformed", "bad/missing-dep", "bad/unknown-flavor", "bad/malformed-dep"] {
        assert!(text.lines().any(|l| l.contains(port)), "{port} missing from:\n{text}");
    }
}

#[test]
fn unknown_ports_and_bad_arguments_are_usage_errors() {
    let env = Env::testdata();
    for (args, message) in [
        (vec!["status", "misc/nothere"], "misc/nothere: no such port in the tree"),
        (vec!["status", "lang/minilang@huge"], "lang/minilang@huge: unknown flavor (FLAVORS: lite full)"),
        (vec!["status", "hello"], "bad port argument 'hello'"),
    ] {
        let output = env.run(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(stderr(&output).contains(message), "{args:?}: {}", stderr(&output));
    }
}

#[test]
fn config_errors_exit_2_naming_key_file_and_line() {
    let env = Env::testdata();
    env.write_config("wrokers = 3\n");
    let output = env.run(&["status"]);
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(err.contains("wrokers") && err.contains("line 3") && err.contains("portsynth.toml"), "{err}");

    std::fs::write(env.config(), "ports_dir = \"missing\"\n").unwrap();
    let err = stderr(&env.run(&["status"]));
    assert!(err.contains("ports_dir") && err.contains("line 1") && err.contains("does not exist"), "{err}");

    let output = std::process::Command::new(common::bin())
        .arg("status")
        .current_dir(env.path().join("ports"))
        .env_remove("PORTSYNTH_CONFIG")
        .output()
        .unwrap();
    if !std::path::Path::new(portsynth::config::SYSTEM_CONFIG).exists() {
        assert_eq!(output.status.code(), Some(2));
        assert!(stderr(&output).contains("no config file found"), "{}", stderr(&output));
    }
}

#[test]
fn job_flags_above_four_per_cpu_are_refused_naming_the_flag() {
    let env = Env::testdata();
    let max = portsynth::config::max_jobs();
    let too_many = (max + 1).to_string();
    for (args, flag) in [
        (vec!["--workers", too_many.as_str(), "status"], "--workers"),
        (vec!["fetch-only", "--fetch-jobs", too_many.as_str()], "--fetch-jobs"),
    ] {
        let output = env.run(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let err = stderr(&output);
        assert!(err.contains(&format!("{flag}: must be at most {max} (4 per CPU")), "{args:?}: {err}");
    }
    assert!(!env.base().exists(), "nothing was started");
    let max = max.to_string();
    env.run_ok(&["--workers", max.as_str(), "status", "misc/hello"]);
}

#[test]
fn config_is_found_through_the_environment_and_profiles_apply() {
    let env = Env::testdata();
    env.write_config("[profile.other]\nmake_program = \"no-such-make\"\n");
    let output = std::process::Command::new(common::bin())
        .args(["--profile", "other", "status", "misc/hello"])
        .env("PORTSYNTH_CONFIG", env.config())
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("cannot run no-such-make"), "{text}");
}

#[test]
fn init_writes_a_valid_commented_config_and_the_directories() {
    let env = Env::testdata();
    let file = env.path().join("etc/new.toml");
    let output = std::process::Command::new(common::bin())
        .arg("--config")
        .arg(&file)
        .args(["init", "--ports-dir"])
        .arg(env.ports())
        .arg("--build-base")
        .arg(env.path().join("newbase"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("# Ports built at once"), "{text}");
    for dir in ["newbase/packages/All", "newbase/distfiles", "newbase/logs"] {
        assert!(env.path().join(dir).is_dir(), "{dir}");
    }
    let again = std::process::Command::new(common::bin()).arg("--config").arg(&file).arg("init").output().unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(stderr(&again).contains("already exists"));
}

#[test]
fn a_generated_tree_of_3000_ports_scans_without_errors() {
    let env = Env::generated(&["--ports", "3000", "--seed", "7", "--mode", "noop"]);
    let plan = env.status_json(&[]);
    let counts = &plan["counts"];
    assert_eq!(counts["not_buildable"], 0, "{counts}");
    let total: u64 = ["to_build", "up_to_date", "ignored", "skipped"].iter().map(|k| counts[k].as_u64().unwrap()).sum();
    assert!(total >= 3000, "{counts}");
    let order = build_order(&plan);
    let position: BTreeMap<&str, usize> = order.iter().enumerate().map(|(i, o)| (o.as_str(), i)).collect();
    for (dependent, dependency, _) in edges(&plan) {
        assert!(position[dependency.as_str()] < position[dependent.as_str()], "{dependency} before {dependent}");
    }
}

#[test]
fn pkgpaths_limit_what_a_bare_status_means_and_named_ports_still_win() {
    let env = Env::testdata();
    std::fs::write(
        env.path().join("bulk.list"),
        "# the bulk set\ndevel/libgreet\n\nmisc/hello  # and its dependencies\n",
    )
    .unwrap();
    env.write_config("pkgpaths = \"bulk.list\"\n");
    let plan = env.status_json(&[]);
    let origins: BTreeSet<String> = verdicts(&plan).into_keys().collect();
    assert_eq!(
        origins,
        ["devel/libgreet", "misc/hello"].map(String::from).into(),
        "the list and the closure, nothing else"
    );
    let named = env.status_json(&["misc/calc"]);
    assert!(verdicts(&named).contains_key("misc/calc"), "ports named on the command line win over pkgpaths");
    env.write_config("pkgpaths = [\"devel/libgreet\", \"no-slash\"]\n");
    let output = env.run(&["status"]);
    let err = common::stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(err.contains("pkgpaths") && err.contains("line 3") && err.contains("no-slash"), "{err}");
}

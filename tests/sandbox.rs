//! Real sandboxes, as root: real namespaces, mounts, pivot_root, bmake and
//! compilers. The tests of this file run one at a time (a global lock) so
//! the "nothing leaks" checks see only their own sandboxes.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{mounts, stderr, Env};
use portsynth::builddb::BuildDb;
use portsynth::commands::prepare::prepare;
use portsynth::config::Config;
use portsynth::framework::Kind;
use portsynth::ports::{Origin, Phase};
use portsynth::sandbox::runner::{build_one, BuildOutcome, Dependency, OutcomeStatus, SandboxRequest};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn config(env: &Env) -> Config {
    portsynth::config::load(&env.config(), None).unwrap()
}

/// Builds one port through the library API with the dependency packages the
/// builder would install (they must be in All/ already).
fn build(env: &Env, port: &str, check_plist: bool) -> BuildOutcome {
    let config = config(env);
    let db = BuildDb::open(&config.database_path).unwrap();
    let origin = Origin::parse(port).unwrap();
    let prepared = prepare(&config, &db, std::slice::from_ref(&origin)).unwrap();
    let tree = &prepared.tree;
    let node = tree.lookup(&origin).unwrap();
    let pkg = |n: usize| format!("{}.pkg", tree.nodes[n].meta.as_ref().unwrap().pkgname);
    let request = SandboxRequest {
        slot: 1,
        origin: tree.nodes[node].origin.clone(),
        pkgname: tree.nodes[node].meta.as_ref().unwrap().pkgname.clone(),
        phases: Kind::Bundled.framework().phases(check_plist),
        dependencies: tree
            .install_set(node)
            .into_iter()
            .map(|n| Dependency { file: pkg(n), origin: tree.nodes[n].origin.clone() })
            .collect(),
        keep_work_on_failure: false,
        variant: vec![],
        bootstrap_pkg: false,
        make_jobs: 1,
        work_area: portsynth::sandbox::work_area::WorkArea::Tmpfs,
        expected_memory: None,
        critical_path_ms: None,
    };
    build_one(&config, &common::bin(), &request, &|_| {}, None).unwrap()
}

fn assert_success(outcome: &BuildOutcome) {
    assert_eq!(
        outcome.status,
        OutcomeStatus::Success,
        "{outcome:?}\nlog:\n{}",
        std::fs::read_to_string(&outcome.log_path).unwrap_or_default()
    );
}

fn log_of(outcome: &BuildOutcome) -> String {
    std::fs::read_to_string(&outcome.log_path).unwrap()
}

/// Processes in a PID namespace other than ours that belong to `env`'s
/// sandboxes: their mount table shows a bind from `env`'s directory (its
/// random name is in the mount's root whether or not /tmp is a file system
/// of its own). Sandboxes of other programs on the machine do not count.
fn foreign_processes(env: &Env) -> BTreeSet<String> {
    let ours = std::fs::read_link("/proc/self/ns/pid").unwrap();
    let tag = env.path().file_name().unwrap().to_string_lossy().into_owned();
    let mut found = BTreeSet::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let Ok(ns) = std::fs::read_link(entry.path().join("ns/pid")) else { continue };
        let mountinfo = std::fs::read_to_string(entry.path().join("mountinfo")).unwrap_or_default();
        if ns != ours && mountinfo.contains(&tag) {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            found.insert(format!("{name}: {}", String::from_utf8_lossy(&cmdline).replace('\0', " ")));
        }
    }
    found
}

/// Waits (bounded) for the kernel to finish tearing namespaces down.
fn assert_no_leaks(env: &Env, mounts_before: &BTreeSet<String>, when: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let foreign = foreign_processes(env);
        let now = mounts();
        if foreign.is_empty() && &now == mounts_before {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "{when}: leaked processes {foreign:?}, new mounts {:?}, lost mounts {:?}",
                now.difference(mounts_before).collect::<Vec<_>>(),
                mounts_before.difference(&now).collect::<Vec<_>>()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn manifest_files(package: &Path) -> Vec<String> {
    let manifest = portsynth::repo::package::read_manifest(package).unwrap();
    manifest.files.iter().map(|f| f.path.clone()).collect()
}

/// The bundled tree, built port by port in build order.
#[test]
fn every_bundled_port_builds_in_the_sandbox_and_hello_runs() {
    let _guard = serial();
    let env = Env::testdata();
    let before = mounts();
    let plan = env.status_json(&[]);
    let order: Vec<String> = plan["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["verdict"] == "build")
        .map(|e| e["origin"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(order.len(), 16);
    for port in &order {
        let outcome = build(&env, port, true);
        assert_success(&outcome);
        let package = outcome.package.as_ref().unwrap();
        assert!(package.starts_with(env.base().join("packages/All")), "{}", package.display());
        assert_eq!(outcome.failed_phase, None);
        let log = log_of(&outcome);
        assert!(log.contains(&format!("Origin:   {port}")), "{log}");
        assert!(log.contains("Result:   success"), "{log}");
        assert!(log.contains("<phase: build"), "{log}");
    }
    let greet = env.base().join("packages/All/libgreet-1.2.pkg");
    let files = manifest_files(&greet);
    assert!(files.contains(&"/usr/local/lib/libgreet.so.1".to_string()), "{files:?}");
    assert!(files.contains(&"/usr/local/include/greet.h".to_string()), "{files:?}");
    assert_no_leaks(&env, &before, "after building the tree");

    // hello, from its package, in a fresh sandbox with libgreet installed.
    let dir = env.ports().join("misc/run-hello");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("Makefile"),
        "PORTNAME=run-hello\nPORTVERSION=1.0\nCATEGORIES=misc\nMAINTAINER=t@example.org\nCOMMENT=runs hello\n\
         DISTFILES=\nBUILD_DEPENDS=hello:misc/hello\nPLIST_FILES=\n\
         do-build:\n\t@echo \"hello says: $$(hello)\"\n\t@ldd ${LOCALBASE}/bin/hello\n\
         do-install:\n\t@mkdir -p ${STAGEDIR}${PREFIX}\n.include <bsd.port.mk>\n",
    )
    .unwrap();
    let outcome = build(&env, "misc/run-hello", false);
    assert_success(&outcome);
    let log = log_of(&outcome);
    assert!(log.contains("hello says: Hello, world!"), "{log}");
    assert!(log.contains("/usr/local/lib/libgreet.so.1"), "{log}");
    assert!(log.contains("installed dependency libgreet-1.2.pkg"), "{log}");
    assert!(log.contains("installed dependency hello-2.1.pkg"), "{log}");
    assert_no_leaks(&env, &before, "after running hello");
}

fn digest_of_dir(dir: &Path) -> Vec<(String, u64)> {
    let mut entries: Vec<(String, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.metadata().map(|m| m.len()).unwrap_or(0)))
        .collect();
    entries.sort();
    entries
}

#[test]
fn a_port_writing_outside_its_work_area_fails_and_changes_nothing() {
    let _guard = serial();
    let env = Env::fixtures();
    let before = mounts();
    let (usr_bin, etc) = (digest_of_dir(Path::new("/usr/bin")), digest_of_dir(Path::new("/etc")));
    let passwd = std::fs::read("/etc/passwd").unwrap();
    let tree_crc = portsynth::builddb::crc::port_crc(&env.ports()).unwrap();
    let outcome = build(&env, "hostile/write-outside", false);
    assert_eq!(outcome.status, OutcomeStatus::Failed);
    assert_eq!(outcome.failed_phase, Some(Phase::Build), "{outcome:?}");
    assert!(outcome.package.is_none());
    let log = log_of(&outcome);
    assert!(log.contains("Read-only file system") || log.contains("Permission denied"), "{log}");
    assert_eq!(digest_of_dir(Path::new("/usr/bin")), usr_bin);
    assert_eq!(digest_of_dir(Path::new("/etc")), etc);
    assert_eq!(std::fs::read("/etc/passwd").unwrap(), passwd);
    assert!(!Path::new("/usr/bin/portsynth-hostile").exists());
    assert_eq!(portsynth::builddb::crc::port_crc(&env.ports()).unwrap(), tree_crc, "ports tree changed");
    assert!(std::fs::read_dir(env.base().join("packages/All")).map_or(true, |mut d| d.next().is_none()));
    assert_no_leaks(&env, &before, "after a failed build");
}

#[test]
fn the_build_phase_has_no_network_even_to_loopback() {
    let _guard = serial();
    let env = Env::fixtures();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    env.write_config(&format!("[make_conf]\nHOSTILE_PORT = \"{port}\"\n"));
    let outcome = build(&env, "hostile/network", false);
    assert_eq!(outcome.status, OutcomeStatus::Failed);
    assert_eq!(outcome.failed_phase, Some(Phase::Build), "{outcome:?}");
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_err(), "the sandboxed build reached the host's loopback");
}

/// Serves one directory over HTTP/1.0 on loopback, counting requests.
fn serve(dir: PathBuf) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(50) {
            let Ok(mut stream) = stream else { continue };
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut request = [0u8; 4096];
            let n = stream.read(&mut request).unwrap_or(0);
            let line = String::from_utf8_lossy(&request[..n]).lines().next().unwrap_or_default().to_string();
            let path = line.split(' ').nth(1).unwrap_or("/").trim_start_matches('/').to_string();
            match std::fs::read(dir.join(&path)) {
                Ok(body) => {
                    let _ = write!(stream, "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                    let _ = stream.write_all(&body);
                }
                Err(_) => {
                    let _ = write!(stream, "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n");
                }
            }
        }
    });
    (port, hits)
}

#[test]
fn fetch_from_a_loopback_http_server_works() {
    let _guard = serial();
    let env = Env::testdata();
    let (port, hits) = serve(common::repo().join("ports-testdata/Mirror"));
    let makefile = env.ports().join("devel/libgreet/Makefile");
    let text = std::fs::read_to_string(&makefile).unwrap();
    let master = text.lines().find(|l| l.starts_with("MASTER_SITES")).unwrap().to_string();
    std::fs::write(&makefile, text.replace(&master, &format!("MASTER_SITES=\thttp://127.0.0.1:{port}/"))).unwrap();
    // Loopback is this machine: refused unless the operator lists it.
    let outcome = build(&env, "devel/libgreet", false);
    assert_eq!((outcome.status, outcome.failed_phase), (OutcomeStatus::Failed, Some(Phase::Fetch)), "{outcome:?}");
    let log = log_of(&outcome);
    assert!(log.contains("refused: 127.0.0.1 is this machine"), "{log}");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0, "the local server saw nothing");
    assert!(!env.base().join("distfiles/libgreet-1.2.tar.gz").exists());
    let mut config = std::fs::read_to_string(env.config()).unwrap();
    config.insert_str(0, "fetch_local_hosts = [\"127.0.0.1\"]\n");
    std::fs::write(env.config(), config).unwrap();
    let outcome = build(&env, "devel/libgreet", false);
    assert_success(&outcome);
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(env.base().join("distfiles/libgreet-1.2.tar.gz").is_file());
}

#[test]
fn inside_the_sandbox_only_the_sandbox_is_visible() {
    let _guard = serial();
    let env = Env::fixtures();
    let dir = env.ports().join("misc/inspect");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("Makefile"),
        "PORTNAME=inspect\nPORTVERSION=1.0\nCATEGORIES=misc\nMAINTAINER=t@example.org\nCOMMENT=looks around\n\
         DISTFILES=\nPLIST_FILES=\n\
         do-build:\n\
         \t@echo BEGIN-PS; ps -e -o pid=,comm=; echo END-PS\n\
         \t@echo BEGIN-DEV; ls -A /dev; echo END-DEV\n\
         \t@echo \"ID $$(id -u) $$(id -g)\"\n\
         \t@grep -E '^(Cap(Prm|Eff|Amb|Inh|Bnd)|NoNewPrivs|Seccomp):' /proc/self/status\n\
         \t@echo BEGIN-MOUNTS; cut -d' ' -f5 /proc/self/mountinfo; echo END-MOUNTS\n\
         \t@echo \"HOST $$(hostname)\"\n\
         do-install:\n\t@mkdir -p ${STAGEDIR}${PREFIX}\n.include <bsd.port.mk>\n",
    )
    .unwrap();
    let outcome = build(&env, "misc/inspect", false);
    assert_success(&outcome);
    let log = log_of(&outcome);
    let section = |name: &str| -> Vec<String> {
        let start = log.find(&format!("BEGIN-{name}\n")).unwrap() + name.len() + 7;
        let end = log.find(&format!("END-{name}")).unwrap();
        log[start..end].lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect()
    };
    let ps = section("PS");
    assert!(ps.iter().all(|l| ["1 portsynth", "bmake", "sh", "ps", "make"].iter().any(|c| l.contains(c))), "{ps:?}");
    assert!(ps.iter().any(|l| l.starts_with("1 ")), "PID 1 is ours: {ps:?}");
    assert!(ps.len() < 10, "{ps:?}");
    let dev: BTreeSet<String> = section("DEV").into_iter().collect();
    let allowed: BTreeSet<String> =
        ["null", "zero", "full", "random", "urandom", "pts", "ptmx", "shm", "fd", "stdin", "stdout", "stderr"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    assert_eq!(dev, allowed);
    assert!(log.contains("ID 65534 65534"), "runs as nobody: {log}");
    for cap in ["CapPrm", "CapEff", "CapAmb", "CapBnd"] {
        assert!(log.contains(&format!("{cap}:\t0000000000000000")), "{cap} not empty: {log}");
    }
    assert!(log.contains("NoNewPrivs:\t1") && log.contains("Seccomp:\t2"), "no_new_privs and a seccomp filter: {log}");
    let mounts = section("MOUNTS");
    let allowed_prefixes = [
        "/",
        "/usr",
        "/etc",
        "/xports",
        "/packages",
        "/distfiles",
        "/outbox",
        "/construction",
        "/tmp",
        "/usr/local",
        "/dev",
        "/proc",
    ];
    for mount in &mounts {
        assert!(
            allowed_prefixes
                .iter()
                .any(|p| mount == p || (mount.starts_with(&format!("{p}/")) && ["/dev", "/proc"].contains(p))),
            "unexpected mount {mount} in {mounts:?}"
        );
    }
    assert!(
        !mounts.iter().any(|m| m.starts_with("/sys") || m.starts_with("/work") || m.starts_with("/root")),
        "{mounts:?}"
    );
    assert!(log.contains("HOST portsynth-sl01"), "{log}");
}

#[test]
fn background_children_are_not_left_behind() {
    let _guard = serial();
    let env = Env::fixtures();
    let before = mounts();
    let outcome = build(&env, "hostile/forker", false);
    assert_success(&outcome);
    assert_no_leaks(&env, &before, "after a port that forks a daemon");
}

#[test]
fn watchdogs_kill_the_whole_sandbox_and_say_which_limit_fired() {
    let _guard = serial();
    let env = Env::testdata();
    let before = mounts();
    env.write_config("[phase_timeouts]\nbuild = 2\n[make_conf]\nSLEEP_SECONDS = \"60\"\n");
    let started = Instant::now();
    let outcome = build(&env, "misc/sleeper", false);
    assert!(started.elapsed() < Duration::from_secs(50), "the 60 s sleep was not cut short");
    assert_eq!(outcome.status, OutcomeStatus::Failed);
    assert_eq!(outcome.failed_phase, Some(Phase::Build));
    let reason = outcome.reason.clone().unwrap();
    assert!(reason.contains("phase build ran longer than its limit of 2 s"), "{reason}");
    assert!(log_of(&outcome).contains("*** watchdog: phase build ran longer"), "{}", log_of(&outcome));
    assert_no_leaks(&env, &before, "after a phase timeout");

    env.write_config("silent_timeout = 2\n[make_conf]\nSLEEP_SECONDS = \"60\"\n");
    let outcome = build(&env, "misc/sleeper", false);
    assert_eq!(outcome.status, OutcomeStatus::Failed);
    let reason = outcome.reason.clone().unwrap();
    assert!(reason.contains("no output for 2 s (silent_timeout)"), "{reason}");
    assert!(outcome.package.is_none());
    assert_no_leaks(&env, &before, "after a silence timeout");
}

#[test]
fn a_missing_or_corrupt_dependency_fails_in_depends_naming_the_package() {
    let _guard = serial();
    let env = Env::testdata();
    let outcome = build(&env, "devel/libgreet", false);
    assert_success(&outcome);
    let package = env.base().join("packages/All/libgreet-1.2.pkg");
    std::fs::write(&package, b"not a package at all").unwrap();
    let outcome = build(&env, "misc/hello", false);
    assert_eq!(outcome.status, OutcomeStatus::Failed);
    assert_eq!(outcome.failed_phase, Some(Phase::Depends));
    assert!(outcome.reason.as_deref().unwrap().contains("libgreet-1.2.pkg"), "{outcome:?}");
    std::fs::remove_file(&package).unwrap();
    let outcome = build(&env, "misc/hello", false);
    assert_eq!(outcome.failed_phase, Some(Phase::Depends));
    assert!(outcome.reason.as_deref().unwrap().contains("libgreet-1.2.pkg"), "{outcome:?}");
}

#[test]
fn killing_portsynth_mid_build_leaves_no_process_and_no_mount() {
    let _guard = serial();
    let env = Env::testdata();
    env.write_config("[make_conf]\nSLEEP_SECONDS = \"60\"\n");
    let before = mounts();
    let mut child = env.command(&["build-one", "misc/sleeper"]).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let log = env.base().join("logs/misc___sleeper.log");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("sleeping 60 second") {
        assert!(Instant::now() < deadline, "the build never reached its sleep");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!foreign_processes(&env).is_empty(), "the sandbox should be running");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_no_leaks(&env, &before, "after kill -9 of portsynth");
    assert!(!env.base().join("packages/All/sleeper-1.0.pkg").exists());
    let output = env.run(&["cleanup"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(!env.base().join("SL01").exists() && !env.base().join("SL01.out").exists());
}

#[test]
fn cleanup_refuses_to_touch_a_mount_point() {
    let _guard = serial();
    let env = Env::testdata();
    let slot = env.base().join("SL07");
    std::fs::create_dir_all(&slot).unwrap();
    std::fs::create_dir_all(env.base().join("SL08")).unwrap();
    nix::mount::mount(Some("tmpfs"), &slot, Some("tmpfs"), nix::mount::MsFlags::empty(), None::<&str>).unwrap();
    std::fs::write(slot.join("precious"), "keep").unwrap();
    let output = env.run(&["cleanup"]);
    nix::mount::umount(&slot).unwrap_or_else(|e| panic!("umount {}: {e}", slot.display()));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("is a mount point"), "{}", stderr(&output));
    assert!(!env.base().join("SL08").exists(), "the plain leftover is removed");
    assert!(slot.exists());
    env.run_ok(&["cleanup"]);
    assert!(!slot.exists());
}

#[test]
fn the_debug_command_builds_one_port_and_reports_failures() {
    let _guard = serial();
    let env = Env::fixtures();
    let output = env.run(&["build-one", "misc/good"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(env.base().join("packages/All/good-1.0.pkg").is_file());
    let output = env.run(&["build-one", "misc/fails"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("misc/fails FAILED in phase build"), "{}", stderr(&output));
    let output = env.run(&["build-one", "misc/needs-fails"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("not packaged yet"), "{}", stderr(&output));
}

//! `portsynth bootstrap-kit` on the real 2014 pkgsrc tree of `../shared`
//! (a real bootstrap, about 2.5 min the first time; the kit is cached in
//! `/var/cache/portsynth-pkgsrc/kit-test`, so later runs take a second),
//! and on tiny hostile trees whose bootstrap tries to get out.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use common::pkgsrc::{kit_command, shared, tree, write_config, CACHE};

/// One test at a time: each checks that no kit sandbox is left running.
static SERIAL: Mutex<()> = Mutex::new(());

/// What must look the same before and after: the host's /usr/pkg, the
/// mounts of our namespace, kit sandboxes still running.
fn host_state() -> (bool, Vec<String>, Vec<String>) {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains("kit-root") || l.contains(".outbox") || l.contains("/usr/pkg"))
        .map(String::from)
        .collect();
    let helpers = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains("kit-helper"))
        .collect();
    (Path::new("/usr/pkg").exists(), mounts, helpers)
}

fn entries(kit: &Path) -> Vec<(String, tar::EntryType)> {
    let file = std::fs::File::open(kit).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.path().unwrap().to_string_lossy().into_owned(), e.header().entry_type())
        })
        .collect()
}

#[test]
fn the_real_tree_bootstraps_into_a_verified_cached_kit() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tree = tree();
    let dir = tempfile::tempdir().unwrap();
    let base = Path::new(CACHE).join("base");
    let config = write_config(dir.path(), &tree, &base, "");
    let fragment = shared().join("mk.conf.fragment");
    let before = host_state();
    assert!(!before.0 || Path::new("/usr/pkg").is_dir(), "host /usr/pkg");
    let out = kit_command(&config, &["--mk-fragment", fragment.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{stderr}\n{}",
        std::fs::read_to_string(base.join("logs/bootstrap-kit.log")).unwrap_or_default()
    );
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kit = PathBuf::from(result["kit"].as_str().unwrap());
    let key = result["key"].as_str().unwrap();
    assert_eq!(kit, base.join(format!("kits/bootstrap-kit-{key}.tgz")));
    assert_eq!(host_state(), before, "no /usr/pkg, mount or sandbox left on the host");
    assert!(
        !tree.join("pkgtools/pkg_install/work").exists() && !tree.join("devel/bmake/work").exists(),
        "the tree is untouched"
    );

    // Every entry below ./usr/pkg; the tools and the mk.conf with the fragment.
    let entries = entries(&kit);
    assert!(entries.len() > 100, "{} entries", entries.len());
    for (name, kind) in &entries {
        assert!(name == "./usr/pkg" || name == "./usr/pkg/" || name.starts_with("./usr/pkg/"), "{name}");
        assert!(
            matches!(kind, tar::EntryType::Regular | tar::EntryType::Directory | tar::EntryType::Link),
            "{name}: {kind:?}"
        );
    }
    for wanted in ["./usr/pkg/bin/bmake", "./usr/pkg/sbin/pkg_add", "./usr/pkg/etc/mk.conf"] {
        assert!(entries.iter().any(|(n, _)| n == wanted), "no {wanted}");
    }
    assert_eq!(result["entries"].as_u64().unwrap() as usize, entries.len());

    // Unpacked into a fresh root, the kit's own tools work.
    let root = tempfile::tempdir().unwrap();
    let status = Command::new("tar").arg("-xzf").arg(&kit).arg("-C").arg(root.path()).status().unwrap();
    assert!(status.success());
    let pkg = root.path().join("usr/pkg");
    let mk_conf = std::fs::read_to_string(pkg.join("etc/mk.conf")).unwrap();
    for line in [
        "LOCALBASE=\t\t/usr/pkg",
        "PKG_DBDIR=\t\t/usr/pkg/pkgdb",
        "UNPRIVILEGED=\t\tyes",
        "TOOLS_PLATFORM.sh?=\t\t/bin/bash",
    ] {
        assert!(mk_conf.contains(line), "mk.conf lacks {line:?}:\n{mk_conf}");
    }
    assert!(mk_conf.contains(&std::fs::read_to_string(&fragment).unwrap()), "mk.conf lacks the fragment");
    let arch = Command::new(pkg.join("bin/bmake"))
        .arg("-m")
        .arg(pkg.join("share/mk"))
        .args(["-f", "/dev/null", "-V", "MACHINE_ARCH"])
        .output()
        .unwrap();
    assert!(arch.status.success(), "{}", String::from_utf8_lossy(&arch.stderr));
    assert_eq!(String::from_utf8_lossy(&arch.stdout).trim(), std::env::consts::ARCH);
    let installed = Command::new(pkg.join("sbin/pkg_info")).arg("-K").arg(pkg.join("pkgdb")).output().unwrap();
    let installed = String::from_utf8_lossy(&installed.stdout);
    for package in ["bootstrap-mk-files-", "bmake-", "nawk-", "pkg_install-"] {
        assert!(installed.lines().any(|l| l.starts_with(package)), "{package} not registered:\n{installed}");
    }

    // Same inputs: the cached kit, at once; --output gets a copy.
    let copy = dir.path().join("out/kit.tgz");
    let started = std::time::Instant::now();
    let again =
        kit_command(&config, &["--mk-fragment", fragment.to_str().unwrap(), "--output", copy.to_str().unwrap()]);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert!(started.elapsed().as_secs() < 10, "{:?}", started.elapsed());
    let again: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(again["cached"], true);
    assert_eq!(again["kit"].as_str().unwrap(), kit.to_str().unwrap());
    assert_eq!(std::fs::read(&copy).unwrap(), std::fs::read(&kit).unwrap());
}

/// A tiny tree whose bootstrap is `script`.
fn hostile_tree(dir: &Path, script: &str) -> PathBuf {
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("bootstrap")).unwrap();
    std::fs::create_dir_all(tree.join("mk")).unwrap();
    std::fs::write(tree.join("mk/bsd.pkg.mk"), "# fake\n").unwrap();
    let path = tree.join("bootstrap/bootstrap");
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    tree
}

#[test]
fn a_hostile_bootstrap_stays_inside_and_its_kit_is_refused() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let mark = format!("portsynth-hostile-kit-{}", std::process::id());
    let script = format!(
        r#"#!/bin/bash
try() {{ if "$@" 2>/dev/null; then echo "ESCAPED: $*"; else echo "denied: $*"; fi; }}
echo "uid $(id -u)"
try touch /etc/{mark}
try touch /usr/pkgsrc/{mark}
try mkdir /usr/{mark}
try touch /outbox/{mark}
try touch /{mark}
try bash -c 'echo x > /dev/tcp/127.0.0.1/{port}'
try bash -c 'echo x > /dev/tcp/1.1.1.1/80'
touch /usr/pkg/ok-here && echo "/usr/pkg is writable"
ln -s /etc/passwd /work/kit.tgz
exit 0
"#
    );
    let tree = hostile_tree(dir.path(), &script);
    let base = dir.path().join("base");
    let config = write_config(dir.path(), &tree, &base, "");
    let before = host_state();
    let out = kit_command(&config, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let log = base.join("logs/bootstrap-kit.log");
    assert!(stderr.contains(&log.display().to_string()), "the error names the log: {stderr}");
    assert!(stderr.contains("made no usable kit"), "{stderr}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("ESCAPED"), "{text}");
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    assert!(text.contains(&format!("uid {}\n", nobody.uid)), "runs as the build user: {text}");
    assert!(text.contains("/usr/pkg is writable"), "{text}");
    assert_eq!(text.matches("denied: ").count(), 7, "{text}");
    assert!(listener.accept().is_err(), "the sandbox reached the host's loopback");
    for path in [format!("/etc/{mark}"), format!("/usr/{mark}"), format!("/{mark}")] {
        assert!(!Path::new(&path).exists(), "{path}");
    }
    assert!(!tree.join(&mark).exists());
    assert_eq!(std::fs::read_dir(base.join("kits")).unwrap().count(), 0, "nothing placed, outbox removed");
    assert_eq!(host_state(), before);

    // A gzip tar that reaches outside /usr/pkg is refused by the main side.
    let script = "#!/bin/sh\nmkdir -p /work/x/etc && echo evil > /work/x/etc/passwd && tar -czf /work/kit.tgz -C /work/x ./etc\n";
    let tree = hostile_tree(&dir.path().join("2"), script);
    let out = kit_command(&config, &["--tree", tree.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("entry ./etc/ is not below ./usr/pkg"), "{stderr}");
    assert!(stderr.contains("bootstrap-kit.log"), "{stderr}");
    assert_eq!(std::fs::read_dir(base.join("kits")).unwrap().count(), 0);

    // A bootstrap that hangs is killed at bootstrap_timeout.
    let tree = hostile_tree(&dir.path().join("3"), "#!/bin/sh\nsleep 1000 &\nsleep 1000\n");
    let slow = write_config(&dir.path().join("2"), &tree, &base, "bootstrap_timeout = 2");
    let started = std::time::Instant::now();
    let out = kit_command(&slow, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("within 2 s (bootstrap_timeout)"), "{stderr}");
    assert!(started.elapsed().as_secs() < 20, "{:?}", started.elapsed());
    assert_eq!(host_state(), before, "nothing left running");
}

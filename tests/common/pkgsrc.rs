//! The real pkgsrc tree of `../shared/pkgsrc` and its bootstrap kit, made
//! once per machine and shared by the pkgsrc tests (cached below
//! `/var/cache/portsynth-pkgsrc/kit-test`, under locks).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::{bin, repo};

pub const CACHE: &str = "/var/cache/portsynth-pkgsrc/kit-test";

pub fn shared() -> PathBuf {
    let dir = repo().join("../shared/pkgsrc");
    assert!(dir.join("pkgsrc-2014.tar.zst").is_file(), "no {}/pkgsrc-2014.tar.zst", dir.display());
    dir
}

/// The tree, unpacked once into the cache (under a lock, completed by a
/// marker file).
pub fn tree() -> PathBuf {
    let cache = Path::new(CACHE);
    std::fs::create_dir_all(cache).unwrap();
    let lock = std::fs::File::create(cache.join("tree.lock")).unwrap();
    nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map(|lock| {
            let tree = cache.join("tree/pkgsrc");
            if !cache.join("tree.done").exists() {
                let _ = std::fs::remove_dir_all(cache.join("tree"));
                std::fs::create_dir_all(cache.join("tree")).unwrap();
                let status = Command::new("sh")
                    .arg("-c")
                    .arg("zstd -dc \"$1\" | tar -x -C \"$2\"")
                    .arg("sh")
                    .arg(shared().join("pkgsrc-2014.tar.zst"))
                    .arg(cache.join("tree"))
                    .status()
                    .unwrap();
                assert!(status.success(), "unpacking the tree");
                std::fs::write(cache.join("tree.done"), "").unwrap();
            }
            drop(lock);
            tree
        })
        .unwrap_or_else(|_| panic!("cannot lock {CACHE}/tree.lock"))
}

pub const RECIPE: &str = r#"
[bootstrap_env]
SH = "/bin/bash"
CFLAGS = "-O2 -fcommon"
NOGCCERROR = "yes"
PREFER_PKGSRC = "openssl"
NBCOMPAT_CONFIGURE_ARGS = "--enable-db"
"#;

pub fn write_config(dir: &Path, ports_dir: &Path, build_base: &Path, extra: &str) -> PathBuf {
    let file = dir.join("portsynth.toml");
    std::fs::write(
        &file,
        format!(
            "ports_dir = \"{}\"\nbuild_base = \"{}\"\n{extra}\n{RECIPE}",
            ports_dir.display(),
            build_base.display()
        ),
    )
    .unwrap();
    file
}

pub fn kit_command(config: &Path, args: &[&str]) -> Output {
    Command::new(bin()).arg("--config").arg(config).arg("--json").arg("bootstrap-kit").args(args).output().unwrap()
}

/// The kit of the shared tree (built by `bootstrap-kit` the first time,
/// in about 3.5 minutes; afterwards taken from the cache).
pub fn kit() -> PathBuf {
    let cache = Path::new(CACHE);
    std::fs::create_dir_all(cache).unwrap();
    let lock = std::fs::File::create(cache.join("kit.lock")).unwrap();
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).map_err(|_| "lock").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &tree(), &cache.join("base"), "");
    let fragment = shared().join("mk.conf.fragment");
    let out = kit_command(&config, &["--mk-fragment", fragment.to_str().unwrap()]);
    assert!(out.status.success(), "bootstrap-kit: {}", String::from_utf8_lossy(&out.stderr));
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    PathBuf::from(result["kit"].as_str().unwrap())
}

//! Shared helpers of the integration tests: real binary, real bmake, trees
//! assembled in temporary directories.
#![allow(dead_code)]

pub mod browser;
pub mod gated;
pub mod mirror;
pub mod pkgsrc;
pub mod slurm;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_portsynth"))
}

/// Copies a directory tree (regular files, dirs and symlinks).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            if entry.file_name() == "work" {
                continue;
            }
            copy_tree(&entry.path(), &target);
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path()).unwrap(), &target).unwrap();
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A scratch area with a ports tree and a config pointing at it.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    /// A copy of `ports-testdata` (without generated mirror files).
    pub fn testdata() -> Env {
        let env = Env { dir: tempfile::tempdir().unwrap() };
        copy_tree(&repo().join("ports-testdata"), &env.ports());
        env.write_config("");
        env
    }

    /// The bad-input tree: `tests/fixtures/ports` plus the real framework.
    pub fn fixtures() -> Env {
        let env = Env { dir: tempfile::tempdir().unwrap() };
        copy_tree(&repo().join("tests/fixtures/ports"), &env.ports());
        copy_tree(&repo().join("ports-testdata/Mk"), &env.ports().join("Mk"));
        env.write_config("");
        env
    }

    /// A tree made by `scripts/gen-tree`.
    pub fn generated(args: &[&str]) -> Env {
        let env = Env { dir: tempfile::tempdir().unwrap() };
        let status =
            Command::new(repo().join("scripts/gen-tree")).args(args).arg("--out").arg(env.ports()).status().unwrap();
        assert!(status.success(), "gen-tree {args:?} failed");
        env.write_config("");
        env
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn ports(&self) -> PathBuf {
        self.path().join("ports")
    }

    pub fn config(&self) -> PathBuf {
        self.path().join("portsynth.toml")
    }

    pub fn base(&self) -> PathBuf {
        self.path().join("base")
    }

    /// Writes the config: the tree, a build base in the scratch dir, plus `extra`.
    pub fn write_config(&self, extra: &str) {
        let text = format!("ports_dir = \"ports\"\nbuild_base = \"base\"\n{extra}");
        std::fs::write(self.config(), text).unwrap();
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(bin());
        command.arg("--config").arg(self.config()).args(args).env_remove("PORTSYNTH_CONFIG");
        command
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs and asserts the exit code; returns stdout.
    pub fn run_ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "portsynth {args:?} failed: {}\nstdout:\n{}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    pub fn status_json(&self, ports: &[&str]) -> serde_json::Value {
        let mut args = vec!["--json", "status"];
        args.extend_from_slice(ports);
        serde_json::from_str(&self.run_ok(&args)).unwrap()
    }
}

/// The NDJSON events a `--json` command printed on stdout.
pub fn events(output: &Output) -> Vec<serde_json::Value> {
    ndjson(&output.stdout)
}

/// Every line of `stdout` as a JSON value; a line that is not one fails.
pub fn ndjson(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The `run_end` event of a finished `--json` command.
pub fn run_end(output: &Output) -> serde_json::Value {
    events(output)
        .into_iter()
        .find(|e| e["event"] == "run_end")
        .unwrap_or_else(|| panic!("no run_end: {}", dump(output)))
}

/// Exit status, stdout and stderr of a command, for failure messages.
pub fn dump(output: &Output) -> String {
    format!("{}\nstdout:\n{}\nstderr:\n{}", output.status, String::from_utf8_lossy(&output.stdout), stderr(output))
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Processes whose command line contains `needle` (this test process
/// left out), as `pid: command line`.
pub fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.chars().all(|c| c.is_ascii_digit()) || name == std::process::id().to_string() {
            continue;
        }
        let cmdline = String::from_utf8_lossy(&std::fs::read(entry.path().join("cmdline")).unwrap_or_default())
            .replace('\0', " ");
        if cmdline.contains(needle) {
            found.push(format!("{name}: {cmdline}"));
        }
    }
    found
}

/// The host's mount table: mount point and root of every mount.
pub fn mounts() -> std::collections::BTreeSet<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .map(|l| l.split(' ').skip(3).take(2).collect::<Vec<_>>().join(" "))
        .collect()
}

/// Builds `port` (`category/name`, version 1.0, no dependencies) of `env`'s
/// tree in one sandbox through the runner alone, with one make job and a
/// work area of `work_area`: what the containment tests need of a build.
pub fn build_alone(
    env: &Env,
    port: &str,
    work_area: portsynth::sandbox::work_area::WorkArea,
) -> portsynth::sandbox::runner::BuildOutcome {
    use portsynth::sandbox::runner::{build_one, SandboxRequest};
    let config = portsynth::config::load(&env.config(), None).unwrap();
    let request = SandboxRequest {
        slot: 1,
        origin: portsynth::ports::Origin::parse(port).unwrap(),
        pkgname: format!("{}-1.0", port.split('/').nth(1).unwrap()),
        phases: portsynth::framework::Kind::Bundled.framework().phases(false),
        dependencies: vec![],
        keep_work_on_failure: false,
        variant: vec![],
        bootstrap_pkg: false,
        make_jobs: 1,
        work_area,
        expected_memory: None,
        critical_path_ms: None,
    };
    build_one(&config, &bin(), &request, &|_| {}, None).unwrap()
}

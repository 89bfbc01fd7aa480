//! The plain data that goes into and comes out of the build database.
//!
//! Statuses are stored as lowercase words (the schema's `CHECK` constraints
//! list them), so the database stays readable with the `sqlite3` shell.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde::Serialize;
use uuid::Uuid;

/// Declares a string id newtype holding a UUID v7.
macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// A fresh id; ids made by one process sort in creation order.
            pub(crate) fn generate() -> Self {
                $name(Uuid::now_v7().to_string())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                $name(id)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                $name(id.to_owned())
            }
        }
    };
}

uuid_id!(
    /// Identifies one invocation of a command that builds (a run).
    RunId
);
uuid_id!(
    /// Identifies one row of the `builds` table.
    BuildId
);

/// Declares a status enum stored as a lowercase word.
macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $name {
            $($variant),+
        }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;

            fn from_str(text: &str) -> Result<Self, String> {
                match text {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!("unknown {} '{other}'", stringify!($name))),
                }
            }
        }

        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }

        impl FromSql for $name {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                value.as_str()?.parse().map_err(|e: String| FromSqlError::Other(e.into()))
            }
        }
    };
}

text_enum!(
    /// Where a run is in its life.
    RunStatus {
        Running => "running",
        Completed => "completed",
        Aborted => "aborted",
        Interrupted => "interrupted",
    }
);

text_enum!(
    /// A build is `running`, then `success`, `failed` or `interrupted`;
    /// `skipped` and `ignored` are recorded directly as outcomes.
    BuildStatus {
        Running => "running",
        Success => "success",
        Failed => "failed",
        Interrupted => "interrupted",
        Skipped => "skipped",
        Ignored => "ignored",
    }
);

impl BuildStatus {
    /// The statuses [`BuildDb::finish_build`](super::BuildDb::finish_build) accepts.
    pub fn ends_a_build(self) -> bool {
        matches!(self, BuildStatus::Success | BuildStatus::Failed | BuildStatus::Interrupted)
    }

    /// The statuses [`BuildDb::record_outcome`](super::BuildDb::record_outcome) accepts.
    pub fn is_outcome_without_build(self) -> bool {
        matches!(self, BuildStatus::Skipped | BuildStatus::Ignored)
    }
}

/// The per-run tallies shown by `history`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RunCounts {
    pub built: u32,
    pub failed: u32,
    pub ignored: u32,
    pub skipped: u32,
    pub up_to_date: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunRecord {
    pub id: RunId,
    pub command: String,
    pub profile: Option<String>,
    pub pid: u32,
    pub started_ms: i64,
    pub ended_ms: Option<i64>,
    pub status: RunStatus,
    pub counts: RunCounts,
}

/// What the scheduler knows when it starts a build.
#[derive(Debug, Clone, Copy)]
pub struct NewBuild<'a> {
    pub origin: &'a str,
    pub pkgname: &'a str,
    pub version: &'a str,
    pub slot: Option<u32>,
    pub log_path: Option<&'a Path>,
    /// Why the plan builds it (`needs_build`'s reason).
    pub why: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildRecord {
    pub id: BuildId,
    pub run_id: RunId,
    pub origin: String,
    pub pkgname: String,
    pub version: String,
    pub status: BuildStatus,
    pub last_phase: Option<String>,
    pub slot: Option<u32>,
    pub started_ms: i64,
    pub ended_ms: Option<i64>,
    pub duration_ms: Option<u64>,
    pub reason: Option<String>,
    pub log_path: Option<PathBuf>,
    /// CPU time of the build's cgroup, milliseconds.
    pub cpu_ms: Option<u64>,
    /// Peak memory of the build's cgroup, bytes.
    pub peak_memory: Option<u64>,
    /// Peak size of the work area (sampled), bytes.
    pub peak_work: Option<u64>,
    pub make_jobs: Option<u32>,
    /// `tmpfs` or `disk`: where the work area was (the last attempt's).
    pub work_dir: Option<String>,
    /// A full tmpfs work area made the runner retry the build on disk.
    pub retried_on_disk: bool,
    /// Why the plan built it (`changed`, `dependency changed: …`).
    pub why: Option<String>,
}

#[cfg(test)]
impl BuildRecord {
    /// A finished-nothing row of `origin` with `status` in run `r`, every
    /// measurement unknown: what unit tests start from.
    pub(crate) fn example(origin: &str, status: BuildStatus) -> BuildRecord {
        BuildRecord {
            id: BuildId::from(origin),
            run_id: RunId::from("r"),
            origin: origin.into(),
            pkgname: "p".into(),
            version: "1".into(),
            status,
            last_phase: None,
            slot: None,
            started_ms: 0,
            ended_ms: None,
            duration_ms: None,
            reason: None,
            log_path: None,
            cpu_ms: None,
            peak_memory: None,
            peak_work: None,
            make_jobs: None,
            work_dir: None,
            retried_on_disk: false,
            why: None,
        }
    }
}

/// What one phase of a build used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PhaseUsage {
    pub phase: String,
    pub wall_ms: u64,
    /// CPU time (user + system) of everything the phase ran, from the
    /// sandbox cgroup at the phase's boundaries.
    pub cpu_ms: Option<u64>,
    pub make_jobs: u32,
    /// Peak memory of the sandbox cgroup during the phase (cgroup v2
    /// without a resettable peak: the build's peak so far).
    pub peak_memory: Option<u64>,
    /// Peak size of the work area during the phase (sampled at least every
    /// second and at the phase's end).
    pub peak_work: Option<u64>,
    /// The time of the serial part (at most one thread runnable) as it
    /// would have taken alone (see
    /// `sandbox::parallelism`): what more jobs would not have shortened.
    pub serial_ms: Option<u64>,
    /// CPU time while more threads were runnable: the work more jobs share.
    pub parallel_cpu_ms: Option<u64>,
}

/// What a whole build used, as the coordinator stores it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildUsage {
    pub cpu: Option<std::time::Duration>,
    pub peak_memory: Option<u64>,
    pub peak_work: Option<u64>,
    pub make_jobs: Option<u32>,
    /// `tmpfs` or `disk`.
    pub work_dir: Option<&'static str>,
    pub retried_on_disk: bool,
    pub phases: Vec<PhaseUsage>,
}

/// One successful build as the scheduler's history sees it (see
/// [`crate::builddb::BuildDb::resource_history_all`]). Times in ms, sizes
/// in bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceSample {
    pub make_jobs: u32,
    /// The whole build.
    pub wall_ms: u64,
    pub cpu_ms: Option<u64>,
    /// Wall time of every phase but `build`: what more make jobs do not
    /// shorten.
    pub serial_ms: u64,
    /// The `build` phase.
    pub build_wall_ms: u64,
    pub build_cpu_ms: Option<u64>,
    /// The `build` phase's serial time and parallel CPU time, where
    /// they were sampled.
    pub build_serial_ms: Option<u64>,
    pub build_parallel_cpu_ms: Option<u64>,
    pub peak_memory: Option<u64>,
    pub peak_work: Option<u64>,
    pub retried_on_disk: bool,
}

/// The inputs a port was last built successfully from, and what it produced.
/// A port needs rebuilding when its effective key no longer matches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PortState {
    pub port_crc: u32,
    pub makefiles_crc: u32,
    pub config_crc: u32,
    /// Effective key of every dependency, by origin.
    pub dep_keys: BTreeMap<String, u32>,
    pub effective_key: u32,
    pub pkgname: String,
    pub version: String,
    pub package_file: String,
    /// Set by [`BuildDb::record_success`](super::BuildDb::record_success) to the build it records.
    pub last_build_id: Option<String>,
}

/// A package as the builder produced it; the origin comes from its build.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PackageEntry {
    pub pkgname: String,
    pub version: String,
    pub file: String,
    pub sha256: String,
    pub size: u64,
}

/// A row of the package index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PackageRecord {
    pub origin: String,
    pub pkgname: String,
    pub version: String,
    pub file: String,
    pub sha256: String,
    pub size: u64,
    pub build_id: Option<BuildId>,
    pub updated_ms: i64,
}

/// A port directory's scan result, valid while its CRCs match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ScanCacheEntry {
    pub dir_crc: u32,
    /// Every makefile the scan read, with its CRC.
    pub makefiles: Vec<(String, u32)>,
    /// The parsed metadata, opaque to the database.
    pub metadata: String,
}

/// What [`BuildDb::recover_dangling`](super::BuildDb::recover_dangling) marked interrupted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Recovered {
    pub runs: usize,
    pub builds: usize,
}

//! Build database: what was built, when, from which inputs, and what failed.
//!
//! # Why SQLite, and why this way
//!
//! A run writes a little after every build (start, finish, port state) while
//! `status`, `history` and `monitor` read from other processes at any time.
//! One SQLite file in WAL mode gives exactly that: readers see a consistent
//! snapshot and never block the writer, writers wait for each other through
//! `busy_timeout` (5 s) instead of failing with `SQLITE_BUSY`, and a crash
//! loses at most the last transaction (`synchronous=NORMAL` is durable enough
//! for a build log and much cheaper than `FULL`). Every multi-statement write
//! is one `BEGIN IMMEDIATE` transaction: it takes the write lock up front, so
//! the busy handler applies and a snapshot can never go stale halfway.
//!
//! # Failure policy
//!
//! The database is bookkeeping, not the build: every write returns a
//! `Result` and callers log the error and keep building (DESIGN.md,
//! "fail-safe"). Nothing here panics on I/O. Opening is the exception that
//! must be loud: a file that is not a database or fails `PRAGMA quick_check`
//! is reported as a [`DbOpenError`] naming the file and `portsynth reset-db`,
//! and is never silently recreated — it holds the only record of which
//! packages are current. A schema newer than this binary knows is refused the
//! same way rather than half-understood.
//!
//! # Records
//!
//! Ids are UUID v7 strings, so they sort by creation time; times are `INTEGER`
//! milliseconds since the Unix epoch. A run that dies leaves `running` rows
//! behind; the next run calls [`BuildDb::recover_dangling`], which marks runs
//! whose process is gone (and their running builds) `interrupted`.
//!
//! The schema lives in [`schema`] as an ordered list of migrations; version N
//! is the result of applying the first N entries.

pub mod crc;
pub mod keys;

mod builds;
mod error;
mod records;
mod runs;
mod scan_cache;
mod schema;
mod signatures;
mod store;

#[cfg(test)]
mod tests;

pub use error::{DbOpenError, DbOpenProblem};
pub use records::{
    BuildId, BuildRecord, BuildStatus, BuildUsage, NewBuild, PackageEntry, PackageRecord, PhaseUsage, PortState,
    Recovered, ResourceSample, RunCounts, RunId, RunRecord, RunStatus, ScanCacheEntry,
};
pub use runs::{REASON_PROCESS_DIED, REASON_RUN_INTERRUPTED};
pub use schema::SCHEMA_VERSION;
pub use store::{now_ms, reset, BuildDb};

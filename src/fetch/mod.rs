//! fetch-only and purge-distfiles: the distfiles cache, warmed and pruned.
//!
//! Operators pre-warm the cache before a build window or before going
//! offline. Three properties matter and each has one owner here:
//!
//! - **fast**: [`pool`] runs `fetch_jobs` ports at once (a few per CPU:
//!   downloads wait on the network, not the CPU) and skips the sandbox
//!   entirely for a port whose files are already present and intact
//!   ([`distinfo`]).
//! - **safe**: the fetch phase ([`crate::sandbox::download`]) downloads to
//!   `.part`, verifies the size and every digest of distinfo, renames, and
//!   holds a per-distfile `flock` while it does (`distfiles_dir/.locks/`);
//!   [`lock`] is the same lock on the Rust side, taken before anything in
//!   the cache is deleted. So a distfile shared by
//!   several ports (or by a fetch-only and a build) is downloaded once and
//!   a bad or partial file never sits under its final name.
//! - **resilient**: a failed attempt is retried with exponential backoff;
//!   [`failure`] reads the framework's reason (URL, server answer, both
//!   digests) back from the log, so the report says what went wrong.
//!
//! The fetch runs in a sandbox exactly as in a build's fetch phase: the
//! framework lists the files and their sites (unprivileged, no network),
//! PID 1 downloads them (host network, only `/distfiles` writable), then the
//! framework's `checksum` where it has one fetch-only can run; so fetch-only
//! fetches what a build would, from where it would.

pub mod attempt_log;
pub mod distinfo;
pub mod failure;
pub mod lock;
pub mod pool;
pub mod purge;

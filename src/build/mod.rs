//! Orchestrated builds: the ready queue, the worker pool, throttling, signals
//! and the lock that keeps one run per build base.
//!
//! The split follows cargo's job queue: the plan (what to build and why) is
//! computed before any build starts and never changes; [`scheduler`] only
//! executes it. One coordinating thread owns every piece of mutable state —
//! the ready queue, the slots, the database connection, the summary logs —
//! and learns about the world only through one channel (worker reports),
//! a ticker (throttle and header refresh) and the signal channel. Workers
//! own nothing but their slot: they build the job they are handed and report
//! back. So no lock guards scheduler state, and the order of database writes
//! is the order in which the coordinator saw events.

pub mod allocate;
pub mod interrupts;
pub mod lock;
pub mod scheduler;
pub mod throttle;

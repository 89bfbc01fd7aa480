//! SIGINT and SIGTERM as messages to the coordinator.
//!
//! The process is multi-threaded, so a signal may land on any thread; a
//! handler that only writes to a pipe (signal-hook's self-pipe) is safe
//! wherever it runs, and a dedicated thread turns the pipe into channel
//! messages the coordinator selects on like any other event. Children of
//! the run (sandbox helpers) start with default dispositions after exec and
//! live in their own process groups, so a terminal's Ctrl-C reaches only
//! portsynth, which then decides what the sandboxes get.

use anyhow::{Context, Result};
use crossbeam_channel::{unbounded, Receiver};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

use serde::Serialize;

use crate::events::Events;
use crate::sandbox::runner::Cancel;

/// What the operator asked for by signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stop {
    /// Not asked: the run ends when the plan is done.
    None,
    /// First Ctrl-C: no new builds; the running ones finish.
    Draining,
    /// Second Ctrl-C or SIGTERM: running builds are killed.
    Killing,
}

impl Stop {
    /// Where an interrupt leads from here, if it changes anything: the
    /// first SIGINT drains, a second one or SIGTERM kills.
    pub fn after(self, interrupt: Interrupt) -> Option<Stop> {
        let next = match (interrupt, self) {
            (Interrupt::Int, Stop::None) => Stop::Draining,
            _ => Stop::Killing,
        };
        (next > self).then_some(next)
    }

    /// Moves to where `interrupt` leads, tells the operator what happens to
    /// the `running` jobs (`work`: singular and plural noun) and, when
    /// killing, fires `cancel`.
    pub fn apply(
        &mut self,
        interrupt: Interrupt,
        work: (&str, &str),
        running: usize,
        events: &Events,
        cancel: &Cancel,
    ) {
        let Some(next) = self.after(interrupt) else { return };
        *self = next;
        let (one, many) = work;
        let (noun, verb) = if running == 1 { (one, "finishes") } else { (many, "finish") };
        match next {
            Stop::Draining => events.notice(format!(
                "interrupt: no new {many} start; {running} running {noun} {verb} (Ctrl-C again to kill them)"
            )),
            Stop::Killing => {
                events.notice(format!("interrupt: killing {running} running {noun}"));
                cancel.fire();
            }
            Stop::None => {}
        }
    }
}

/// A signal the run reacts to, as delivered by the signal thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    /// SIGINT: the first drains, the second kills.
    Int,
    /// SIGTERM: kill at once.
    Term,
}

/// Catches SIGINT/SIGTERM until the returned guard is dropped.
pub struct Interrupts {
    pub receiver: Receiver<Interrupt>,
    handle: Handle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Interrupts {
    pub fn catch() -> Result<Interrupts> {
        let mut signals = Signals::new([SIGINT, SIGTERM]).context("cannot install the SIGINT/SIGTERM handlers")?;
        let handle = signals.handle();
        let (sender, receiver) = unbounded();
        let thread = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    let interrupt = if signal == SIGTERM { Interrupt::Term } else { Interrupt::Int };
                    if sender.send(interrupt).is_err() {
                        return;
                    }
                }
            })
            .context("cannot start the signal thread")?;
        Ok(Interrupts { receiver, handle, thread: Some(thread) })
    }
}

impl Drop for Interrupts {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interrupts_drain_first_then_kill() {
        assert_eq!(Stop::None.after(Interrupt::Int), Some(Stop::Draining));
        assert_eq!(Stop::Draining.after(Interrupt::Int), Some(Stop::Killing));
        assert_eq!(Stop::None.after(Interrupt::Term), Some(Stop::Killing));
        assert_eq!(Stop::Killing.after(Interrupt::Int), None);
        assert_eq!(Stop::Killing.after(Interrupt::Term), None);
    }
}

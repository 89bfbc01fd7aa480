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

use super::scheduler::Interrupt;

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

//! How much of a phase was serial and how much ran in parallel, measured so
//! that contention does not hide it.
//!
//! The scheduler's speed-up model (`build::allocate`) needs, per port, the
//! time that more make jobs do not shorten (`s`) and the CPU work that they
//! do (`p`). Wall and CPU time of the whole phase give both only when the
//! build had its cores to itself: two builds of two jobs each on two CPUs
//! take twice as long as alone, and `cpu - wall` then reads as no speed-up
//! at all — which is what the first builds of a bulk, run at a fair share
//! under full load, would teach the scheduler.
//!
//! So the runner samples the sandbox's cgroup a few times a second: its CPU
//! time, and how many of its threads are runnable (state `R`: running or
//! waiting for a CPU). The number of runnable threads is what the build
//! *wants*, whatever it gets. An interval that ends with at most one
//! runnable thread (and used at most about one core) is serial — configure,
//! a lone link step, waiting on the disk — since more jobs would not have
//! shortened it. It counts to `s` with the time it would have taken alone:
//! its CPU time while its thread was runnable (a thread that waited for a
//! CPU another build held would have run at once), its wall time while no
//! thread was (it waited for the disk, or a child, whatever the load). Any
//! other interval is parallel: its CPU time counts to `p`, and CPU time is
//! the same however many builds compete for the cores. A transition costs
//! at most one interval of misfiling.

use std::time::{Duration, Instant};

/// The serial time and parallel CPU time of a phase so far.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Split {
    /// What the intervals with at most one runnable thread would have
    /// taken alone (see the module documentation).
    pub serial: Duration,
    /// CPU time of the intervals with more.
    pub parallel_cpu: Duration,
    last: Option<(Instant, Duration)>,
}

/// An interval that used more than this many cores on average was parallel,
/// whatever the sample at its end saw.
const PARALLEL_RATE: f64 = 1.25;

impl Split {
    /// Takes one sample: the cgroup's CPU time `cpu` and its runnable
    /// threads `runnable` at `at`. The first sample only starts the clock.
    pub fn sample(&mut self, at: Instant, cpu: Duration, runnable: u32) {
        if let Some((then, cpu_then)) = self.last {
            let wall = at.saturating_duration_since(then);
            let used = cpu.saturating_sub(cpu_then);
            let rate = used.as_secs_f64() / wall.as_secs_f64().max(1e-9);
            if runnable >= 2 || rate > PARALLEL_RATE {
                self.parallel_cpu += used;
            } else {
                self.serial += if runnable == 1 { used.min(wall) } else { wall };
            }
        }
        self.last = Some((at, cpu));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A build that burns one CPU-second in one thread, then eight in four
    /// threads, getting `share` of every core it wants: under contention
    /// both parts take longer, by 1 / share.
    fn serial_then_parallel(share: f64) -> Split {
        let start = Instant::now();
        let mut split = Split::default();
        let (mut at, mut cpu) = (Duration::ZERO, Duration::ZERO);
        split.sample(start, cpu, 1);
        for (threads, work) in [(1.0, ms(1000)), (4.0, ms(8000))] {
            let end = cpu + work;
            while cpu < end {
                at += ms(250);
                cpu = (cpu + ms((250.0 * threads * share) as u64)).min(end);
                split.sample(start + at, cpu, threads as u32);
            }
        }
        split
    }

    #[test]
    fn serial_time_and_parallel_cpu_are_told_apart() {
        let split = serial_then_parallel(1.0);
        assert_eq!(split.serial, ms(1000));
        assert_eq!(split.parallel_cpu, ms(8000));
    }

    #[test]
    fn contention_slows_the_parallel_part_but_does_not_hide_it() {
        // Sharing the cores with another build: a quarter of what it wants.
        let split = serial_then_parallel(0.25);
        assert_eq!(split.parallel_cpu, ms(8000), "the CPU work done while parallel");
        assert_eq!(split.serial, ms(1000), "the serial part, as it would have run alone");
    }

    #[test]
    fn a_busy_interval_is_parallel_even_when_its_end_saw_one_thread() {
        let start = Instant::now();
        let mut split = Split::default();
        split.sample(start, Duration::ZERO, 1);
        split.sample(start + ms(250), ms(600), 1);
        assert_eq!((split.serial, split.parallel_cpu), (Duration::ZERO, ms(600)));
    }

    #[test]
    fn waiting_for_a_cpu_is_not_serial_time_but_waiting_for_the_disk_is() {
        let start = Instant::now();
        let mut split = Split::default();
        split.sample(start, Duration::ZERO, 1);
        // Runnable for 500 ms, of which it ran 100: another build had the core.
        split.sample(start + ms(500), ms(100), 1);
        assert_eq!(split.serial, ms(100));
        // No thread runnable for 500 ms: it waited for the disk.
        split.sample(start + ms(1000), ms(110), 0);
        assert_eq!(split.serial, ms(600));
    }

    #[test]
    fn idle_time_is_serial() {
        let start = Instant::now();
        let mut split = Split::default();
        split.sample(start, Duration::ZERO, 0);
        split.sample(start + ms(500), ms(10), 0);
        assert_eq!((split.serial, split.parallel_cpu), (ms(500), Duration::ZERO));
    }
}

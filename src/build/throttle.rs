//! Worker throttling: how many slots may build at once right now.
//!
//! Start with a few workers and add one every few seconds (a cold build
//! host should not start N compilers in the same second), and shrink the
//! limit while the machine is overloaded: from the full count at a 1-minute
//! load average of 1.5×CPUs (or 10 % swap in use) linearly down to a quarter
//! at 5×CPUs (or 40 % swap). dsynth computes a similar figure and never uses
//! it; here the scheduler starts builds only below this limit.

use std::time::Duration;

/// Workers allowed at the start, before ramping up.
pub const RAMP_START: usize = 2;
/// One more worker every this long.
pub const RAMP_STEP: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pressure {
    pub load1: f64,
    pub cpus: usize,
    /// Fraction of swap in use, 0 when there is no swap.
    pub swap_used: f64,
}

impl Pressure {
    /// Reads /proc/loadavg and /proc/meminfo; unreadable means no pressure.
    pub fn read() -> Pressure {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let load1 = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|t| t.split_whitespace().next().and_then(|v| v.parse().ok()))
            .unwrap_or(0.0);
        let swap_used = std::fs::read_to_string("/proc/meminfo").ok().map_or(0.0, |t| swap_fraction(&t));
        Pressure { load1, cpus, swap_used }
    }
}

fn swap_fraction(meminfo: &str) -> f64 {
    let field = |name: &str| -> f64 {
        meminfo
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let total = field("SwapTotal:");
    if total <= 0.0 {
        return 0.0;
    }
    ((total - field("SwapFree:")) / total).clamp(0.0, 1.0)
}

/// 1.0 at or below `low`, 0.25 at or above `high`, linear in between.
fn scale(value: f64, low: f64, high: f64) -> f64 {
    if value <= low {
        1.0
    } else if value >= high {
        0.25
    } else {
        1.0 - 0.75 * (value - low) / (high - low)
    }
}

/// The number of workers that may build now.
pub fn limit(workers: usize, elapsed: Duration, pressure: Pressure) -> usize {
    let ramp = RAMP_START + (elapsed.as_secs_f64() / RAMP_STEP.as_secs_f64()) as usize;
    let cpus = pressure.cpus.max(1) as f64;
    let factor = scale(pressure.load1, 1.5 * cpus, 5.0 * cpus).min(scale(pressure.swap_used, 0.10, 0.40));
    let by_pressure = ((workers as f64) * factor).floor() as usize;
    workers.min(ramp).min(by_pressure).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idle(cpus: usize) -> Pressure {
        Pressure { load1: 0.0, cpus, swap_used: 0.0 }
    }

    #[test]
    fn ramps_up_from_a_few_workers() {
        assert_eq!(limit(8, Duration::ZERO, idle(8)), 2);
        assert_eq!(limit(8, Duration::from_secs(2), idle(8)), 3);
        assert_eq!(limit(8, Duration::from_secs(60), idle(8)), 8);
        assert_eq!(limit(1, Duration::ZERO, idle(8)), 1);
    }

    #[test]
    fn load_shrinks_the_limit_linearly_to_a_quarter() {
        let later = Duration::from_secs(600);
        let at = |load1| limit(16, later, Pressure { load1, cpus: 4, swap_used: 0.0 });
        assert_eq!(at(6.0), 16, "1.5×CPUs");
        assert_eq!(at(13.0), 10, "halfway: factor 0.625");
        assert_eq!(at(20.0), 4, "5×CPUs: a quarter");
        assert_eq!(at(100.0), 4);
    }

    #[test]
    fn swap_shrinks_the_limit_too_and_never_below_one() {
        let later = Duration::from_secs(600);
        assert_eq!(limit(8, later, Pressure { load1: 0.0, cpus: 4, swap_used: 0.10 }), 8);
        assert_eq!(limit(8, later, Pressure { load1: 0.0, cpus: 4, swap_used: 0.25 }), 5);
        assert_eq!(limit(8, later, Pressure { load1: 0.0, cpus: 4, swap_used: 0.9 }), 2);
        assert_eq!(limit(2, later, Pressure { load1: 99.0, cpus: 1, swap_used: 0.9 }), 1);
    }

    #[test]
    fn meminfo_swap_fraction() {
        assert_eq!(swap_fraction("SwapTotal: 0 kB\nSwapFree: 0 kB\n"), 0.0);
        assert!((swap_fraction("SwapTotal: 1000 kB\nSwapFree: 750 kB\n") - 0.25).abs() < 1e-9);
    }
}

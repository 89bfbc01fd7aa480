//! `portsynth history [PORT]`: past runs, or past builds of one port.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;

use crate::builddb::BuildDb;
use crate::cli::{GlobalArgs, HistoryArgs};
use crate::config::Config;

pub fn run(config: &Config, global: &GlobalArgs, args: &HistoryArgs) -> Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let Some(db) = BuildDb::open_existing(&config.database_path)? else {
        if global.json {
            writeln!(out, "[]")?;
        } else {
            writeln!(out, "no build database yet at {}", config.database_path.display())?;
        }
        return Ok(ExitCode::SUCCESS);
    };
    match &args.port {
        None => {
            let runs = db.runs(args.limit)?;
            if global.json {
                return json(&mut out, &runs);
            }
            writeln!(
                out,
                "{:<36}  {:<19}  {:>9}  {:<11}  {:>5} {:>6} {:>7} {:>7} {:>10}  command",
                "run", "started (UTC)", "duration", "status", "built", "failed", "ignored", "skipped", "up-to-date"
            )?;
            for run in runs {
                let c = run.counts;
                writeln!(
                    out,
                    "{:<36}  {:<19}  {:>9}  {:<11}  {:>5} {:>6} {:>7} {:>7} {:>10}  {}",
                    run.id.as_str(),
                    utc_time(run.started_ms),
                    run.ended_ms.map_or("-".into(), |end| duration(end - run.started_ms)),
                    run.status.as_str(),
                    c.built,
                    c.failed,
                    c.ignored,
                    c.skipped,
                    c.up_to_date,
                    run.command
                )?;
            }
        }
        Some(port) => {
            let origin = crate::ports::Origin::parse(port).map_err(|e| anyhow::anyhow!("bad port '{port}': {e}"))?;
            let builds = db.builds_of_port(&origin.to_string(), args.limit)?;
            if global.json {
                return json(&mut out, &builds);
            }
            writeln!(
                out,
                "{:<36}  {:<19}  {:>9}  {:<11}  {:<12}  reason",
                "build", "started (UTC)", "duration", "status", "phase"
            )?;
            for build in builds {
                writeln!(
                    out,
                    "{:<36}  {:<19}  {:>9}  {:<11}  {:<12}  {}",
                    build.id.as_str(),
                    utc_time(build.started_ms),
                    build.duration_ms.map_or("-".into(), |ms| duration(ms as i64)),
                    build.status.as_str(),
                    build.last_phase.as_deref().unwrap_or("-"),
                    build.reason.as_deref().unwrap_or("")
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn json(out: &mut impl Write, value: &impl serde::Serialize) -> Result<ExitCode> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)?;
    Ok(ExitCode::SUCCESS)
}

/// `1m05s`, `2h03m`, `850ms`.
pub fn duration(ms: i64) -> String {
    let ms = ms.max(0);
    match ms {
        0..=999 => format!("{ms}ms"),
        1000..=59_999 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, ms / 60_000 % 60),
    }
}

/// UTC time of a ms timestamp as `YYYY-MM-DD HH:MM:SS`.
pub fn utc_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", rem / 3600, rem / 60 % 60, rem % 60)
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_durations_format() {
        assert_eq!(utc_time(0), "1970-01-01 00:00:00");
        assert_eq!(utc_time(1_795_000_000_000), "2026-11-18 11:06:40");
        assert_eq!(duration(850), "850ms");
        assert_eq!(duration(1500), "1.5s");
        assert_eq!(duration(65_000), "1m05s");
        assert_eq!(duration(7_380_000), "2h03m");
    }
}

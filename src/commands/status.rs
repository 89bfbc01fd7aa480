//! `portsynth status [PORT…]`: the plan, in build order, with reasons.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;

use super::prepare::prepare;
use crate::builddb::BuildDb;
use crate::cli::GlobalArgs;
use crate::config::Config;
use crate::plan::{Plan, Verdict};

pub fn run(config: &Config, global: &GlobalArgs, ports: &[String]) -> Result<ExitCode> {
    let origins = super::bulk_origins(config, ports)?;
    let db = BuildDb::open(&config.database_path)?;
    let prepared = prepare(config, &db, &origins)?;
    let stage = super::prepare::Stages::new();
    // Buffered: stdout is line-buffered, and a whole tree is 30,000 lines.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if global.json {
        serde_json::to_writer_pretty(&mut out, &prepared.plan)?;
        writeln!(out)?;
    } else {
        print_plan(&mut out, &prepared.plan, config, true)?;
    }
    out.flush()?;
    stage.done("print");
    // The process ends here: freeing the tree, plan and keys piece by piece
    // (millions of allocations on a big tree) would only delay the exit.
    let counts = (prepared.scan_stats, prepared.crc_counts);
    std::mem::forget(prepared);
    if global.verbose > 0 {
        let ((hits, scans), c) = counts;
        eprintln!("scan: {hits} port directories from the cache, {scans} scanned with {}", config.make_program);
        eprintln!(
            "files: {} unchanged by their stat signature, {} read; directories: {} unchanged, {} listed",
            c.files_trusted, c.files_read, c.dirs_trusted, c.dirs_listed
        );
    }
    Ok(ExitCode::SUCCESS)
}

type Select = fn(&Verdict) -> Option<&str>;

/// Prints the plan by section; `list_up_to_date: false` shows only the
/// count of up-to-date ports (a whole tree has thousands).
pub fn print_plan(out: &mut impl Write, plan: &Plan, config: &Config, list_up_to_date: bool) -> std::io::Result<()> {
    writeln!(out, "Ports tree: {}", config.ports_dir.display())?;
    let width = plan.entries.iter().map(|e| e.origin.to_string().len()).max().unwrap_or(0);
    let pkg_width = plan.entries.iter().filter_map(|e| e.pkgname.as_ref().map(String::len)).max().unwrap_or(0);
    let sections: [(&str, Select); 5] = [
        ("To build, in build order", |v| if let Verdict::Build(r) = v { Some(r) } else { None }),
        ("Up to date", |v| if let Verdict::UpToDate = v { Some("") } else { None }),
        ("Ignored", |v| if let Verdict::Ignored(r) = v { Some(r) } else { None }),
        ("Skipped", |v| if let Verdict::Skipped(r) = v { Some(r) } else { None }),
        ("Not buildable", |v| if let Verdict::NotBuildable(r) = v { Some(r) } else { None }),
    ];
    for (title, select) in sections {
        let rows: Vec<_> = plan.entries.iter().filter_map(|e| select(&e.verdict).map(|r| (e, r))).collect();
        if rows.is_empty() {
            continue;
        }
        writeln!(out, "\n{title} ({}):", rows.len())?;
        if title == "Up to date" && !list_up_to_date {
            writeln!(out, "      (listed with -v, and in the run's 00_last_results.log)")?;
            continue;
        }
        for (index, (entry, reason)) in rows.iter().enumerate() {
            let pkgname = entry.pkgname.as_deref().unwrap_or("-");
            let origin = entry.origin.to_string();
            let line = format!("{:>4}  {origin:width$}  {pkgname:pkg_width$}  {reason}", index + 1);
            writeln!(out, "{}", line.trim_end())?;
        }
    }
    if !plan.problems.is_empty() {
        writeln!(out, "\nProblems listing the tree ({}):", plan.problems.len())?;
        for problem in &plan.problems {
            writeln!(out, "      {problem}")?;
        }
    }
    let c = plan.counts;
    writeln!(
        out,
        "\n{} to build, {} up to date, {} ignored, {} skipped, {} not buildable",
        c.to_build, c.up_to_date, c.ignored, c.skipped, c.not_buildable
    )
}

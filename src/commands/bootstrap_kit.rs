//! `portsynth bootstrap-kit`: a pkgsrc binary kit from the tree's
//! `bootstrap/`, made in a sandbox and cached by its inputs (see
//! [`crate::framework::pkgsrc::kit`]).

use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;

use crate::cli::{BootstrapKitArgs, GlobalArgs};
use crate::config::Config;
use crate::framework::pkgsrc::kit::{self, KitRequest};

pub fn run(config: &Config, global: &GlobalArgs, args: &BootstrapKitArgs) -> Result<ExitCode> {
    let request = KitRequest {
        tree: args.tree.clone().unwrap_or_else(|| config.ports_dir.clone()),
        fragment: args.mk_fragment.clone(),
        output: args.output.clone(),
    };
    let started = Instant::now();
    let quiet = global.quiet;
    let outcome = kit::make(config, &request, &mut |line| {
        if !quiet {
            eprintln!("{line}");
        }
    })?;
    if global.json {
        let value = serde_json::json!({
            "kit": outcome.kit,
            "output": outcome.output,
            "key": outcome.key,
            "cached": outcome.cached,
            "entries": outcome.entries,
            "log": outcome.log,
            "seconds": started.elapsed().as_secs_f64(),
        });
        writeln!(std::io::stdout().lock(), "{value}")?;
    } else {
        let how = if outcome.cached { "cached" } else { "built" };
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "{} ({how}, {} entries, {:.1} s)",
            outcome.kit.display(),
            outcome.entries,
            started.elapsed().as_secs_f64()
        )?;
        if let Some(output) = &outcome.output {
            writeln!(out, "copied to {}", output.display())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

//! `portsynth init`: a commented default config and the directories it names.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use crate::cli::{GlobalArgs, InitArgs};
use crate::config;

pub fn run(global: &GlobalArgs, args: &InitArgs) -> Result<ExitCode> {
    let file = global.config.clone().unwrap_or_else(|| config::SYSTEM_CONFIG.into());
    if file.exists() {
        bail!("{} already exists; not overwriting it", file.display());
    }
    let ports_dir = std::path::absolute(&args.ports_dir)?;
    let build_base = std::path::absolute(&args.build_base)?;
    let text = config::default_config_text(&ports_dir, &build_base);
    let absolute_file = std::path::absolute(&file)?;
    let config = config::parse(&text, &absolute_file, None).context("the new config would not be valid")?;
    if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(&file, text).with_context(|| format!("cannot write {}", file.display()))?;
    eprintln!("wrote {}", file.display());
    for dir in [&config.build_base, &config.packages_dir.join("All"), &config.distfiles_dir, &config.logs_dir] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        eprintln!("created {}", dir.display());
    }
    Ok(ExitCode::SUCCESS)
}

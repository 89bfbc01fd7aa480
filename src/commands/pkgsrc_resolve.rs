//! `portsynth pkgsrc-resolve PSCAN [-o PRESOLVE]`: pbulk-resolve's job, by portsynth's
//! resolver, so that its output can be compared with pbulk's byte for byte.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::cli::PkgsrcResolveArgs;
use crate::commands::{exit, ExitWith};
use crate::framework::pkgsrc::pbulk;
use crate::framework::pkgsrc::resolve::{self, ResolveError, Scope};

pub fn run(args: &PkgsrcResolveArgs, verbose: bool) -> Result<ExitCode> {
    let input = std::fs::read(&args.pscan).with_context(|| format!("cannot read {}", args.pscan.display()))?;
    let entries = pbulk::parse(&input).with_context(|| format!("{}", args.pscan.display()))?;
    let records = pbulk::records(&entries).with_context(|| format!("{}", args.pscan.display()))?;
    let scope = if args.at_pkgpath { Scope::Pkgpath } else { Scope::Tree };
    let resolution = resolve::resolve(&records, scope);

    let mut failed = false;
    let mut stderr = std::io::stderr().lock();
    for resolved in &resolution.records {
        if verbose {
            for warning in &resolved.warnings {
                writeln!(stderr, "portsynth: {warning}")?;
            }
        }
        for error in &resolved.errors {
            writeln!(stderr, "portsynth: {error}")?;
            // pbulk-resolve does not check an existing DEPENDS line, and it gives up on
            // a malformed entry even with -p
            match error {
                ResolveError::UnknownDepends { .. } => {}
                ResolveError::BadEntry { .. } => failed = true,
                _ => failed |= !args.partial,
            }
        }
    }
    if failed {
        return Err(ExitWith(exit::PORT_FAILED, "dependency resolution failed; nothing written".into()).into());
    }
    let mut out = Vec::with_capacity(input.len() + input.len() / 8);
    pbulk::write_presolve(&mut out, &entries, &records, &resolution)?;
    match &args.output {
        Some(path) => {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, &out).with_context(|| format!("cannot write {}", tmp.display()))?;
            std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
        }
        None => std::io::stdout().lock().write_all(&out)?,
    }
    Ok(ExitCode::from(exit::OK))
}

/// The system allocator spends a sixth of a warm whole-tree `status` in malloc and free
/// (docs/PERFORMANCE.md, figure 2); mimalloc halves that.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

fn main() -> ExitCode {
    match portsynth::run() {
        Ok(code) => code,
        Err(error) => {
            eprintln!("portsynth: error: {error:#}");
            portsynth::exit_code_of(&error)
        }
    }
}

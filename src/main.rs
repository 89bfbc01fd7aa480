/// The system allocator spends a sixth of a warm whole-tree `status` in malloc and free
/// (docs/PERFORMANCE.md, figure 2); mimalloc halves that. Built without transparent huge
/// pages (`no_thp`): with the kernel's `defrag = madvise`, its huge-page arenas stall in
/// direct compaction on a page fault now and then, doubling the system time of a run.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

fn main() -> ExitCode {
    match portsynth::run() {
        Ok(code) => code,
        // `portsynth status | head`: the reader has what it wanted.
        Err(error) if portsynth::commands::is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("portsynth: error: {error:#}");
            portsynth::exit_code_of(&error)
        }
    }
}

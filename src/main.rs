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

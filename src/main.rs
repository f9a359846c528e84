use std::process::ExitCode;

fn main() -> ExitCode {
    easel::cli::main()
}

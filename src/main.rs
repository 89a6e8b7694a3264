//! The `statflow` binary: parses flags and hands over to the runtime.

fn main() -> std::process::ExitCode {
    statflow_runtime::cli::main()
}

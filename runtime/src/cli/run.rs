//! `statflow run`.

use std::process::ExitCode;

use super::RunArgs;

/// Runs a topology until interrupted.
pub fn run(_args: RunArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`statflow run` is being built")
}

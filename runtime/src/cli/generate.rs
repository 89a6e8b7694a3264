//! `statflow generate`.

use std::process::ExitCode;

use super::GenerateArgs;

/// Writes generated events as JSON lines.
pub fn generate(_args: GenerateArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`statflow generate` is being built")
}

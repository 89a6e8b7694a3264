//! `statflow query`.

use std::process::ExitCode;

use super::QueryArgs;

/// Sends a query and prints the answer.
pub fn query(_args: QueryArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`statflow query` is being built")
}

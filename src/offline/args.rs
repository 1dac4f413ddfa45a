//! Flags of `runsecrets review` and `runsecrets scan`.

use std::path::PathBuf;

use super::OutputFormat;
use crate::policy::Level;

#[derive(Debug, clap::Args)]
pub struct ReviewArgs {
    /// YAML or JSON file with one or more documents; `-` reads standard input.
    #[arg(value_name = "FILE|-")]
    pub file: PathBuf,
    /// Policy level enforced on the documents.
    #[arg(long, env = "RUNSECRETS_LEVEL", default_value = "baseline")]
    pub level: Level,
}

#[derive(Debug, clap::Args)]
pub struct ScanArgs {
    /// Files or directories (searched for .yaml, .yml and .json files): Kubernetes manifests,
    /// or Compose files (by name, or by a top-level services:); `-` reads standard input.
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,
    /// Policy level to check at.
    #[arg(long, env = "RUNSECRETS_LEVEL", default_value = "baseline")]
    pub level: Level,
    /// Output format.
    #[arg(long, env = "RUNSECRETS_FORMAT", default_value = "text")]
    pub format: OutputFormat,
}

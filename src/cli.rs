//! Command line: one binary, one subcommand per component.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::ServerArgs;
use crate::offline::OutputFormat;
use crate::policy::Level;
use crate::telemetry::LogFormat;

/// Docker Compose/Swarm secrets for Kubernetes: read-only files in /run/secrets, never env.
#[derive(Debug, Parser)]
#[command(name = "runsecrets", version)]
pub struct Cli {
    /// Log line format.
    #[arg(
        long,
        env = "RUNSECRETS_LOG_FORMAT",
        global = true,
        default_value = "text"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTPS admission webhook (/mutate, /validate) and the admin listener.
    Server(Box<ServerArgs>),
    /// Show what the webhook does to manifests: the mutated objects as YAML, or the denial
    /// (exit 1).
    Review(ReviewArgs),
    /// Check manifests for credentials in env; exit 1 on findings, 2 on unreadable input.
    Scan(ScanArgs),
}

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
    /// Files or directories (searched for .yaml, .yml and .json files); `-` reads standard input.
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,
    /// Policy level to check at.
    #[arg(long, env = "RUNSECRETS_LEVEL", default_value = "baseline")]
    pub level: Level,
    /// Output format.
    #[arg(long, env = "RUNSECRETS_FORMAT", default_value = "text")]
    pub format: OutputFormat,
}

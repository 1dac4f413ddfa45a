//! Command line: one binary, one subcommand per component.

use clap::{Parser, Subcommand};

use crate::compose::args::ComposeCommand;
use crate::offline::args::{ReviewArgs, ScanArgs};
use crate::secrets::args::{KeysCommand, SealArgs, SecretCommand, UnlockArgs};
use crate::server::ServerArgs;
use crate::telemetry::LogFormat;

pub mod reference;

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
    /// Run the HTTPS admission webhook (/mutate, /validate), the delivery API and the admin
    /// listener.
    Server(Box<ServerArgs>),
    /// Run the CSI node plugin (DaemonSet): secret files on a read-only tmpfs per pod volume.
    Node(Box<crate::node::NodeArgs>),
    /// Show what the webhook does to manifests: the mutated objects as YAML, or the denial
    /// (exit 1).
    Review(ReviewArgs),
    /// Check manifests and Compose files for credentials in env; exit 1 on findings, 2 on
    /// unreadable input.
    Scan(ScanArgs),
    /// Swarm's `docker secret` verbs: create, ls, inspect, rm, rotate.
    Secret(SecretCommand),
    /// Seal a secret offline: prints a RunSecret manifest, safe to commit and kubectl apply.
    Seal(SealArgs),
    /// Print the RunSecret CustomResourceDefinition (YAML).
    Crd,
    /// Docker Compose projects: `convert` turns one into workloads and sealed RunSecrets.
    Compose(ComposeCommand),
    /// The sealing keyring: protect it at rest (PKCS#11 token or unlock key).
    Keys(KeysCommand),
    /// Unlock a server whose keyring is autolocked: sends the unlock key over TLS.
    Unlock(UnlockArgs),
}

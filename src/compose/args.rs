//! Flags of `runsecrets compose`: Docker Compose's own (`-f`, `-p`, `--profile`,
//! `--env-file`, the COMPOSE_* variables) plus where the sealing keys come from.

use std::path::PathBuf;

use clap::Subcommand;

use crate::config::StoreLocation;

#[derive(Debug, clap::Args)]
pub struct ComposeCommand {
    #[command(subcommand)]
    pub verb: ComposeVerb,
}

#[derive(Debug, Subcommand)]
pub enum ComposeVerb {
    /// Convert a Compose project into workloads that declare their secrets in
    /// runsecrets.io/secrets, plus sealed RunSecrets (the report goes to standard error).
    Convert(Box<ConvertArgs>),
}

#[derive(Debug, clap::Args)]
pub struct ConvertArgs {
    /// Compose file (repeatable; later files override earlier ones). Default: compose.yaml,
    /// compose.yml, docker-compose.yml or docker-compose.yaml in the working directory or a
    /// parent, plus the matching override file. COMPOSE_FILE separates paths with ':'.
    #[arg(
        short = 'f',
        long = "file",
        env = "COMPOSE_FILE",
        value_delimiter = ':'
    )]
    pub files: Vec<PathBuf>,
    /// Directory relative paths and .env are resolved against (default: the first file's).
    #[arg(long, env = "COMPOSE_PROJECT_DIRECTORY")]
    pub project_directory: Option<PathBuf>,
    /// Env files for interpolation instead of the project directory's .env (repeatable).
    #[arg(long = "env-file", env = "COMPOSE_ENV_FILES", value_delimiter = ',')]
    pub env_files: Vec<PathBuf>,
    /// Profiles to enable (repeatable; `*` enables all). Default: COMPOSE_PROFILES, also read
    /// from .env.
    #[arg(long = "profile", env = "COMPOSE_PROFILES", value_delimiter = ',')]
    pub profiles: Vec<String>,
    /// Project name (default: COMPOSE_PROJECT_NAME, the top-level name:, or the project
    /// directory's name).
    #[arg(short = 'p', long, env = "COMPOSE_PROJECT_NAME")]
    pub project_name: Option<String>,
    /// Namespace of the objects and sealed secrets (a service's x-runsecrets.namespace still
    /// wins; default: the top-level x-runsecrets.namespace, else `default`).
    #[arg(short = 'n', long, env = "RUNSECRETS_NAMESPACE")]
    pub namespace: Option<String>,
    /// Public-key file to seal with (`{"keys": [...]}`, as GET /v1/keys serves it).
    #[arg(long, env = "RUNSECRETS_KEY", conflicts_with = "public_keys")]
    pub key: Option<PathBuf>,
    /// Seal with the public keys the server publishes in this ConfigMap (NAMESPACE/NAME),
    /// read through the current kubeconfig context.
    #[arg(long, env = "RUNSECRETS_PUBLIC_KEYS")]
    pub public_keys: Option<String>,
    /// Without --key or --public-keys: the store whose keys seal (file:DIR, its keyring; or
    /// kubernetes, the ConfigMap runsecrets/runsecrets-public-keys).
    #[arg(
        long,
        env = "RUNSECRETS_STORE",
        default_value = "file:./runsecrets-data"
    )]
    pub store: StoreLocation,
    /// Output directory (one file per object plus kustomization.yaml, replaced atomically),
    /// or `-` for one YAML stream on standard output.
    #[arg(short = 'o', long, env = "RUNSECRETS_OUTPUT", default_value = "-")]
    pub output: PathBuf,
    /// Literal credentials in environment:/env_file: convert (sealed secret + VAR_FILE),
    /// keep (left in env, reported), or fail.
    #[arg(long, env = "RUNSECRETS_ENV_CREDENTIALS", default_value = "convert")]
    pub env_credentials: crate::compose::EnvCredentials,
}

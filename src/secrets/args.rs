//! Flags of `runsecrets secret`, `seal`, `keys` and `unlock`. Every flag with a value reads an
//! environment variable too; the store flags are global to their subcommand's verbs.

use std::path::PathBuf;

use clap::Subcommand;

use crate::config::StoreLocation;

/// Which store and namespace a verb works on.
#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    /// Secret store: file:DIR (the embedded store, shared with `runsecrets server`), or
    /// kubernetes (RunSecret objects, through the current kubeconfig context).
    #[arg(
        long,
        env = "RUNSECRETS_STORE",
        default_value = "file:./runsecrets-data",
        global = true
    )]
    pub store: StoreLocation,
    /// Namespace of the secrets.
    #[arg(
        short = 'n',
        long,
        env = "RUNSECRETS_NAMESPACE",
        default_value = "default",
        global = true
    )]
    pub namespace: String,
    /// With --store kubernetes: the ConfigMap the server publishes its public keys in
    /// (NAMESPACE/NAME), used to seal new secrets.
    #[arg(
        long,
        env = "RUNSECRETS_PUBLIC_KEYS",
        default_value = "runsecrets/runsecrets-public-keys",
        global = true
    )]
    pub public_keys: String,
}

#[derive(Debug, clap::Args)]
pub struct SecretCommand {
    #[command(flatten)]
    pub target: StoreArgs,
    #[command(subcommand)]
    pub verb: SecretVerb,
}

#[derive(Debug, Subcommand)]
pub enum SecretVerb {
    /// Create a secret from a file or standard input; prints its id.
    Create {
        /// Secret label (KEY=VALUE), repeatable.
        #[arg(short = 'l', long = "label")]
        labels: Vec<String>,
        /// Only pods running as this service account receive the secret (repeatable).
        #[arg(long = "service-account")]
        service_accounts: Vec<String>,
        name: String,
        #[arg(value_name = "FILE|-")]
        file: PathBuf,
    },
    /// List secrets.
    Ls {
        /// Only display ids.
        #[arg(short, long)]
        quiet: bool,
        /// Filter: name=PREFIX, id=PREFIX, label=KEY or label=KEY=VALUE (repeatable).
        #[arg(short, long = "filter")]
        filters: Vec<crate::secrets::Filter>,
        /// `json`, or a template such as '{{.ID}}\t{{.Name}}'.
        #[arg(long)]
        format: Option<String>,
    },
    /// Show secrets' metadata (never the value).
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
        /// Human-readable output.
        #[arg(long)]
        pretty: bool,
    },
    /// Remove secrets; refused while a pod declares one of them.
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Move secrets to the newest key: the server opens each and seals the same value again
    /// (the value never leaves it); the new ciphertext replaces the record.
    Reseal {
        /// Secrets to reseal (or --all).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        names: Vec<String>,
        /// Every secret of the namespace that is not sealed with the newest key.
        #[arg(long)]
        all: bool,
        /// The server's delivery listener (where /v1/reseal is served).
        #[arg(
            long,
            env = "RUNSECRETS_SERVER",
            default_value = "https://127.0.0.1:8444"
        )]
        server: String,
        /// CA certificate that the server's certificate must chain to.
        #[arg(
            long,
            env = "RUNSECRETS_SERVER_CA",
            default_value = "./runsecrets-data/tls/ca.crt"
        )]
        ca: PathBuf,
    },
    /// Store a new value as the next version (NAME.v2, …) and, with --workload, move the
    /// workload's reference to it keeping the file path, so the workload rolls.
    Rotate {
        /// Workload whose pod template references the secret: deployment/NAME, statefulset/,
        /// daemonset/, replicaset/, cronjob/ or replicationcontroller/ (needs --store kubernetes).
        #[arg(long)]
        workload: Option<crate::secrets::WorkloadRef>,
        name: String,
        #[arg(value_name = "FILE|-")]
        file: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
pub struct SealArgs {
    #[command(flatten)]
    pub target: StoreArgs,
    /// Public-key file (`{"keys": [...]}`); without it, the keyring of --store is used.
    #[arg(long, env = "RUNSECRETS_KEY")]
    pub key: Option<PathBuf>,
    /// Secret label (KEY=VALUE), repeatable.
    #[arg(short = 'l', long = "label")]
    pub labels: Vec<String>,
    /// Only pods running as this service account receive the secret (repeatable).
    #[arg(long = "service-account")]
    pub service_accounts: Vec<String>,
    pub name: String,
    #[arg(value_name = "FILE|-")]
    pub file: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct KeysCommand {
    /// Where the keyring is: file:DIR (DIR/keyring.json), or kubernetes (the Secret
    /// --keyring, through the current kubeconfig context).
    #[arg(
        long,
        env = "RUNSECRETS_STORE",
        default_value = "file:./runsecrets-data",
        global = true
    )]
    pub store: StoreLocation,
    /// With --store kubernetes: the keyring Secret, NAMESPACE/NAME (the server's
    /// --namespace and --keyring-secret).
    #[arg(
        long,
        env = "RUNSECRETS_KEYRING",
        default_value = "runsecrets/runsecrets-keyring",
        global = true
    )]
    pub keyring: String,
    /// With --store kubernetes: the public-key ConfigMap (NAMESPACE/NAME) that `ls` reads and
    /// `rotate`/`retire` update.
    #[arg(
        long,
        env = "RUNSECRETS_PUBLIC_KEYS",
        default_value = "runsecrets/runsecrets-public-keys",
        global = true
    )]
    pub public_keys: String,
    #[command(subcommand)]
    pub verb: KeysVerb,
}

/// What opens a protected keyring for a change (a plain keyring needs neither).
#[derive(Debug, clap::Args)]
pub struct OpenArgs {
    #[command(flatten)]
    pub token: crate::config::Pkcs11Args,
    /// The unlock key of an autolocked keyring, in a file (or RUNSECRETS_UNLOCK_KEY).
    #[arg(long, env = "RUNSECRETS_UNLOCK_KEY_FILE")]
    pub unlock_key_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum KeysVerb {
    /// Store the keyring wrapped: by a PKCS#11 token's AES key (--pkcs11) or by an unlock key
    /// shown once (--autolock). A plain keyring is replaced by its wrapped form (written and
    /// verified first); an absent one is created protected.
    Protect(ProtectArgs),
    /// List the keys: id, algorithm, creation time, and which one seals new secrets.
    Ls,
    /// Add a new sealing key; older keys keep opening what they sealed.
    Rotate {
        /// The new key's suite: x25519, or xwing (X25519 + ML-KEM-768, post-quantum).
        /// Default: the sealing key's suite, so a rotation never moves back to X25519.
        #[arg(long, env = "RUNSECRETS_KEM", value_enum)]
        kem: Option<crate::seal::Suite>,
        #[command(flatten)]
        open: OpenArgs,
    },
    /// Remove a key; refused while a stored secret is sealed with it, and for the sealing key.
    Retire {
        key_id: String,
        #[command(flatten)]
        open: OpenArgs,
    },
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("protector").required(true).args(["pkcs11", "autolock"])))]
pub struct ProtectArgs {
    /// Wrap with the AES key of a PKCS#11 token (the --pkcs11-* settings).
    #[arg(long, requires = "pkcs11_module")]
    pub pkcs11: bool,
    /// Wrap with a new unlock key, printed once (Swarm's autolock): a server with this
    /// keyring starts locked until `runsecrets unlock`.
    #[arg(long)]
    pub autolock: bool,
    /// Create the AES-256 key in the token (non-extractable) when none has --pkcs11-key's
    /// label.
    #[arg(long, requires = "pkcs11")]
    pub pkcs11_generate_key: bool,
    #[command(flatten)]
    pub token: crate::config::Pkcs11Args,
}

#[derive(Debug, clap::Args)]
pub struct UnlockArgs {
    /// The server's delivery listener (where /v1/unlock is served).
    #[arg(
        long,
        env = "RUNSECRETS_SERVER",
        default_value = "https://127.0.0.1:8444"
    )]
    pub server: String,
    /// CA certificate that the server's certificate must chain to.
    #[arg(
        long,
        env = "RUNSECRETS_SERVER_CA",
        default_value = "./runsecrets-data/tls/ca.crt"
    )]
    pub ca: PathBuf,
    /// File holding the unlock key; without it the key is read from RUNSECRETS_UNLOCK_KEY or
    /// standard input.
    #[arg(long, env = "RUNSECRETS_UNLOCK_KEY_FILE")]
    pub unlock_key_file: Option<PathBuf>,
}

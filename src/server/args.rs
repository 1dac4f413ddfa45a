//! `runsecrets server` flags, and the plain configuration they resolve to. Every flag reads an
//! environment variable too, so the Helm chart configures the server through `env:` or `args:`.
//! Resolving settles every default that depends on another flag (the store, the authenticator,
//! the TLS source, the namespace) in one place, as `node/args.rs` does for the node plugin.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;

use super::ca::CaTarget;
use super::connections::Deadlines;
use super::tls::PairPaths;
use super::ServerError;
use crate::config::{parse_duration, parse_duration_or_zero, Pkcs11Args, StoreLocation};
use crate::policy::{Level, Levels};
use crate::store::StoreError;

/// `runsecrets server`: the HTTPS admission webhook and its admin listener.
#[derive(Debug, Clone, Parser)]
#[command(name = "server")]
pub struct ServerArgs {
    /// HTTPS address for /mutate and /validate.
    #[arg(long, env = "RUNSECRETS_LISTEN", default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// Plain-HTTP address for /livez, /readyz and /metrics.
    #[arg(
        long,
        env = "RUNSECRETS_ADMIN_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub admin_listen: SocketAddr,
    /// HTTPS address of the delivery API that node plugins call (same certificate).
    #[arg(
        long,
        env = "RUNSECRETS_DELIVERY_LISTEN",
        default_value = "127.0.0.1:8444"
    )]
    pub delivery_listen: SocketAddr,
    /// Where generated certificates, the embedded store, its keyring and the local node token
    /// live.
    #[arg(long, env = "RUNSECRETS_DATA_DIR", default_value = "./runsecrets-data")]
    pub data_dir: PathBuf,
    /// PEM certificate chain; reloaded when the file changes. Without it a CA and a serving
    /// certificate are generated into the data directory.
    #[arg(long, env = "RUNSECRETS_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key matching --tls-cert.
    #[arg(long, env = "RUNSECRETS_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Keep the CA in this Secret of the server's namespace (created by the first replica,
    /// read by the others) instead of only in --data-dir: every replica issues its own serving
    /// certificate from the shared CA for the --tls-san names. Needs a cluster.
    #[arg(long, env = "RUNSECRETS_TLS_CA_SECRET", conflicts_with_all = ["tls_cert", "tls_key"])]
    pub tls_ca_secret: Option<String>,
    /// Where to publish the CA so clients trust it: mutatingwebhookconfiguration/NAME or
    /// validatingwebhookconfiguration/NAME (the caBundle of every webhook in it), or
    /// configmap/NAME (key ca.crt, in the server's namespace: the node plugin's --server-ca).
    /// Repeatable; refreshed every minute.
    #[arg(
        long = "publish-ca-to",
        env = "RUNSECRETS_PUBLISH_CA_TO",
        value_delimiter = ',',
        requires = "tls_ca_secret"
    )]
    pub publish_ca_to: Vec<CaTarget>,
    /// Extra DNS name or IP for the generated certificate (repeatable; localhost and 127.0.0.1
    /// are always included).
    #[arg(long = "tls-san", env = "RUNSECRETS_TLS_SAN", value_delimiter = ',')]
    pub tls_sans: Vec<String>,
    /// How often certificate files are checked for changes.
    #[arg(long, env = "RUNSECRETS_TLS_RELOAD_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub tls_reload_interval: Duration,
    /// Cluster default enforce level: used by /validate and by /validate/enforce/default, the
    /// webhook entry for namespaces without the runsecrets.io/enforce label.
    #[arg(long, env = "RUNSECRETS_DEFAULT_ENFORCE", default_value = "off")]
    pub default_enforce: Level,
    /// Cluster default warn level: used by /validate and by /validate/warn/default, the
    /// webhook entry for namespaces without the runsecrets.io/warn label.
    #[arg(long, env = "RUNSECRETS_DEFAULT_WARN", default_value = "baseline")]
    pub default_warn: Level,
    /// Cluster default audit level: used by /validate and by /validate/audit/default, the
    /// webhook entry for namespaces without the runsecrets.io/audit label.
    #[arg(long, env = "RUNSECRETS_DEFAULT_AUDIT", default_value = "baseline")]
    pub default_audit: Level,
    /// Honour the per-object runsecrets.io/allow-env annotation (exemptions are recorded in
    /// the audit log). `false` makes exemptions an administrator's decision only.
    #[arg(long, env = "RUNSECRETS_ALLOW_ENV_EXEMPTIONS", default_value_t = true, action = clap::ArgAction::Set)]
    pub allow_env_exemptions: bool,
    /// Secret store: file:DIR, kubernetes (RunSecret objects, keyring in a Secret of the
    /// server's namespace), or none (no existence check, no delivery). Default: the file store
    /// in --data-dir.
    #[arg(long, env = "RUNSECRETS_STORE", value_parser = StoreLocation::parse_server)]
    pub store: Option<StoreLocation>,
    /// When the store cannot be read: deny pods that declare secrets (fail closed) or allow
    /// them without the existence check.
    #[arg(long, env = "RUNSECRETS_STORE_UNAVAILABLE", default_value = "deny")]
    pub store_unavailable: UnavailablePolicy,
    /// Who may fetch secrets: `kubernetes` reviews the node plugin's and the pod's tokens with
    /// TokenReview; `local` (NOT FOR CLUSTERS) trusts a node token file in --data-dir and reads
    /// pod tokens' claims without checking their signature. Default: kubernetes with
    /// --store kubernetes, else local.
    #[arg(long, env = "RUNSECRETS_AUTHENTICATOR")]
    pub authenticator: Option<AuthenticatorChoice>,
    /// The node plugin's service account, NAMESPACE/NAME: with --authenticator kubernetes, only
    /// callers presenting its token may fetch secrets.
    #[arg(
        long,
        env = "RUNSECRETS_NODE_SERVICE_ACCOUNT",
        default_value = "runsecrets/runsecrets-node"
    )]
    pub node_service_account: String,
    /// The server's own namespace: where --store kubernetes keeps the keyring Secret and the
    /// public-key ConfigMap, and --tls-ca-secret the CA. Default: in a cluster the pod's own
    /// namespace (from its service-account mount); outside one `runsecrets`, where the CLI
    /// looks for the public keys (its default --public-keys runsecrets/runsecrets-public-keys).
    #[arg(long, env = "POD_NAMESPACE")]
    pub namespace: Option<String>,
    /// With --store kubernetes: the Secret (in the server's namespace) holding the keyring;
    /// created by the first replica if absent.
    #[arg(
        long,
        env = "RUNSECRETS_KEYRING_SECRET",
        default_value = "runsecrets-keyring"
    )]
    pub keyring_secret: String,
    /// With --store kubernetes: the ConfigMap (in the server's namespace) the public keys are
    /// published in, for offline sealing.
    #[arg(
        long,
        env = "RUNSECRETS_PUBLIC_KEYS_CONFIGMAP",
        default_value = "runsecrets-public-keys"
    )]
    pub public_keys_configmap: String,
    /// Largest accepted review body; the apiserver sends at most about 3 MiB.
    #[arg(long, env = "RUNSECRETS_MAX_BODY_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Time allowed for one request, body included.
    #[arg(long, env = "RUNSECRETS_REQUEST_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// On SIGTERM, how long in-flight reviews may take before the process exits.
    #[arg(long, env = "RUNSECRETS_SHUTDOWN_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
    /// On SIGTERM, how long to keep accepting connections while /readyz reports not ready,
    /// so Service endpoints drop this replica before it stops listening (5s in a cluster).
    #[arg(long, env = "RUNSECRETS_SHUTDOWN_DELAY", default_value = "0s", value_parser = parse_duration_or_zero)]
    pub shutdown_delay: Duration,
    /// Most connections open at once on the webhook and on the delivery listener. When all are
    /// taken, a new connection closes the one idle the longest; it waits only while every
    /// connection has a request in flight (and /readyz then reports the listener saturated).
    #[arg(long, env = "RUNSECRETS_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Time from accepting a connection to the end of its first request's headers, TLS
    /// handshake included: a peer that connects and stays silent is closed after this.
    #[arg(long, env = "RUNSECRETS_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,
    /// Time a kept-alive connection (HTTP/1.1 or HTTP/2) may stay idle between requests.
    #[arg(long, env = "RUNSECRETS_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Add a new sealing key when the newest is this old (sealed-secrets' 30 days); `0` turns
    /// renewal off. Older keys keep opening. Replicas renewing together make one key.
    #[arg(long, env = "RUNSECRETS_KEY_RENEW_PERIOD", default_value = "30d", value_parser = parse_duration_or_zero)]
    pub key_renew_period: Duration,
    #[command(flatten)]
    pub pkcs11: Pkcs11Args,
    /// A file holding the unlock key of an autolocked keyring (a mounted Secret): read at
    /// start and, while the server is locked, every few seconds.
    #[arg(long, env = "RUNSECRETS_UNLOCK_KEY_FILE")]
    pub unlock_key_file: Option<PathBuf>,
}

/// The server's settings after defaults and checks.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub delivery_listen: SocketAddr,
    pub data_dir: PathBuf,
    pub tls: TlsSource,
    pub tls_reload_interval: Duration,
    pub defaults: Levels,
    pub options: crate::admission::Options,
    pub store: StoreConfig,
    pub authenticator: AuthenticatorChoice,
    pub node_service_account: String,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub shutdown_delay: Duration,
    pub max_connections: usize,
    pub deadlines: Deadlines,
    pub key_renew_period: Duration,
    /// Read (with its PIN) when the keyring is opened, not before.
    pub pkcs11: Pkcs11Args,
    pub unlock_key_file: Option<PathBuf>,
}

/// Where the serving certificate comes from.
#[derive(Debug, Clone)]
pub enum TlsSource {
    /// `--tls-cert` and `--tls-key`.
    Files(PairPaths),
    /// A CA and a certificate generated into `--data-dir` for these names.
    Generated { sans: Vec<String> },
    /// The CA kept in a Secret of the server's namespace (`--tls-ca-secret`), published to
    /// `publish_to`; this replica's certificate is issued from it for `sans`.
    SharedCa {
        namespace: String,
        secret: String,
        publish_to: Vec<CaTarget>,
        sans: Vec<String>,
    },
}

/// The store the server checks and delivers from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// The file store (and its keyring) in this directory.
    File(PathBuf),
    /// RunSecrets through the API; the keyring Secret and the public-key ConfigMap in
    /// `namespace`, the server's own.
    Kubernetes {
        namespace: String,
        keyring_secret: String,
        public_keys_configmap: String,
    },
    /// No existence check, no delivery.
    None,
}

impl ServerArgs {
    /// The settings in effect. The namespace is only looked up when something lives in it (a
    /// cluster store, a shared CA), and then once.
    pub fn resolve(&self) -> Result<ServerConfig, ServerError> {
        let needs_namespace =
            self.store == Some(StoreLocation::Kubernetes) || self.tls_ca_secret.is_some();
        let namespace = if needs_namespace {
            Some(self.namespace().map_err(ServerError::Namespace)?)
        } else {
            None
        };
        let sans = self.generated_sans();
        let tls = match (
            &self.tls_cert,
            &self.tls_key,
            &self.tls_ca_secret,
            &namespace,
        ) {
            (Some(cert), Some(key), _, _) => TlsSource::Files(PairPaths {
                cert: cert.clone(),
                key: key.clone(),
            }),
            (_, _, Some(secret), Some(namespace)) => TlsSource::SharedCa {
                namespace: namespace.clone(),
                secret: secret.clone(),
                publish_to: self.publish_ca_to.clone(),
                sans,
            },
            _ => TlsSource::Generated { sans },
        };
        let store = match (&self.store, namespace) {
            (None, _) => StoreConfig::File(self.data_dir.clone()),
            (Some(StoreLocation::File(dir)), _) => StoreConfig::File(dir.clone()),
            (Some(StoreLocation::Kubernetes), Some(namespace)) => StoreConfig::Kubernetes {
                namespace,
                keyring_secret: self.keyring_secret.clone(),
                public_keys_configmap: self.public_keys_configmap.clone(),
            },
            (Some(StoreLocation::Kubernetes | StoreLocation::None), _) => StoreConfig::None,
        };
        // A cluster store never defaults to the local authenticator.
        let authenticator = match (self.authenticator, &store) {
            (Some(choice), _) => choice,
            (None, StoreConfig::Kubernetes { .. }) => AuthenticatorChoice::Kubernetes,
            (None, _) => AuthenticatorChoice::Local,
        };
        Ok(ServerConfig {
            listen: self.listen,
            admin_listen: self.admin_listen,
            delivery_listen: self.delivery_listen,
            data_dir: self.data_dir.clone(),
            tls,
            tls_reload_interval: self.tls_reload_interval,
            defaults: Levels {
                enforce: self.default_enforce,
                warn: self.default_warn,
                audit: self.default_audit,
            },
            options: crate::admission::Options {
                allow_env_exemptions: self.allow_env_exemptions,
                deny_when_store_unavailable: self.store_unavailable == UnavailablePolicy::Deny,
            },
            store,
            authenticator,
            node_service_account: self.node_service_account.clone(),
            max_body_bytes: self.max_body_bytes,
            request_timeout: self.request_timeout,
            shutdown_timeout: self.shutdown_timeout,
            shutdown_delay: self.shutdown_delay,
            max_connections: self.max_connections,
            deadlines: Deadlines {
                first_request: self.header_timeout,
                idle: self.idle_timeout,
            },
            key_renew_period: self.key_renew_period,
            pkcs11: self.pkcs11.clone(),
            unlock_key_file: self.unlock_key_file.clone(),
        })
    }

    /// The server's own namespace (see [`resolve_namespace`]).
    fn namespace(&self) -> Result<String, StoreError> {
        resolve_namespace(
            self.namespace.as_deref(),
            Path::new(SERVICE_ACCOUNT_NAMESPACE_FILE),
        )
    }

    /// Names for the generated certificate: the loopback names plus every --tls-san.
    fn generated_sans(&self) -> Vec<String> {
        let mut sans = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        for san in &self.tls_sans {
            if !sans.contains(san) {
                sans.push(san.clone());
            }
        }
        sans
    }
}

/// The delivery API's `--authenticator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthenticatorChoice {
    /// TokenReview against the cluster's apiserver.
    Kubernetes,
    /// No cluster: a node token file and unverified pod token claims. Not for clusters.
    Local,
}

/// What the webhook does when the store cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UnavailablePolicy {
    Deny,
    Allow,
}

/// Where every pod with a service-account token finds its own namespace.
pub const SERVICE_ACCOUNT_NAMESPACE_FILE: &str =
    "/var/run/secrets/kubernetes.io/serviceaccount/namespace";
/// The server's namespace outside a cluster: the one the CLI's default `--public-keys` names.
pub const DEFAULT_NAMESPACE: &str = "runsecrets";

/// `--namespace` when given, else the namespace in `service_account_file` (in a cluster), else
/// [`DEFAULT_NAMESPACE`]; checked as a namespace name.
pub fn resolve_namespace(
    flag: Option<&str>,
    service_account_file: &Path,
) -> Result<String, StoreError> {
    let namespace = match flag {
        Some(namespace) => namespace.to_string(),
        None => std::fs::read_to_string(service_account_file)
            .ok()
            .map(|text| text.trim().to_string())
            .filter(|text| !text.is_empty())
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string()),
    };
    crate::store::check_namespace(&namespace)?;
    Ok(namespace)
}

#[cfg(test)]
mod tests;

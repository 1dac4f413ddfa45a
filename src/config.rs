//! Server configuration: every flag also reads an environment variable, so the same binary is
//! configured by a Helm chart's `env:` or by hand.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::policy::{Level, Levels};

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
    pub publish_ca_to: Vec<crate::server::ca::CaTarget>,
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
    #[arg(long, env = "RUNSECRETS_STORE")]
    pub store: Option<StoreChoice>,
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

/// The PKCS#11 token whose AES key wraps the keyring (the key never leaves the token).
#[derive(Debug, Clone, clap::Args)]
pub struct Pkcs11Args {
    /// The token's PKCS#11 module (shared library), e.g. /usr/lib/softhsm/libsofthsm2.so.
    /// With it, a new keyring is created wrapped by the token's key and a wrapped one is
    /// opened with it.
    #[arg(long, env = "RUNSECRETS_PKCS11_MODULE")]
    pub pkcs11_module: Option<PathBuf>,
    /// Label of the token.
    #[arg(long, env = "RUNSECRETS_PKCS11_TOKEN", default_value = "runsecrets")]
    pub pkcs11_token: String,
    /// Label of the AES-256 key in the token.
    #[arg(
        long,
        env = "RUNSECRETS_PKCS11_KEY",
        default_value = "runsecrets-keyring"
    )]
    pub pkcs11_key: String,
    /// File holding the token's user PIN (a mounted Secret); one trailing newline is ignored.
    #[arg(
        long,
        env = "RUNSECRETS_PKCS11_PIN_FILE",
        conflicts_with = "pkcs11_pin"
    )]
    pub pkcs11_pin_file: Option<PathBuf>,
    /// The token's user PIN (prefer the env var or --pkcs11-pin-file: a flag's value shows in
    /// the process list).
    #[arg(long, env = "RUNSECRETS_PKCS11_PIN", hide_env_values = true)]
    pub pkcs11_pin: Option<crate::seal::protector::Pin>,
}

impl Pkcs11Args {
    /// The token's settings when --pkcs11-module is given.
    pub fn config(
        &self,
        generate_key: bool,
    ) -> Result<
        Option<crate::seal::protector::Pkcs11Config>,
        crate::seal::protector::pkcs11::Pkcs11Error,
    > {
        use crate::seal::protector::{pkcs11::Pkcs11Error, Pin, Pkcs11Config};
        let Some(module) = &self.pkcs11_module else {
            return Ok(None);
        };
        let pin = match (&self.pkcs11_pin_file, &self.pkcs11_pin) {
            (Some(file), _) => Pin::from_file(file)?,
            (None, Some(pin)) => pin.clone(),
            (None, None) => {
                return Err(Pkcs11Error::NoPin {
                    token: self.pkcs11_token.clone(),
                })
            }
        };
        Ok(Some(Pkcs11Config {
            module: module.clone(),
            token: self.pkcs11_token.clone(),
            key: self.pkcs11_key.clone(),
            pin,
            generate_key,
        }))
    }
}

/// The server's `--store`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChoice {
    File(PathBuf),
    Kubernetes,
    None,
}

/// The delivery API's `--authenticator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthenticatorChoice {
    /// TokenReview against the cluster's apiserver.
    Kubernetes,
    /// No cluster: a node token file and unverified pod token claims. Not for clusters.
    Local,
}

impl std::str::FromStr for StoreChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match (s, s.strip_prefix("file:")) {
            ("none", _) => Ok(StoreChoice::None),
            ("kubernetes", _) => Ok(StoreChoice::Kubernetes),
            (_, Some(dir)) if !dir.is_empty() => Ok(StoreChoice::File(PathBuf::from(dir))),
            _ => Err(format!(
                "unknown store {s:?}: use file:DIR, kubernetes or none"
            )),
        }
    }
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
    service_account_file: &std::path::Path,
) -> Result<String, crate::store::StoreError> {
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

impl ServerArgs {
    /// The server's own namespace (see [`resolve_namespace`]).
    pub fn namespace(&self) -> Result<String, crate::store::StoreError> {
        resolve_namespace(
            self.namespace.as_deref(),
            std::path::Path::new(SERVICE_ACCOUNT_NAMESPACE_FILE),
        )
    }

    /// The store the webhook checks against, if any.
    pub fn store_dir(&self) -> Option<PathBuf> {
        match &self.store {
            None => Some(self.data_dir.clone()),
            Some(StoreChoice::File(dir)) => Some(dir.clone()),
            Some(StoreChoice::None | StoreChoice::Kubernetes) => None,
        }
    }

    /// The authenticator in effect: a cluster store never defaults to the local one.
    pub fn authenticator(&self) -> AuthenticatorChoice {
        match (self.authenticator, &self.store) {
            (Some(choice), _) => choice,
            (None, Some(StoreChoice::Kubernetes)) => AuthenticatorChoice::Kubernetes,
            (None, _) => AuthenticatorChoice::Local,
        }
    }

    /// How long connections may hold a slot without using it.
    pub fn deadlines(&self) -> crate::server::connections::Deadlines {
        crate::server::connections::Deadlines {
            first_request: self.header_timeout,
            idle: self.idle_timeout,
        }
    }

    pub fn default_levels(&self) -> Levels {
        Levels {
            enforce: self.default_enforce,
            warn: self.default_warn,
            audit: self.default_audit,
        }
    }

    /// Names for the generated certificate: the loopback names plus every --tls-san.
    pub fn generated_sans(&self) -> Vec<String> {
        let mut sans = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        for san in &self.tls_sans {
            if !sans.contains(san) {
                sans.push(san.clone());
            }
        }
        sans
    }
}

/// Parses a positive duration: `250ms`, `5s`, `2m`, `12h`, `30d` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    match parse_duration_or_zero(s)? {
        d if d.is_zero() => Err(format!("{s:?} must be greater than zero")),
        d => Ok(d),
    }
}

/// Like [`parse_duration`], and zero is allowed. humantime's syntax (`250ms`, `5s`, `1m30s`,
/// `12h`, `30d`), plus a bare number of seconds as the flags have always taken.
pub fn parse_duration_or_zero(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse()
            .map(Duration::from_secs)
            .map_err(|_| format!("{s:?} is too long"));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration like 250ms, 5s, 1m30s or 30d ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        for (text, secs) in [
            ("250ms", 0.25),
            ("5s", 5.0),
            ("1m30s", 90.0),
            ("2h", 7200.0),
            ("30d", 2_592_000.0),
            ("10", 10.0),
        ] {
            assert_eq!(
                parse_duration(text).map(|d| d.as_secs_f64()),
                Ok(secs),
                "{text}"
            );
        }
        assert_eq!(parse_duration_or_zero("0"), Ok(Duration::ZERO));
        assert!(parse_duration("0s")
            .unwrap_err()
            .contains("greater than zero"));
        let e = parse_duration("soon").unwrap_err();
        assert!(
            e.contains("not a duration like 250ms, 5s, 1m30s or 30d"),
            "{e}"
        );
    }

    #[test]
    fn the_namespace_is_the_flag_the_pods_own_or_runsecrets() {
        let dir = tempfile::tempdir().expect("tmp");
        let mounted = dir.path().join("namespace");
        let absent = dir.path().join("absent");
        assert_eq!(resolve_namespace(None, &absent).unwrap(), "runsecrets");
        std::fs::write(&mounted, "secrets-system\n").expect("write");
        assert_eq!(resolve_namespace(None, &mounted).unwrap(), "secrets-system");
        assert_eq!(
            resolve_namespace(Some("platform"), &mounted).unwrap(),
            "platform"
        );
        std::fs::write(&mounted, "").expect("write");
        assert_eq!(resolve_namespace(None, &mounted).unwrap(), "runsecrets");
        let bad = resolve_namespace(Some("Platform_X"), &absent).expect_err("invalid");
        assert!(
            bad.to_string().contains("invalid namespace \"Platform_X\""),
            "{bad}"
        );
    }

    /// The server outside a cluster publishes where the CLI looks by default.
    #[test]
    fn the_server_publishes_where_the_cli_looks() {
        use clap::Parser;
        let server = ServerArgs::try_parse_from(["server"]).expect("defaults");
        let cli = crate::cli::Cli::try_parse_from(["runsecrets", "secret", "ls"]).expect("cli");
        let crate::cli::Command::Secret(secret) = cli.command else {
            panic!("secret command");
        };
        assert_eq!(
            secret.target.public_keys,
            format!("{DEFAULT_NAMESPACE}/{}", server.public_keys_configmap)
        );
    }
}

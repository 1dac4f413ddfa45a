//! Configuration shared by the subcommands: where secrets are stored, the PKCS#11 token that
//! protects the keyring, and durations as people write them. Each subcommand's own flags live
//! in its domain (`server/args.rs`, `node/args.rs`, ...) and resolve into a plain config there;
//! every flag also reads an environment variable, so a Helm chart's `env:` configures it too.

use std::path::PathBuf;
use std::time::Duration;

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

/// Where secrets are stored: the one `--store` vocabulary of the server and the CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// The embedded file store in a data directory.
    File(PathBuf),
    /// RunSecret objects in the cluster: the current kubeconfig context's, or the pod's own.
    Kubernetes,
    /// No store (the server only): no existence check, no delivery.
    None,
}

impl StoreLocation {
    /// The server's `--store`: `file:DIR`, `kubernetes` or `none`.
    pub fn parse_server(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(StoreLocation::None),
            _ => Self::parse(s)
                .map_err(|_| format!("unknown store {s:?}: use file:DIR, kubernetes or none")),
        }
    }

    /// A CLI verb's `--store`, which must hold secrets: `file:DIR` or `kubernetes`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.strip_prefix("file:") {
            Some(dir) if !dir.is_empty() => Ok(StoreLocation::File(PathBuf::from(dir))),
            _ if s == "kubernetes" => Ok(StoreLocation::Kubernetes),
            _ => Err(format!("unknown store {s:?}: use file:DIR or kubernetes")),
        }
    }
}

impl std::str::FromStr for StoreLocation {
    type Err = String;
    /// As a CLI verb takes it ([`StoreLocation::parse`]).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
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
    fn one_store_vocabulary_for_the_server_and_the_cli() {
        assert_eq!(
            StoreLocation::parse_server("file:/data"),
            Ok(StoreLocation::File("/data".into()))
        );
        assert_eq!(StoreLocation::parse_server("none"), Ok(StoreLocation::None));
        assert_eq!(
            "kubernetes".parse::<StoreLocation>(),
            Ok(StoreLocation::Kubernetes)
        );
        // A CLI verb needs secrets to work on.
        assert_eq!(
            "none".parse::<StoreLocation>(),
            Err("unknown store \"none\": use file:DIR or kubernetes".to_string())
        );
        assert_eq!(
            StoreLocation::parse_server("file:"),
            Err("unknown store \"file:\": use file:DIR, kubernetes or none".to_string())
        );
    }
}

//! The secret values of a run: random, so the log scan cannot match anything by chance and a
//! file read back proves it came from this run's secret.

/// Secret names the scenarios use.
pub const DB: &str = "db_password";
pub const DB_V2: &str = "db_password.v2";
pub const TLS: &str = "tls_key";
pub const API: &str = "api_token";
/// Granted to service account [`GRANTED`] only.
pub const RESTRICTED: &str = "restricted";
pub const GRANTED: &str = "granted";

pub struct Values {
    pub db: String,
    pub db_v2: String,
    pub tls: String,
    pub api: String,
    pub restricted: String,
    /// A literal credential in env, refused or warned about; never logged either.
    pub env_literal: String,
}

fn random(prefix: &str) -> String {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).expect("random bytes");
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}-{hex}")
}

impl Values {
    pub fn new() -> Values {
        Values {
            db: random("db-v1"),
            db_v2: random("db-v2"),
            tls: format!(
                "-----BEGIN TEST KEY-----\n{}\n-----END TEST KEY-----\n",
                random("tls")
            ),
            api: random("api"),
            restricted: random("restricted"),
            env_literal: random("Hunter2Literal"),
        }
    }

    /// (name, value, extra `secret create` args) of the secrets made at setup.
    pub fn initial(&self) -> Vec<(&'static str, &str, Vec<String>)> {
        vec![
            (DB, &self.db, vec![]),
            (TLS, &self.tls, vec!["--label".into(), "tier=web".into()]),
            (API, &self.api, vec![]),
            (
                RESTRICTED,
                &self.restricted,
                vec!["--service-account".into(), GRANTED.into()],
            ),
        ]
    }

    /// Every value: none may appear in any log.
    pub fn all(&self) -> Vec<String> {
        vec![
            self.db.clone(),
            self.db_v2.clone(),
            self.tls.clone(),
            self.api.clone(),
            self.restricted.clone(),
            self.env_literal.clone(),
        ]
    }
}

//! Judging literal `env[].value`s for plaintext credentials.
//!
//! This runs on every env var of every admitted pod, so the matchers are
//! hand-written byte scans that do not allocate (only a value already judged random is
//! decoded, to see whether it is base64 of text). Verdicts end up in admission
//! responses, logs and metrics, so nothing here ever returns the value judged.

mod name;
mod value;

pub use name::without_file_suffix;

/// Which rule flagged a literal env value. Never carries the value itself, so a
/// verdict can be logged, counted and shown to users without leaking the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The variable's name contains a credential keyword (the keyword, uppercase,
    /// e.g. "PASSWORD"): whatever is stored under such a name is a secret, even
    /// when it looks harmless.
    Name(&'static str),
    /// The value looks like a known credential format, whatever the variable is
    /// called: renaming a variable must not be a way around the policy.
    Value(ValueKind),
    /// The name has a credential keyword and a last word that would make it a reference or a
    /// setting (`_FILE`, `_URL`, `_PORT`…), but the value is not what that word says
    /// (`expected`: "a path", "a URL"…): `DB_PASSWORD_FILE=hunter2`.
    NotWhatTheNameSays {
        keyword: &'static str,
        expected: &'static str,
    },
}

/// Credential formats recognised from the value alone; kept distinct so users
/// learn what they leaked and operators can count each rule separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueKind {
    AwsAccessKeyId,
    AwsSecretAccessKey,
    GitHubToken,
    GitLabToken,
    SlackToken,
    StripeKey,
    GoogleApiKey,
    PemPrivateKey,
    Jwt,
    UrlPassword,
    HighEntropy,
}

impl ValueKind {
    /// Short human label, so a rejection says what to move into a Secret.
    pub fn label(self) -> &'static str {
        self.names().0
    }

    /// Stable kebab-case id for metric labels and dashboards; unlike `label`,
    /// its wording never changes.
    pub fn rule(self) -> &'static str {
        self.names().1
    }

    fn names(self) -> (&'static str, &'static str) {
        match self {
            Self::AwsAccessKeyId => ("AWS access key id", "aws-access-key-id"),
            Self::AwsSecretAccessKey => ("AWS secret access key", "aws-secret-access-key"),
            Self::GitHubToken => ("GitHub token", "github-token"),
            Self::GitLabToken => ("GitLab token", "gitlab-token"),
            Self::SlackToken => ("Slack token", "slack-token"),
            Self::StripeKey => ("Stripe key", "stripe-key"),
            Self::GoogleApiKey => ("Google API key", "google-api-key"),
            Self::PemPrivateKey => ("PEM private key", "pem-private-key"),
            Self::Jwt => ("JWT", "jwt"),
            Self::UrlPassword => ("URL with a password", "url-password"),
            Self::HighEntropy => ("high-entropy string", "high-entropy"),
        }
    }
}

impl Reason {
    /// Human explanation for rejection messages; built only from the rule, so
    /// it is safe to show, log and store.
    pub fn describe(self) -> String {
        match self {
            Self::Name(keyword) => format!("name contains \"{keyword}\""),
            Self::NotWhatTheNameSays { keyword, expected } => {
                format!("name contains \"{keyword}\" and its value is not {expected}")
            }
            Self::Value(kind) => {
                let article = match kind {
                    ValueKind::AwsAccessKeyId | ValueKind::AwsSecretAccessKey => "an",
                    _ => "a",
                };
                format!("value looks like {article} {}", kind.label())
            }
        }
    }

    /// Stable id for metric labels: "name" or the value rule's id.
    pub fn rule(self) -> &'static str {
        match self {
            Self::Name(_) | Self::NotWhatTheNameSays { .. } => "name",
            Self::Value(kind) => kind.rule(),
        }
    }
}

/// Judge one literal `env[].value`. None = fine. Value rules run first because
/// they are more specific than the name; references (`$(VAR)`, secret files)
/// are always fine because they are exactly what we want people to use.
pub fn literal_credential(name: &str, value: &str) -> Option<Reason> {
    let v = value.trim();
    if v.is_empty()
        || only_var_refs(v)
        || v.starts_with("/run/secrets/")
        || v.starts_with("/var/run/secrets/")
    {
        return None;
    }
    if let Some(kind) = value::value_kind(name.as_bytes(), v) {
        return Some(Reason::Value(kind));
    }
    name::name_reason(name.as_bytes(), v)
}

/// Judge a variable by its name alone, for declarations that have no value to look at: a
/// Dockerfile's `ARG TOKEN` gets its value at build time, and `ENV TOKEN=$TOKEN` copies one.
pub fn credential_name(name: &str) -> Option<Reason> {
    name::name_only(name.as_bytes()).map(Reason::Name)
}

/// Kubernetes dependent-variable syntax only, e.g. `$(A)` or `$(A)$(B)`.
fn only_var_refs(s: &str) -> bool {
    let mut b = s.as_bytes();
    let ref_char = |c: u8| c.is_ascii_graphic() && !b"$()=".contains(&c);
    while !b.is_empty() {
        let Some(rest) = b.strip_prefix(b"$(") else {
            return false;
        };
        let len = rest.iter().take_while(|&&c| ref_char(c)).count();
        if len == 0 || rest.get(len) != Some(&b')') {
            return false;
        }
        b = &rest[len + 1..];
    }
    !s.is_empty()
}

fn alnum(c: u8) -> bool {
    c.is_ascii_alphanumeric()
}

fn base64url(c: u8) -> bool {
    alnum(c) || c == b'_' || c == b'-'
}

fn contains_ci(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

#[cfg(test)]
mod tests;

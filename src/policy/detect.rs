//! Judging literal `env[].value`s for plaintext credentials.
//!
//! This runs on every env var of every admitted pod, so the matchers are
//! hand-written byte scans that do not allocate. Verdicts end up in admission
//! responses, logs and metrics, so nothing here ever returns the value judged.

use std::ops::RangeInclusive;

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
            Self::Name(_) => "name",
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
    if let Some(kind) = value_kind(name.as_bytes(), v) {
        return Some(Reason::Value(kind));
    }
    name_keyword(name.as_bytes(), v).map(Reason::Name)
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

/// (kind, allowed length after the prefix, class of every byte after it, prefixes)
type VendorRule = (
    ValueKind,
    RangeInclusive<usize>,
    fn(u8) -> bool,
    &'static [&'static str],
);
const MAX: usize = usize::MAX;

/// Vendor formats known by a fixed prefix. Checked before the generic rules so
/// the user is told which vendor's credential leaked.
#[rustfmt::skip]
const PREFIXED: &[VendorRule] = &[
    (ValueKind::AwsAccessKeyId, 16..=16, |c| c.is_ascii_uppercase() || c.is_ascii_digit(),
        &["AKIA", "ASIA", "ABIA", "ACCA"]),
    (ValueKind::GitHubToken, 36..=MAX, alnum, &["ghp_", "gho_", "ghu_", "ghs_", "ghr_"]),
    (ValueKind::GitHubToken, 22..=MAX, |c| alnum(c) || c == b'_', &["github_pat_"]),
    (ValueKind::GitLabToken, 20..=MAX, base64url, &["glpat-"]),
    (ValueKind::SlackToken, 10..=MAX, |c| alnum(c) || c == b'-',
        &["xoxb-", "xoxp-", "xoxa-", "xoxo-", "xoxs-", "xoxr-", "xoxe-"]),
    (ValueKind::SlackToken, 1..=MAX, |_| true, &["https://hooks.slack.com/services/"]),
    (ValueKind::StripeKey, 16..=MAX, alnum, &["sk_live_", "sk_test_", "rk_live_", "rk_test_"]),
    (ValueKind::GoogleApiKey, 35..=35, base64url, &["AIza"]),
];

fn value_kind(name: &[u8], v: &str) -> Option<ValueKind> {
    let b = v.as_bytes();
    let vendor = PREFIXED.iter().find(|(_, len, class, prefixes)| {
        prefixes.iter().any(|p| {
            b.strip_prefix(p.as_bytes())
                .is_some_and(|rest| len.contains(&rest.len()) && rest.iter().all(|&c| class(c)))
        })
    });
    let kind = if let Some(&(kind, ..)) = vendor {
        kind
    } else if aws_secret(b) && (contains_ci(name, "AWS") || contains_ci(name, "SECRET")) {
        ValueKind::AwsSecretAccessKey
    } else if pem_private_key(v) {
        ValueKind::PemPrivateKey
    } else if jwt(b) {
        ValueKind::Jwt
    } else if url_password(v) {
        ValueKind::UrlPassword
    } else if high_entropy(b) {
        ValueKind::HighEntropy
    } else {
        return None;
    };
    Some(kind)
}

fn aws_secret(b: &[u8]) -> bool {
    b.len() == 40
        && b.iter().all(|&c| alnum(c) || c == b'/' || c == b'+')
        && b.iter().any(u8::is_ascii_lowercase)
        && b.iter().any(u8::is_ascii_uppercase)
        && b.iter()
            .any(|&c| c.is_ascii_digit() || c == b'/' || c == b'+')
}

fn pem_private_key(v: &str) -> bool {
    v.contains("-----BEGIN PGP PRIVATE KEY BLOCK-----")
        || v.split("-----BEGIN ").skip(1).any(|after| {
            let line = after.lines().next().unwrap_or_default();
            line.contains("PRIVATE KEY-----")
        })
}

fn jwt(b: &[u8]) -> bool {
    let segment = |s: &[u8]| !s.is_empty() && s.iter().all(|&c| base64url(c));
    let mut parts = b.split(|&c| c == b'.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let segments = [header, payload, signature];
    b.len() >= 30
        && header.starts_with(b"eyJ")
        && payload.starts_with(b"eyJ")
        && segments.iter().all(|s| segment(s))
}

/// Any `scheme://user:password@host` in the value, unless the password is a
/// `$(VAR)` reference.
fn url_password(v: &str) -> bool {
    let mut rest = v;
    while let Some(i) = rest.find("://") {
        rest = &rest[i + 3..];
        let authority = rest.find(['/', '?', '#']).map_or(rest, |end| &rest[..end]);
        let userinfo = authority.rfind('@').map_or("", |at| &authority[..at]);
        if let Some((_, password)) = userinfo.split_once(':') {
            if !password.is_empty() && !only_var_refs(password) {
                return true;
            }
        }
    }
    false
}

fn high_entropy(b: &[u8]) -> bool {
    if !(24..=4096).contains(&b.len()) || b[0] == b'/' {
        return false;
    }
    let mut counts = [0u16; 128];
    let (mut letter, mut digit, mut all_hex) = (false, false, true);
    for &c in b {
        if !(alnum(c) || b"+/=_.~-".contains(&c)) {
            return false;
        }
        letter |= c.is_ascii_alphabetic();
        digit |= c.is_ascii_digit();
        all_hex &= c.is_ascii_hexdigit();
        counts[usize::from(c)] += 1;
    }
    if !letter || !digit || all_hex {
        return false;
    }
    let n = b.len() as f64;
    let p = counts.iter().filter(|&&k| k > 0).map(|&k| f64::from(k) / n);
    p.map(|p| -p * p.log2()).sum::<f64>() >= 4.2
}

/// Last tokens that make the variable a reference to, or a setting of, a
/// secret rather than the secret itself.
const EXEMPT_LAST: &str = "FILE FILES PATH DIR DIRECTORY TTL URL URI ENDPOINT HOST PORT NAME USER \
    USERNAME TYPE MODE ENABLED DISABLED REQUIRED LENGTH EXPIRY EXPIRES TIMEOUT HEADER ID KIND POLICY \
    LOCATION REF KEYRING ALGORITHM ALG VERSION FORMAT PREFIX FIELD";

const BOOLEANS: &[&str] = &["true", "false", "yes", "no", "on", "off"];

/// (canonical keyword, its spellings as one token or two adjacent tokens joined)
#[rustfmt::skip]
const KEYWORDS: &[(&str, &str)] = &[
    ("PASSWORD", "PASSWORD PASSWD PASS"), ("PASSPHRASE", "PASSPHRASE"),
    ("SECRET", "SECRET SECRETS"), ("TOKEN", "TOKEN"), ("API KEY", "APIKEY"),
    ("ACCESS KEY", "ACCESSKEY"), ("PRIVATE KEY", "PRIVATEKEY"), ("SECRET KEY", "SECRETKEY"),
    ("SIGNING KEY", "SIGNINGKEY"), ("CLIENT SECRET", "CLIENTSECRET"),
    ("CREDENTIALS", "CREDENTIALS CREDENTIAL CREDS"),
];

/// Name tokens split on `_`, `-`, `.` and lowercase→uppercase boundaries.
/// Splits only at ASCII bytes, so multi-byte chars stay whole.
fn tokens(name: &[u8]) -> impl Iterator<Item = &[u8]> {
    let sep = |c: u8| matches!(c, b'_' | b'-' | b'.');
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < name.len() && sep(name[i]) {
            i += 1;
        }
        let start = i;
        while i < name.len()
            && !sep(name[i])
            && !(i > start && name[i - 1].is_ascii_lowercase() && name[i].is_ascii_uppercase())
        {
            i += 1;
        }
        (i > start).then(|| &name[start..i])
    })
}

fn keyword(first: &[u8], second: &[u8]) -> Option<&'static str> {
    let (a, b) = (first.len(), second.len());
    let matches = |kw: &str| {
        let kw = kw.as_bytes();
        kw.len() == a + b
            && kw[..a].eq_ignore_ascii_case(first)
            && kw[a..].eq_ignore_ascii_case(second)
    };
    KEYWORDS
        .iter()
        .find(|(_, spellings)| spellings.split(' ').any(matches))
        .map(|&(canonical, _)| canonical)
}

/// Judge a variable by its name alone, for declarations that have no value to look at: a
/// Dockerfile's `ARG TOKEN` gets its value at build time, and `ENV TOKEN=$TOKEN` copies one.
pub fn credential_name(name: &str) -> Option<Reason> {
    name_rule(name.as_bytes()).map(Reason::Name)
}

fn name_keyword(name: &[u8], value: &str) -> Option<&'static str> {
    if BOOLEANS.iter().any(|b| value.eq_ignore_ascii_case(b)) {
        return None;
    }
    name_rule(name)
}

fn name_rule(name: &[u8]) -> Option<&'static str> {
    let last = tokens(name).last()?;
    let exempt = |e: &str| last.eq_ignore_ascii_case(e.as_bytes());
    if EXEMPT_LAST.split_whitespace().any(exempt) {
        return None;
    }
    let mut toks = tokens(name).peekable();
    let mut first = true;
    while let Some(t) = toks.next() {
        let next = toks.peek().copied();
        let whole_name = first && next.is_none();
        first = false;
        if let Some(kw) = next.and_then(|n| keyword(t, n)).or_else(|| keyword(t, b"")) {
            return Some(kw);
        }
        if (t.eq_ignore_ascii_case(b"PWD") && !whole_name)
            || contains_ci(t, "PASSWORD")
            || contains_ci(t, "PASSWD")
        {
            return Some("PASSWORD");
        }
        if next.is_none() && t.eq_ignore_ascii_case(b"AUTH") {
            return Some("AUTH");
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use Reason::{Name, Value};
    use ValueKind::*;

    const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
    const PEM: &str = "-----BEGIN RSA PRIVATE KEY-----\nFAKEFAKEFAKEnotARealKeyEXAMPLEonlyFAKEFAKEFAKEnotARealKeyEXAMPLE\n-----END RSA PRIVATE KEY-----\n";

    #[rustfmt::skip]
    const FLAGGED: &[(&str, &str, Reason)] = &[
        ("PGPASSWORD", "literal-pg-password", Name("PASSWORD")),
        ("DB_PASSWORD", "literal-db-password", Name("PASSWORD")),
        ("API_KEY", "literal-api-key-0000", Name("API KEY")),
        ("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE", Value(AwsAccessKeyId)),
        ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", Value(AwsSecretAccessKey)),
        ("GITHUB_TOKEN", "ghp_EXAMPLEexampleEXAMPLEexample01234567", Value(GitHubToken)),
        ("DATABASE_URL", "postgres://app:hunter2@db:5432/app", Value(UrlPassword)),
        ("ID_ASSERTION", JWT, Value(Jwt)),
        ("SIGNING_MATERIAL", PEM, Value(PemPrivateKey)),
        ("SLACK_BOT", "xoxb-123456789012-1234567890123-EXAMPLEfakeEXAMPLEfake00", Value(SlackToken)),
    ];

    #[test]
    fn real_credentials_are_rejected_with_the_right_reason() {
        for &(name, value, want) in FLAGGED {
            assert_eq!(literal_credential(name, value), Some(want), "{name}");
        }
    }

    #[test]
    fn ordinary_config_and_references_are_admitted() {
        #[rustfmt::skip]
        let admitted = [
            ("LOG_LEVEL", "debug"), ("PASSWORD_FILE", "/run/secrets/db"), ("TOKEN_TTL", "3600"),
            ("EMPTY", ""), ("REF", "$(OTHER)"), ("DB_PASSWORD", "$(A)$(B)"), ("PWD", "/app"),
            ("DB_PASSWORD", " /var/run/secrets/db/password "),
            ("MYSQL_ROOT_PASSWORD_FILE", "/run/secrets/mysql_root_password"),
            ("FLYWAY_URL", "jdbc:mysql://127.0.0.1:3306/app"),
            ("DATABASE_URL", "postgres://app:$(DB_PASS)@db/app"),
            ("GIT_SHA", "3f786850e387550fdab836ed7e6dc881de23001b"),
            ("IMAGE", "registry.example.com/team/app:1.2.3"),
            ("REQUIRE_PASSWORD", "true"),
            ("UPSTREAM", "https://example.com:8443/x"),
            ("SMTP", "smtp://alerts@mail.example.com/"),
            ("STRIPE_PUBLISHABLE", "pk_live_51HxExampleExampleExample"),
            ("SERVICE", "my-service-name-production-eu-west-1"),
            ("REPO", "registry.example.com/team/app"),
            ("REQUEST_ID", "123e4567-e89b-12d3-a456-426614174000"),
        ];
        for (name, value) in admitted {
            assert_eq!(literal_credential(name, value), None, "{name}={value}");
        }
    }

    #[test]
    fn describe_never_reveals_the_value_and_rules_are_stable_ids() {
        for &(name, value, reason) in FLAGGED {
            let text = reason.describe();
            let mut windows = value.trim().as_bytes().windows(8);
            let leaks = windows.any(|w| text.as_bytes().windows(8).any(|t| t == w));
            assert!(!leaks, "{name}: {text}");
            let kebab = reason
                .rule()
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c == b'-');
            assert!(kebab, "{}", reason.rule());
        }
        #[rustfmt::skip]
        let texts = [
            (Value(GitHubToken), "value looks like a GitHub token", "github-token"),
            (Value(AwsAccessKeyId), "value looks like an AWS access key id", "aws-access-key-id"),
            (Value(UrlPassword), "value looks like a URL with a password", "url-password"),
            (Name("PASSWORD"), "name contains \"PASSWORD\"", "name"),
        ];
        for (reason, text, rule) in texts {
            assert_eq!((reason.describe().as_str(), reason.rule()), (text, rule));
        }
    }

    #[test]
    fn each_value_format_is_recognised_under_a_neutral_name() {
        #[rustfmt::skip]
        let cases = [
            ("ASIAY34FZKBOKMUTVV7A", AwsAccessKeyId),
            ("github_pat_11ABCDEFG0123456789_abcdefghijKLMNOP", GitHubToken),
            ("glpat-abcdefghij0123456789", GitLabToken),
            ("https://hooks.slack.com/services/T000/B000/XXXX", SlackToken),
            ("sk_live_0123456789abcdefABCD", StripeKey),
            ("AIzaSyA1234567890abcdefghijklmnop_-wxyz", GoogleApiKey),
            ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn", PemPrivateKey),
            ("-----BEGIN PGP PRIVATE KEY BLOCK-----", PemPrivateKey),
            ("redis://:s3cr3t@cache:6379/0", UrlPassword),
            ("amqp://u:p@ss@rabbit/vhost", UrlPassword),
            ("Kx9vQ2mZ7pL4wR8tY1nB6cJ3", HighEntropy), // 24 random base64 chars
        ];
        for (value, want) in cases {
            assert_eq!(literal_credential("X", value), Some(Value(want)), "{value}");
        }
    }

    #[test]
    fn near_misses_are_not_value_matches() {
        #[rustfmt::skip]
        let cases = [
            ("AKIAiosfodnn7example", AwsAccessKeyId),
            ("ghp_short", GitHubToken),
            ("AIzaSyA1234567890abcdefghij", GoogleApiKey),
            ("-----BEGIN CERTIFICATE-----\nMIIB\n-----END PRIVATE KEY-----", PemPrivateKey),
            ("eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.", Jwt),
            ("postgres://app@db/app", UrlPassword),
            ("pk_live_0123456789abcdefABCD", StripeKey),
            ("deadbeefdeadbeefdeadbeefdeadbeef0123", HighEntropy),
        ];
        for (value, not) in cases {
            assert_ne!(literal_credential("X", value), Some(Value(not)), "{value}");
        }
        // A 40-char mixed string is an AWS secret only next to an AWS-ish name.
        let aws = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        let aws_secret_under =
            |name| literal_credential(name, aws) == Some(Value(AwsSecretAccessKey));
        assert!(!aws_secret_under("X") && aws_secret_under("my_secret"));
    }

    #[test]
    fn name_keywords_follow_tokens_not_substrings() {
        #[rustfmt::skip]
        let cases = [
            ("dbPassword", Some("PASSWORD")), ("MYSQLPASSWORD", Some("PASSWORD")),
            ("DB_PWD", Some("PASSWORD")), ("PWD", None), ("apiKey", Some("API KEY")),
            ("APIKey", Some("API KEY")), ("clientSecret", Some("CLIENT SECRET")),
            ("OAUTH_CLIENT_SECRET", Some("CLIENT SECRET")), ("SECRET_KEY_BASE", Some("SECRET KEY")),
            ("TLS_PRIVATE_KEY", Some("PRIVATE KEY")), ("PRIVATE_REGISTRY", None),
            ("AWS_ACCESS_KEY", Some("ACCESS KEY")), ("BASIC_AUTH", Some("AUTH")),
            ("GOOGLE_APPLICATION_CREDENTIALS_JSON", Some("CREDENTIALS")),
            ("npm.auth", Some("AUTH")), ("AUTH_MODE", None), ("AUTH_SERVER", None),
            ("SECRET_NAME", None), ("TOKEN_HEADER", None), ("PASSPORT_NUMBER", None),
            ("COMPASS", None),
        ];
        for (name, want) in cases {
            let got = literal_credential(name, "some value");
            assert_eq!(got, want.map(Name), "{name}");
        }
        assert_eq!(literal_credential("USE_TOKEN", "Off"), None);
    }

    #[test]
    fn multibyte_input_never_panics() {
        let text = "pässwörd€€€€€€€€€€€€€€€€€€€€€ $(Ä) ://ü:€@ß/ -----BEGIN ✓ eyJ€.eyJ.x";
        for (i, _) in text.char_indices() {
            for name in ["ÄPI_KEY", "päss_wörd", "€", &text[i..]] {
                let _ = literal_credential(name, &text[..i]);
                let _ = literal_credential(name, &text[i..]);
            }
        }
        assert_eq!(literal_credential("ÄPI_KEY", "x"), None);
        let umlauts = literal_credential("DB_PASSWORD", "pässwörd€€€");
        assert_eq!(umlauts, Some(Name("PASSWORD")));
    }
}

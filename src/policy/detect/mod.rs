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

fn name_keyword(name: &[u8], value: &str) -> Option<&'static str> {
    if BOOLEANS.iter().any(|b| value.eq_ignore_ascii_case(b)) {
        return None;
    }
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
mod tests;

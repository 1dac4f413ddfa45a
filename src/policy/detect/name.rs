//! Rules on the name: a credential keyword among the variable's words (in leetspeak too), and
//! the last words (`_FILE`, `_URL`, `_PORT`…) that make the variable a reference to a secret
//! or a setting of one. Such a word exempts the name only when the value is what it says.

use super::Reason;

/// What a name's last word says its value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Promise {
    Path,
    Url,
    Host,
    Number,
    /// Settings and identities (`_NAME`, `_USER`, `_ID`, `_MODE`…) take free-form values.
    Anything,
}

impl Promise {
    fn describe(self) -> &'static str {
        match self {
            Promise::Path => "a path",
            Promise::Url => "a URL",
            Promise::Host => "a host name",
            Promise::Number => "a number or a duration",
            Promise::Anything => "a setting",
        }
    }

    fn kept_by(self, v: &str) -> bool {
        let b = v.as_bytes();
        match self {
            Promise::Path => v.contains(['/', '\\']) || v.starts_with(['.', '~']) || file_name(b),
            Promise::Url => {
                v.contains("://") || v.starts_with('/') || (host(b) && v.contains(['.', ':']))
            }
            Promise::Host => host(b),
            Promise::Number => {
                b.iter().any(u8::is_ascii_digit)
                    && b.iter()
                        .all(|c| b"0123456789.:+-_TZPYMWDHSsmhdwun".contains(c))
            }
            Promise::Anything => true,
        }
    }
}

/// `name.ext`: a relative file name.
fn file_name(b: &[u8]) -> bool {
    let Some(dot) = b.iter().rposition(|&c| c == b'.') else {
        return false;
    };
    let (stem, ext) = (&b[..dot], &b[dot + 1..]);
    !stem.is_empty()
        && (1..=5).contains(&ext.len())
        && ext.iter().all(u8::is_ascii_alphanumeric)
        && stem
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || b"._-".contains(&c))
}

/// A host name or an address, with a port or brackets.
fn host(b: &[u8]) -> bool {
    !b.is_empty()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || b".-:[]".contains(&c))
}

/// An absolute path (two or more components, no symbols a password would have): a reference
/// to a file, whatever the name (`GOOGLE_APPLICATION_CREDENTIALS=/var/secrets/key.json`).
fn absolute_path(v: &str) -> bool {
    let b = v.as_bytes();
    b.first() == Some(&b'/')
        && b[1..].contains(&b'/')
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || b"/._-+@:".contains(&c))
}

/// Last words that make the variable a reference to, or a setting of, a secret rather than
/// the secret itself, and what each says the value is.
#[rustfmt::skip]
const EXEMPT_LAST: &[(&str, Promise)] = &[
    ("FILE", Promise::Path), ("FILES", Promise::Path), ("PATH", Promise::Path),
    ("DIR", Promise::Path), ("DIRECTORY", Promise::Path), ("LOCATION", Promise::Path),
    ("KEYRING", Promise::Path),
    ("URL", Promise::Url), ("URI", Promise::Url), ("ENDPOINT", Promise::Url),
    ("HOST", Promise::Host),
    ("PORT", Promise::Number), ("TTL", Promise::Number), ("TIMEOUT", Promise::Number),
    ("LENGTH", Promise::Number), ("EXPIRY", Promise::Number), ("EXPIRES", Promise::Number),
    ("NAME", Promise::Anything), ("USER", Promise::Anything), ("USERNAME", Promise::Anything),
    ("TYPE", Promise::Anything), ("MODE", Promise::Anything), ("ENABLED", Promise::Anything),
    ("DISABLED", Promise::Anything), ("REQUIRED", Promise::Anything),
    ("HEADER", Promise::Anything), ("ID", Promise::Anything), ("KIND", Promise::Anything),
    ("POLICY", Promise::Anything), ("REF", Promise::Anything), ("ALGORITHM", Promise::Anything),
    ("ALG", Promise::Anything), ("VERSION", Promise::Anything), ("FORMAT", Promise::Anything),
    ("PREFIX", Promise::Anything), ("FIELD", Promise::Anything),
];

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

/// Tools that name their password `<tool>PASS` in one word (PostgreSQL's `PGPASS`, keytool's
/// `STOREPASS`). A list, because a word ending in PASS is as often just a word (COMPASS,
/// BYPASS).
const PASS_PREFIXES: &[&str] = &[
    "PG", "DB", "SQL", "MYSQL", "MARIADB", "MONGO", "REDIS", "AMQP", "RABBIT", "SMTP", "MAIL",
    "IMAP", "LDAP", "BIND", "FTP", "SFTP", "SSH", "VNC", "RDP", "ROOT", "ADMIN", "USER", "PROXY",
    "WIFI", "KEY", "STORE",
];

/// The letter a digit or symbol stands for in leetspeak (`PASSW0RD`, `S3CRET`, `T0KEN`).
fn unleet(c: u8) -> u8 {
    match c {
        b'0' => b'O',
        b'1' => b'I',
        b'3' => b'E',
        b'4' => b'A',
        b'5' => b'S',
        b'7' => b'T',
        b'$' => b'S',
        b'@' => b'A',
        c => c.to_ascii_uppercase(),
    }
}

/// `word` spells `keyword` (uppercase), case-insensitively and in leetspeak (`1` is I or L).
fn spells(word: &[u8], keyword: &[u8]) -> bool {
    word.len() == keyword.len()
        && word
            .iter()
            .zip(keyword)
            .all(|(&w, &k)| unleet(w) == k || (w == b'1' && k == b'L'))
}

fn contains_spelled(hay: &[u8], keyword: &str) -> bool {
    hay.windows(keyword.len())
        .any(|w| spells(w, keyword.as_bytes()))
}

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
        kw.len() == a + b && spells(first, &kw[..a]) && spells(second, &kw[a..])
    };
    KEYWORDS
        .iter()
        .find(|(_, spellings)| spellings.split(' ').any(matches))
        .map(|&(canonical, _)| canonical)
}

/// `<tool>PASS` in one word, for the tools of [`PASS_PREFIXES`].
fn tool_pass(word: &[u8]) -> bool {
    word.len() > 4
        && spells(&word[word.len() - 4..], b"PASS")
        && PASS_PREFIXES
            .iter()
            .any(|p| word[..word.len() - 4].eq_ignore_ascii_case(p.as_bytes()))
}

/// The credential keyword among the name's words, if any.
fn keyword_in(name: &[u8]) -> Option<&'static str> {
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
            || contains_spelled(t, "PASSWORD")
            || contains_spelled(t, "PASSWD")
            || tool_pass(t)
        {
            return Some("PASSWORD");
        }
        if next.is_none() && t.eq_ignore_ascii_case(b"AUTH") {
            return Some("AUTH");
        }
    }
    None
}

/// Judges the name: a keyword makes the value a credential, unless the value is a boolean, an
/// absolute path, or what the name's last word says it is.
pub(super) fn name_reason(name: &[u8], value: &str) -> Option<Reason> {
    if BOOLEANS.iter().any(|b| value.eq_ignore_ascii_case(b)) || absolute_path(value) {
        return None;
    }
    let last = tokens(name).last()?;
    let promise = EXEMPT_LAST
        .iter()
        .find(|(word, _)| last.eq_ignore_ascii_case(word.as_bytes()))
        .map(|&(_, promise)| promise);
    let keyword = keyword_in(name)?;
    match promise {
        None => Some(Reason::Name(keyword)),
        Some(p) if p.kept_by(value) => None,
        Some(p) => Some(Reason::NotWhatTheNameSays {
            keyword,
            expected: p.describe(),
        }),
    }
}

/// The keyword of a name judged alone (no value to look at): none when the last word makes it
/// a reference or a setting, since only the value could say otherwise.
pub(super) fn name_only(name: &[u8]) -> Option<&'static str> {
    let last = tokens(name).last()?;
    if EXEMPT_LAST
        .iter()
        .any(|(word, _)| last.eq_ignore_ascii_case(word.as_bytes()))
    {
        return None;
    }
    keyword_in(name)
}

/// The variable without a last word `_FILE` (`DB_PASSWORD_FILE` → `DB_PASSWORD`): such a
/// variable already follows the `_FILE` convention, and the fix is its value, not a new name.
pub fn without_file_suffix(name: &str) -> Option<&str> {
    let cut = name.len().checked_sub(5)?;
    let (stem, suffix) = (name.get(..cut)?, name.get(cut..)?);
    (!stem.is_empty() && suffix.eq_ignore_ascii_case("_FILE")).then_some(stem)
}

//! Rules on the value alone: known credential formats, URLs and connection strings with a
//! password, and strings too random to be configuration.

use std::ops::RangeInclusive;

use base64::Engine;

use super::{alnum, base64url, contains_ci, only_var_refs, ValueKind};

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

/// The credential format `v` has, if any. `name` only matters for the AWS secret key, which
/// has no prefix of its own.
pub(super) fn value_kind(name: &[u8], v: &str) -> Option<ValueKind> {
    if let Some(kind) = format_kind(name, v) {
        return Some(kind);
    }
    let b = v.as_bytes();
    if high_entropy(b) {
        // Base64 of text is configuration encoded for transport; what it holds is judged.
        return match base64_text(b) {
            Some(text) => format_kind(name, &text),
            None => Some(ValueKind::HighEntropy),
        };
    }
    punctuated_random(b).then_some(ValueKind::HighEntropy)
}

/// The rules that recognise a credential by its shape.
fn format_kind(name: &[u8], v: &str) -> Option<ValueKind> {
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

/// Query parameters that carry a credential in a URL or a JDBC/MongoDB connection string.
const QUERY_SECRETS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "pass",
    "secret",
    "client_secret",
    "token",
    "access_token",
    "api_key",
    "apikey",
];

/// Any `scheme://user:password@host`, or a `password=`-like query parameter, in the value,
/// unless the password is a `$(VAR)` reference.
fn url_password(v: &str) -> bool {
    let literal = |p: &str| !p.is_empty() && !only_var_refs(p);
    let mut rest = v;
    while let Some(i) = rest.find("://") {
        rest = &rest[i + 3..];
        let authority = rest.find(['/', '?', '#']).map_or(rest, |end| &rest[..end]);
        let userinfo = authority.rfind('@').map_or("", |at| &authority[..at]);
        if userinfo.split_once(':').is_some_and(|(_, p)| literal(p)) {
            return true;
        }
        let Some(query) = rest.split_once('?').map(|(_, q)| q) else {
            continue;
        };
        let query = query.split_once('#').map_or(query, |(q, _)| q);
        let secret_param = query.split(['&', ';']).any(|pair| {
            pair.split_once('=').is_some_and(|(key, value)| {
                QUERY_SECRETS.iter().any(|k| key.eq_ignore_ascii_case(k)) && literal(value)
            })
        });
        if secret_param {
            return true;
        }
    }
    false
}

/// Shannon entropy in bits per byte.
fn entropy(b: &[u8]) -> f64 {
    let mut counts = [0u16; 256];
    for &c in b {
        counts[usize::from(c)] = counts[usize::from(c)].saturating_add(1);
    }
    let n = b.len() as f64;
    let p = counts.iter().filter(|&&k| k > 0).map(|&k| f64::from(k) / n);
    p.map(|p| -p * p.log2()).sum()
}

/// 24+ characters of the base64/token alphabet, letters and digits, not hex, ≥ 4.2 bits/char.
fn high_entropy(b: &[u8]) -> bool {
    if !(24..=4096).contains(&b.len()) || b[0] == b'/' {
        return false;
    }
    let (mut letter, mut digit, mut all_hex) = (false, false, true);
    for &c in b {
        if !(alnum(c) || b"+/=_.~-".contains(&c)) {
            return false;
        }
        letter |= c.is_ascii_alphabetic();
        digit |= c.is_ascii_digit();
        all_hex &= c.is_ascii_hexdigit();
    }
    letter && digit && !all_hex && entropy(b) >= 4.2
}

/// The longest base64 value decoded to check whether it is text; longer blobs are files
/// (certificates, kubeconfigs) and stay judged as random.
const BASE64_TEXT_MAX: usize = 512;

/// The text a base64 value encodes, when it encodes text (UTF-8 without control characters
/// other than line breaks and tabs); random bytes practically never do.
fn base64_text(b: &[u8]) -> Option<String> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    if b.len() > BASE64_TEXT_MAX {
        return None;
    }
    let bytes = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(b).ok())?;
    let text = String::from_utf8(bytes).ok()?;
    let readable = text
        .chars()
        .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'));
    readable.then_some(text)
}

/// Symbols that separate nothing in configuration but are common in generated passwords.
const PASSWORD_SYMBOLS: &[u8] = b"!\"#$%&'()*+;<>?@[\\]^`{|}~";

/// A generated password with punctuation: 16-256 printable characters without spaces, with
/// upper and lower case letters, digits and a symbol, ≥ 3.5 bits/char, and letters and
/// digits mixed character by character (at least every other one changes class), which is
/// what words, versions, hosts and key=value settings are not. URLs and paths are left to
/// their own rules.
fn punctuated_random(b: &[u8]) -> bool {
    if !(16..=256).contains(&b.len())
        || !b.iter().all(u8::is_ascii_graphic)
        || b"/.~-".contains(&b[0])
        || b.windows(3).any(|w| w == b"://")
        || !b.iter().any(|c| PASSWORD_SYMBOLS.contains(c))
        || !b.iter().any(u8::is_ascii_uppercase)
        || !b.iter().any(u8::is_ascii_lowercase)
        || !b.iter().any(u8::is_ascii_digit)
    {
        return false;
    }
    let class = |c: u8| match c {
        b'a'..=b'z' => 1u8,
        b'A'..=b'Z' => 2,
        _ => 3,
    };
    let (mut count, mut changes, mut previous) = (0usize, 0usize, 0u8);
    for &c in b.iter().filter(|&&c| alnum(c)) {
        let k = class(c);
        if count > 0 && k != previous {
            changes += 1;
        }
        previous = k;
        count += 1;
    }
    changes * 2 >= count.saturating_sub(1) && entropy(b) >= 3.5
}

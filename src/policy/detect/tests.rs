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
    let aws_secret_under = |name| literal_credential(name, aws) == Some(Value(AwsSecretAccessKey));
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

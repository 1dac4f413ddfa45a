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

/// Values that must never be flagged: each under the name it usually goes by (some with a
/// credential keyword and a suffix that says what the value is) and under a neutral name.
/// Decided: base64 that decodes to ordinary text is not a credential (it is configuration
/// encoded for transport); base64 of a private key is, through what it decodes to.
#[rustfmt::skip]
const BENIGN: &[(&str, &str)] = &[
    // URLs without credentials
    ("UPSTREAM_URL", "https://example.com:8443/api/v1?Query=1&x=Y2#frag"),
    ("DATABASE_URL", "postgres://app@db.shop.svc:5432/app?sslmode=require"),
    ("JDBC_URL", "jdbc:mysql://127.0.0.1:3306/app?useSSL=true&serverTimezone=UTC"),
    ("REDIS_URL", "redis://cache:6379/0"),
    ("PASSWORD_RESET_URL", "https://shop.example.com/account/reset?token="),
    ("AUTH_URL", "/oauth2/authorize"),
    ("OIDC_TOKEN_ENDPOINT", "https://login.example.com/realms/Shop-Prod/protocol/openid-connect/token"),
    ("BUCKET", "s3://My-Bucket-2024/Path/To/Object"),
    ("ROLE_ARN", "arn:aws:iam::123456789012:role/Shop-Prod-Role"),
    // UUIDs, ids, digests
    ("REQUEST_ID", "123e4567-e89b-12d3-a456-426614174000"),
    ("TENANT_ID", "123E4567-E89B-12D3-A456-426614174000"),
    ("SECRET_KEY_ID", "4a3f9c2e1b0d8e7f"),
    ("GIT_SHA", "3f786850e387550fdab836ed7e6dc881de23001b"),
    ("DIGEST", "sha256:0d17b565c37bcbd895e9d92315a05c1c3c9a29f762b011a10c54a66cd53c9b31"),
    // paths
    ("DB_PASSWORD_FILE", "/etc/app/db-password.txt"),
    ("TLS_PRIVATE_KEY_PATH", "./certs/Server_Key-2024.pem"),
    ("API_TOKEN_FILE", "api-token.txt"),
    ("GOOGLE_APPLICATION_CREDENTIALS", "/var/secrets/google/key.json"),
    ("SSH_PRIVATE_KEY_DIR", "~/.ssh"),
    ("KUBECONFIG", "/home/app/.kube/config"),
    ("CONFIG_DIR", "C:\\ProgramData\\App"),
    // image references
    ("IMAGE", "registry.example.com/team/app:1.2.3"),
    ("SIDECAR_IMAGE", "ghcr.io/Example-Org/Proxy:V1.2.3"),
    ("BASE_IMAGE", "docker.io/library/nginx@sha256:0d17b565c37bcbd895e9d92315a05c1c3c9a29f762b011a10c54a66cd53c9b31"),
    ("EXPORTER_IMAGE", "quay.io/prometheus/node-exporter:v1.8.2"),
    // hosts and addresses
    ("DB_PASSWORD_HOST", "db.shop.svc.cluster.local"),
    ("NODE_NAME", "ip-10-0-1-23.eu-west-1.compute.internal"),
    ("LISTEN", "[::1]:8443"),
    ("SMTP_PASSWORD_PORT", "587"),
    // durations, dates, versions
    ("TOKEN_TTL", "1h30m"),
    ("SESSION_TOKEN_TIMEOUT", "PT30M"),
    ("CERT_EXPIRY", "2026-11-29T13:25:30Z"),
    ("PASSWORD_MIN_LENGTH", "12"),
    ("VERSION", "1.2.3-rc.1+build.5"),
    ("APP_VERSION", "v2.0.0-beta.3"),
    ("RELEASE", "Release-2024.11.29-RC1"),
    // base64 of short text
    ("GREETING", "aGVsbG8gd29ybGQ="),
    ("BANNER", "V2VsY29tZSB0byB0aGUgc2hvcA=="),
    ("SETTINGS_B64", "eyJsZXZlbCI6ImluZm8iLCJmb3JtYXQiOiJqc29uIn0="),
    // structured settings with punctuation
    ("EMAIL", "alerts@mail.example.com"),
    ("LANG", "en_US.UTF-8"),
    ("TZ", "America/Argentina/Buenos_Aires"),
    ("JAVA_OPTS", "-Dspring.profiles.active=Prod,EU"),
    ("SELECTOR", "app=web,tier!=db"),
    ("TEMPLATE", "{{.ID}}\t{{.Name}}"),
    ("LOG_CONFIG", "{\"level\":\"info\",\"format\":\"json\"}"),
    ("FEATURES", "checkout-v2=On;search=Off;Beta_Users=12%"),
    ("BUILD", "ProjectX@v2.3.1#Build42"),
    ("TITLE", "MyApp(Production)#42"),
    ("SUBJECT", "CN=Web-Prod-01,OU=Shop,DC=example,DC=com"),
    ("LOG_PATTERN", "%d{ISO8601} [%thread] %-5level %logger{36} - %msg%n"),
    ("METHODS", "GET,POST,PUT,DELETE"),
    ("PASSWORD_POLICY", "min=12,upper=1,digit=1"),
    ("TOKEN_HEADER", "X-Auth-Token"),
    ("SECRET_NAME", "db-credentials"),
    ("REQUIRE_PASSWORD", "true"),
    ("BYPASS", "cache"),
    ("COMPASS_HEADING", "north"),
    ("S3_BUCKET", "shop-assets"),
];

#[test]
fn benign_values_are_not_flagged_under_any_name() {
    let mut flagged = Vec::new();
    for &(name, value) in BENIGN {
        for name in [name, "X"] {
            if let Some(reason) = literal_credential(name, value) {
                flagged.push(format!("{name}={value}: {reason:?}"));
            }
        }
    }
    assert!(flagged.is_empty(), "{flagged:#?}");
}

/// Credentials that must be flagged, whatever the name.
#[rustfmt::skip]
const CREDENTIALS: &[(&str, &str)] = &[
    // one-word and leetspeak names
    ("PGPASS", "hunter2"),
    ("MYSQLPASS", "hunter2"),
    ("STOREPASS", "changeit"),
    ("DB_PASSW0RD", "hunter2"),
    ("P4SSWORD", "hunter2"),
    ("S3CRET", "hunter2"),
    ("APP_S3CR3T_K3Y", "hunter2"),
    ("API_T0KEN", "hunter2"),
    ("CR3DENTIALS", "hunter2"),
    // high entropy with punctuation
    ("NOISE", "p@ssW0rd!Xk92&mQ7zL$vB4"),
    ("VALUE", "Kx9vQ2mZ!7pL4wR8tY1nB6cJ3#"),
    ("X", "hG7#kL9$mN2@pQ5!"),
    ("X", "9s$Lq2^Vb7&Zk1*Wm4"),
    ("X", "Tr0ub4dor&3xYz!Q"),
    // names whose suffix is exempt, with values judged
    ("DATABASE_URL", "postgres://app:hunter2@db:5432/app"),
    ("JDBC_URL", "jdbc:postgresql://db/app?user=app&password=hunter2"),
    ("MONGO_URL", "mongodb://db/app?authSource=admin&Password=hunter2"),
    ("ACCESS_ID", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ("SERVICE_ID", "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY"),
    ("DB_PASSWORD_FILE", "hunter2"),
    ("API_TOKEN_PATH", "s3cr3t-t0ken"),
    ("ADMIN_PASSWORD_URL", "hunter2"),
    ("SECRET_KEY_DIR", "changeme"),
    ("SMTP_PASSWORD_PORT", "hunter2"),
    ("SESSION_SECRET_TIMEOUT", "Summer2024"),
    // base64 of a private key is judged by what it holds
    ("SIGNING", "LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVktLS0tLQpGQUtFRkFLRUZBS0Vub3RBUmVhbEtleQotLS0tLUVORCBSU0EgUFJJVkFURSBLRVktLS0tLQo="),
];

#[test]
fn credentials_are_flagged_under_any_name() {
    let missed: Vec<_> = CREDENTIALS
        .iter()
        .filter(|(name, value)| literal_credential(name, value).is_none())
        .collect();
    assert!(missed.is_empty(), "{missed:#?}");
}

#[test]
fn each_new_rule_gives_its_reason() {
    #[rustfmt::skip]
    let cases = [
        ("PGPASS", "hunter2", Name("PASSWORD")),
        ("DB_PASSW0RD", "hunter2", Name("PASSWORD")),
        ("S3CRET", "hunter2", Name("SECRET")),
        ("API_T0KEN", "hunter2", Name("TOKEN")),
        ("X", "p@ssW0rd!Xk92&mQ7zL$vB4", Value(HighEntropy)),
        ("JDBC_URL", "jdbc:postgresql://db/app?user=app&password=hunter2", Value(UrlPassword)),
        ("DB_PASSWORD_FILE", "hunter2", Reason::NotWhatTheNameSays { keyword: "PASSWORD", expected: "a path" }),
        ("ADMIN_PASSWORD_URL", "hunter2", Reason::NotWhatTheNameSays { keyword: "PASSWORD", expected: "a URL" }),
        ("SMTP_PASSWORD_PORT", "hunter2", Reason::NotWhatTheNameSays { keyword: "PASSWORD", expected: "a number or a duration" }),
        ("X", "LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVktLS0tLQpGQUtFRkFLRUZBS0Vub3RBUmVhbEtleQotLS0tLUVORCBSU0EgUFJJVkFURSBLRVktLS0tLQo=", Value(PemPrivateKey)),
    ];
    for (name, value, want) in cases {
        assert_eq!(
            literal_credential(name, value),
            Some(want),
            "{name}={value}"
        );
    }
    assert_eq!(
        Reason::NotWhatTheNameSays {
            keyword: "PASSWORD",
            expected: "a path"
        }
        .describe(),
        "name contains \"PASSWORD\" and its value is not a path"
    );
}

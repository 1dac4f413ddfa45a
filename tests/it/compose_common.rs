//! Running `runsecrets compose convert` and `scan` on the corpus in tests/compose.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

/// Every secret value in the corpus (files, env values, literals): no output may hold one.
pub const VALUES: &[&str] = &[
    "Wp-Db-Value-1101",
    "Wp-Root-Value-1102",
    "Pg-Super-Value-2201",
    "Pgadmin-Login-Value-2202",
    "Tls-Cert-Value-3301",
    "Tls-Key-Value-3302",
    "Tls-Dh-Value-3303",
    "Api-Key-Value-4401",
    "Api-Key-Prod-Value-4402",
    "Worker-Queue-Value-5501",
    "Dotenv-Db-Value-6601",
    "Oauth-Env-Value-7601",
    "Debug-Value-7701",
    "sk_live_51HqLiteralValue8801xyzABCDEF",
    "Literal-Root-Value-8802",
    "Url-Pass-Value-8803",
    "Shell-Session-Value-8804",
    "Shared-Token-Value-9901",
    "Included-Value-9911",
    "Bad-Yaml-Value-1001",
    "Fail-Mode-Value-1011",
    "Env-A-Value-1",
    "Env-B-Value-2",
    "Stack-Jwt-Value-1201",
    "Ns-Shared-Value-1301",
    "Stack-Npm-Value-1202",
];

pub fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/compose")
}

use crate::common::binary;

/// A run of the binary, checked against the corpus' values.
pub struct Run(pub binary::Run);

impl std::ops::Deref for Run {
    type Target = binary::Run;
    fn deref(&self) -> &binary::Run {
        &self.0
    }
}

impl Run {
    #[track_caller]
    pub fn assert_no_values(&self) {
        self.0.assert_no_values(VALUES);
    }
}

/// A fresh keyring and its public-key file (what `--key` takes).
pub struct Keys {
    pub dir: tempfile::TempDir,
    pub keyring: runsecrets::seal::Keyring,
}

impl Keys {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let keyring = runsecrets::seal::Keyring::generate();
        let public = keyring.public_keys().expect("public keys");
        std::fs::write(
            dir.path().join("keys.json"),
            serde_json::to_string(&public).expect("json"),
        )
        .expect("key file written");
        Self { dir, keyring }
    }

    pub fn file(&self) -> PathBuf {
        self.dir.path().join("keys.json")
    }
}

/// Runs the binary in `dir` with only `env` in its environment.
pub fn run_in(dir: &Path, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Run {
    Run(binary::run_in(dir, args, env, stdin))
}

/// `compose convert` in a corpus project with the test keys.
pub fn convert(project: &str, args: &[&str], env: &[(&str, &str)], keys: &Keys) -> Run {
    let key = keys.file();
    let mut all = vec![
        "compose",
        "convert",
        "--key",
        key.to_str().expect("utf-8 path"),
    ];
    all.extend_from_slice(args);
    run_in(&corpus().join(project), &all, env, None)
}

/// The output with what sealing randomises (ciphertext, digest) and the key id masked.
pub fn mask(text: &str) -> String {
    text.lines()
        .map(|l| {
            let trimmed = l.trim_start();
            let indent = &l[..l.len() - trimmed.len()];
            for key in ["ciphertext:", "digest:", "keyId:"] {
                if trimmed.starts_with(key) {
                    return format!("{indent}{key} <masked>");
                }
            }
            l.to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// Compares with `tests/compose/<name>` (rewritten when UPDATE_GOLDEN is set).
#[track_caller]
pub fn golden(name: &str, actual: &str) {
    let path = corpus().join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).expect("golden written");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", path.display()));
    assert_eq!(actual, expected, "output differs from {}", path.display());
}

pub fn documents(text: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).expect("valid YAML"))
        .collect()
}

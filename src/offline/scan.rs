//! `runsecrets scan`: credential findings across manifest files and directories.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::compose;
use crate::policy::{self, Level};
use crate::spec;

use super::{documents, read_input, InputError, Manifest};

/// One finding, as printed in JSON. Names only, never values.
#[derive(Debug, Serialize)]
pub struct ScanFinding {
    pub file: String,
    pub document: usize,
    pub object: String,
    pub container_kind: &'static str,
    pub container: String,
    pub variable: String,
    pub rule: &'static str,
    pub reason: String,
    /// Line in `file`, where the input has lines to point at (Compose files, env files).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// How to fix it, when the input is not a manifest the webhook's denial explains.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl ScanFinding {
    /// `file:doc N: Pod "ns/x": container "app" env DB_PASSWORD: name contains "PASSWORD"`.
    pub fn line(&self) -> String {
        if let Some(line) = self.line {
            return format!(
                "{}:{line}: {}: {} {}: {} [{}]{}",
                self.file,
                self.object,
                self.container_kind,
                self.variable,
                self.reason,
                self.rule,
                self.fix
                    .as_ref()
                    .map(|f| format!("; fix: {f}"))
                    .unwrap_or_default()
            );
        }
        format!(
            "{}: document {}: {}: {} {:?} env {}: {} [{}]",
            self.file,
            self.document,
            self.object,
            self.container_kind,
            self.container,
            self.variable,
            self.reason,
            self.rule
        )
    }
}

/// Everything a scan found; unreadable inputs are reported, not fatal.
#[derive(Debug, Default)]
pub struct ScanOutput {
    pub findings: Vec<ScanFinding>,
    pub errors: Vec<String>,
}

/// Scans files and directories (recursively: `.yaml`, `.yml`, `.json`) at `level`.
pub fn scan(paths: &[PathBuf], level: Level) -> ScanOutput {
    let mut out = ScanOutput::default();
    let mut files = Vec::new();
    for path in paths {
        collect(path, &mut files, &mut out.errors);
    }
    for file in files {
        let name = file.display().to_string();
        let text = match read_input(&file) {
            Ok(text) => text,
            Err(e) => {
                out.errors.push(e.to_string());
                continue;
            }
        };
        if compose::scan::is_compose_name(&file) || compose::scan::looks_like_compose(&text) {
            if level != Level::Off {
                scan_compose(&file, &text, &mut out);
            }
            continue;
        }
        match documents(&name, &text) {
            Ok(docs) => {
                for doc in docs {
                    scan_document(&name, doc.index, doc.value, level, &mut out);
                }
            }
            Err(e) => out.errors.push(e.to_string()),
        }
    }
    out
}

/// A Compose file: its environment, env files and build args (literal credentials are
/// baseline findings, so nothing is reported at `off`).
fn scan_compose(file: &Path, text: &str, out: &mut ScanOutput) {
    match compose::scan::scan_file(file, text) {
        Ok(found) => out.findings.extend(found.into_iter().map(|f| ScanFinding {
            file: f.file,
            document: 1,
            object: format!("Compose service {:?}", f.service),
            container_kind: f.place,
            container: f.service,
            variable: f.variable,
            rule: f.rule,
            reason: f.reason,
            line: Some(f.line),
            fix: Some(f.fix),
        })),
        Err(e) => out.errors.push(e),
    }
}

fn collect(path: &Path, files: &mut Vec<PathBuf>, errors: &mut Vec<String>) {
    if path == Path::new("-") || path.is_file() {
        files.push(path.to_path_buf());
        return;
    }
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(source) => {
            let e = InputError::Read {
                path: path.display().to_string(),
                source,
            };
            errors.push(e.to_string());
            return;
        }
    };
    let mut children: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    children.sort();
    for child in children {
        let manifest = matches!(
            child.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        );
        if child.is_dir() || manifest {
            collect(&child, files, errors);
        }
    }
}

fn scan_document(
    file: &str,
    index: usize,
    value: serde_json::Value,
    level: Level,
    out: &mut ScanOutput,
) {
    let manifest = match Manifest::read(value) {
        Ok(Some(m)) => m,
        Ok(None) => return,
        Err(e) => {
            out.errors.push(format!("{file}: document {index}: {e}"));
            return;
        }
    };
    let Some(t) = &manifest.template else {
        return;
    };
    let allowed = policy::parse_allowed(
        t.annotations
            .as_ref()
            .and_then(|a| a.get(spec::ALLOW_ENV_ANNOTATION)),
    );
    let (found, _exempted) = policy::check_spec(&t.spec, level, &allowed);
    for f in found {
        let reason = match &f.rule {
            policy::Rule::Literal(r) => r.describe(),
            policy::Rule::SecretKeyRef { secret } => {
                format!("from Secret {secret:?} (secretKeyRef)")
            }
            policy::Rule::EnvFromSecret { secret } => format!("envFrom Secret {secret:?}"),
        };
        out.findings.push(ScanFinding {
            file: file.to_string(),
            document: index,
            object: manifest.describe(),
            container_kind: f.kind.as_str(),
            container: f.container,
            variable: f.variable,
            rule: f.rule.id(),
            reason,
            line: None,
            fix: None,
        });
    }
}

//! `runsecrets scan`: credential findings across manifest files and directories.

use std::path::{Path, PathBuf};

use serde::Serialize;

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
}

impl ScanFinding {
    /// `file:doc N: Pod "ns/x": container "app" env DB_PASSWORD: name contains "PASSWORD"`.
    pub fn line(&self) -> String {
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
        match read_input(&file).and_then(|text| documents(&name, &text)) {
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
        });
    }
}

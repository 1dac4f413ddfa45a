//! `runsecrets scan`: credential findings across manifest files, Dockerfiles, Compose files and
//! directories.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::compose;
use crate::error::Chain;
use crate::policy::{self, Level};
use crate::spec;

use super::{dockerfile, documents, read_input, InputError, Manifest};

/// One finding, as printed in JSON. Names only, never values.
#[derive(Debug, Serialize)]
pub struct ScanFinding {
    pub file: String,
    /// Where in the file, in the terms of its kind.
    #[serde(flatten)]
    pub place: Place,
    pub variable: String,
    pub rule: &'static str,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// Where a finding is, by file kind; its fields are flattened into the finding's JSON.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Place {
    /// A container's env in a Kubernetes object.
    Manifest {
        document: usize,
        object: String,
        container_kind: &'static str,
        container: String,
    },
    /// An ENV or ARG instruction; `stage` is the `AS` name or the index, null before the
    /// first FROM.
    Dockerfile {
        line: usize,
        stage: Option<String>,
        instruction: String,
    },
    /// A service's `environment`, `env_file` or `build.args` entry in a Compose project (the
    /// file is the Compose file or the env file the value is written in).
    Compose {
        line: usize,
        service: String,
        key: &'static str,
    },
}

impl ScanFinding {
    /// `file: document N: Pod "ns/x": container "app" env DB_PASSWORD: name contains "PASSWORD"`
    /// or `Dockerfile:7: stage "build": ARG NPM_TOKEN: … [name]; fix: …`
    /// or `compose.yaml:5: Compose service "db": environment DB_PASSWORD: … [name]; fix: …`.
    pub fn line(&self) -> String {
        let at = match &self.place {
            Place::Manifest {
                document,
                object,
                container_kind,
                container,
            } => format!(
                "{}: document {document}: {object}: {container_kind} {container:?} env {}",
                self.file, self.variable
            ),
            Place::Dockerfile {
                line,
                stage,
                instruction,
            } => {
                // Stage names start with a letter; a number is an unnamed stage's index.
                let stage = match stage {
                    Some(s) if s.bytes().all(|b| b.is_ascii_digit()) => format!("stage {s}"),
                    Some(s) => format!("stage {s:?}"),
                    None => "before the first FROM".into(),
                };
                format!(
                    "{}:{line}: {stage}: {instruction} {}",
                    self.file, self.variable
                )
            }
            Place::Compose { line, service, key } => format!(
                "{}:{line}: Compose service {service:?}: {key} {}",
                self.file, self.variable
            ),
        };
        let fix = self
            .fix
            .as_ref()
            .map(|f| format!("; fix: {f}"))
            .unwrap_or_default();
        format!("{at}: {} [{}]{fix}", self.reason, self.rule)
    }
}

/// Everything a scan found; unreadable inputs are reported, not fatal.
#[derive(Debug, Default)]
pub struct ScanOutput {
    pub findings: Vec<ScanFinding>,
    pub errors: Vec<String>,
}

/// What a file is read as, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// Kubernetes objects in YAML or JSON.
    Manifest,
    /// `Dockerfile`, `*.Dockerfile`, `Dockerfile.*`, `Containerfile` (and the same with
    /// `Containerfile`), any case; `*.dockerignore` is not one.
    Dockerfile,
    /// `compose.yaml`, `docker-compose.yml`, `compose.prod.yaml`… by name; other YAML files
    /// are read as Compose when their content is a Compose project.
    Compose,
}

impl FileKind {
    /// None for names a directory walk passes over.
    pub fn of(path: &Path) -> Option<Self> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        let stems = ["dockerfile", "containerfile"];
        let dockerfile = !name.ends_with(".dockerignore")
            && stems.iter().any(|stem| {
                name == *stem
                    || name.starts_with(&format!("{stem}."))
                    || name.ends_with(&format!(".{stem}"))
            });
        if dockerfile {
            return Some(Self::Dockerfile);
        }
        if compose::scan::is_compose_name(path) {
            return Some(Self::Compose);
        }
        let manifest = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        );
        manifest.then_some(Self::Manifest)
    }
}

/// Scans files and directories (recursively: manifests and Dockerfiles) at `level`. A file
/// named on the command line is read as manifests unless its name says Dockerfile.
pub fn scan(paths: &[PathBuf], level: Level) -> ScanOutput {
    let mut out = ScanOutput::default();
    let mut files = Vec::new();
    for path in paths {
        collect(path, &mut files, &mut out.errors);
    }
    for (file, kind) in files {
        let name = file.display().to_string();
        let text = match read_input(&file) {
            Ok(text) => text,
            Err(e) => {
                out.errors.push(Chain(&e).to_string());
                continue;
            }
        };
        let kind = match kind {
            FileKind::Manifest if compose::scan::looks_like_compose(&text) => FileKind::Compose,
            kind => kind,
        };
        match kind {
            FileKind::Manifest => scan_manifests(&name, &text, level, &mut out),
            FileKind::Dockerfile => scan_dockerfile(&name, &text, level, &mut out),
            FileKind::Compose => scan_compose(&file, &text, level, &mut out),
        }
    }
    out
}

fn collect(path: &Path, files: &mut Vec<(PathBuf, FileKind)>, errors: &mut Vec<String>) {
    if path == Path::new("-") || path.is_file() {
        let kind = FileKind::of(path).unwrap_or(FileKind::Manifest);
        files.push((path.to_path_buf(), kind));
        return;
    }
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(source) => {
            let e = InputError::Read {
                path: path.display().to_string(),
                source,
            };
            errors.push(Chain(&e).to_string());
            return;
        }
    };
    let mut children: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    children.sort();
    for child in children {
        if child.is_dir() {
            collect(&child, files, errors);
        } else if let Some(kind) = FileKind::of(&child) {
            files.push((child, kind));
        }
    }
}

fn scan_manifests(file: &str, text: &str, level: Level, out: &mut ScanOutput) {
    match documents(file, text) {
        Ok(docs) => {
            for doc in docs {
                scan_document(file, doc.index, doc.value, level, out);
            }
        }
        Err(e) => out.errors.push(Chain(&e).to_string()),
    }
}

/// Dockerfile findings are literal credentials: reported from `baseline` on.
fn scan_dockerfile(file: &str, text: &str, level: Level, out: &mut ScanOutput) {
    if level < Level::Baseline {
        return;
    }
    for f in dockerfile::findings(text) {
        let id = policy::suggested_name(&f.variable);
        let var = &f.variable;
        let mut fix = format!(
            "build with --secret id={id} and use RUN --mount=type=secret,id={id},env={var} \
             instead of {}",
            f.instruction
        );
        if f.instruction.ends_with("ENV") {
            fix.push_str(&format!(
                "; at run time, deliver it as a file: {var}_FILE=/run/secrets/{id}"
            ));
        }
        out.findings.push(ScanFinding {
            file: file.to_string(),
            place: Place::Dockerfile {
                line: f.line,
                stage: f.stage.map(|s| s.label()),
                instruction: f.instruction,
            },
            variable: f.variable,
            rule: f.reason.rule(),
            reason: f.reason.describe(),
            fix: Some(fix),
        });
    }
}

/// A Compose file: its environment, env files and build args (literal credentials are
/// baseline findings, so nothing is reported at `off`).
fn scan_compose(file: &Path, text: &str, level: Level, out: &mut ScanOutput) {
    if level < Level::Baseline {
        return;
    }
    let found = compose::scan::scan_file(file, text);
    out.findings
        .extend(found.findings.into_iter().map(|f| ScanFinding {
            file: f.file,
            place: Place::Compose {
                line: f.line,
                service: f.service,
                key: f.place,
            },
            variable: f.variable,
            rule: f.rule,
            reason: f.reason,
            fix: Some(f.fix),
        }));
    out.errors.extend(found.errors);
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
            place: Place::Manifest {
                document: index,
                object: manifest.describe(),
                container_kind: f.kind.as_str(),
                container: f.container,
            },
            variable: f.variable,
            rule: f.rule.id(),
            reason,
            fix: None,
        });
    }
}

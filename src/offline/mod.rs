//! The webhook's decisions on manifests, without a cluster: `runsecrets review` and
//! `runsecrets scan` (which also reads Dockerfiles), for laptops and CI.

pub mod args;
pub mod dockerfile;
mod review;
mod scan;

pub use review::{review, ReviewOutput};
pub use scan::{scan, FileKind, Place, ScanFinding, ScanOutput};

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use serde::Deserialize;
use serde_json::Value;

use crate::admission::workload::{self, Template};

/// `runsecrets review FILE`: the mutated objects on standard output, or each denial on standard
/// error and exit 1.
pub fn run_review(args: &args::ReviewArgs) -> Result<ExitCode, InputError> {
    let name = args.file.display().to_string();
    let text = read_input(&args.file)?;
    match review(&name, &text, args.level)? {
        ReviewOutput::Mutated(yaml) => {
            print!("{yaml}");
            Ok(ExitCode::SUCCESS)
        }
        ReviewOutput::Denied(lines) => {
            for line in lines {
                eprintln!("denied: {line}");
            }
            Ok(ExitCode::from(1))
        }
    }
}

/// `runsecrets scan PATH…`: the findings on standard output; exit 1 on findings, 2 when an
/// input could not be read.
pub fn run_scan(args: &args::ScanArgs) -> ExitCode {
    let out = scan(&args.paths, args.level);
    match args.format {
        OutputFormat::Text => {
            for f in &out.findings {
                println!("{}", f.line());
            }
        }
        OutputFormat::Json => match serde_json::to_string_pretty(&out.findings) {
            Ok(json) => println!("{json}"),
            Err(e) => eprintln!("runsecrets: printing findings: {e}"),
        },
    }
    for e in &out.errors {
        eprintln!("runsecrets: {e}");
    }
    if !out.errors.is_empty() {
        ExitCode::from(2)
    } else if !out.findings.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// How `scan` prints findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

/// Input that could not be read as manifests.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("reading {path}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: document {index} is not valid YAML/JSON: {reason}")]
    Parse {
        path: String,
        index: usize,
        reason: String,
    },
}

/// One document of a manifest file.
pub struct Document {
    /// 1-based position in its file.
    pub index: usize,
    pub value: Value,
}

/// Reads a file (`-` for stdin) as text.
pub fn read_input(path: &Path) -> Result<String, InputError> {
    let name = path.display().to_string();
    let err = |source| InputError::Read {
        path: name.clone(),
        source,
    };
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map_err(err)?;
        Ok(text)
    } else {
        std::fs::read_to_string(path).map_err(err)
    }
}

/// Splits multi-document YAML (JSON is YAML too) into documents; `kind: List` is expanded
/// into its items, empty documents are skipped.
pub fn documents(path: &str, text: &str) -> Result<Vec<Document>, InputError> {
    let mut out = Vec::new();
    for (i, doc) in serde_norway::Deserializer::from_str(text).enumerate() {
        let index = i + 1;
        // The YAML error text is not shown: it can quote the document's content.
        let value = Value::deserialize(doc).map_err(|e| InputError::Parse {
            path: path.to_string(),
            index,
            reason: e
                .location()
                .map(|l| format!("unreadable at line {} column {}", l.line(), l.column()))
                .unwrap_or_else(|| "unreadable document".into()),
        })?;
        match value {
            Value::Null => {}
            Value::Object(ref map) if map.get("kind") == Some(&Value::from("List")) => {
                let items = map.get("items").and_then(Value::as_array).cloned();
                out.extend(
                    items
                        .into_iter()
                        .flatten()
                        .map(|value| Document { index, value }),
                );
            }
            value => out.push(Document { index, value }),
        }
    }
    Ok(out)
}

/// A document read as a Kubernetes object, with its pod template when its kind has one.
pub struct Manifest {
    pub kind: String,
    pub meta: workload::Meta,
    pub template: Option<Template>,
}

impl Manifest {
    /// Reads a document; `Ok(None)` for kinds without a pod template.
    pub fn read(value: Value) -> Result<Option<Self>, String> {
        let api_version = value
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let group = api_version
            .split_once('/')
            .map(|(g, _)| g)
            .unwrap_or_default()
            .to_string();
        let kind = value
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let object = workload::read_object(&group, &kind, value).map_err(|e| e.to_string())?;
        Ok(object.map(|o| Self {
            kind,
            meta: o.meta,
            template: o.template,
        }))
    }

    /// `Deployment "shop/mysql"`, as the webhook names objects.
    pub fn describe(&self) -> String {
        let name = self.meta.name.as_deref().unwrap_or("");
        match &self.meta.namespace {
            Some(ns) => format!("{} \"{ns}/{name}\"", self.kind),
            None => format!("{} {name:?}", self.kind),
        }
    }
}

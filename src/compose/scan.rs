//! `runsecrets scan` on Compose files: literal credentials in `environment:` (list and
//! mapping forms), in the files `env_file:` names, and in `build.args`, judged by the
//! webhook's detector. The files are read as written (no interpolation): a `${VAR}` value under
//! a credential's name still puts that credential into the container's env. Findings carry
//! the line and a fix, never the value.

use std::path::Path;
use std::sync::Arc;

use super::dotenv::{self, Lookup};
use super::error::ComposeError;
use super::merge::key_value_map;
use super::paths;
use super::service::env_file_refs;
use super::yaml::{self, Kind, Node};
use crate::error::Chain;
use crate::policy::detect::{literal_credential, Reason};

/// One credential found in a Compose project's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeFinding {
    /// The file the value is written in (the Compose file, or an env file).
    pub file: String,
    pub line: usize,
    pub service: String,
    /// `environment`, `env_file` or `build.args`.
    pub place: &'static str,
    pub variable: String,
    pub rule: &'static str,
    pub reason: String,
    pub fix: String,
}

/// A Compose file by its name: `compose.yaml`, `docker-compose.yml`, `compose.prod.yaml`,
/// `docker-compose.override.yml`, …
pub fn is_compose_name(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let yaml = name.ends_with(".yaml") || name.ends_with(".yml");
    yaml && (name.starts_with("compose.") || name.starts_with("docker-compose."))
}

/// A YAML text whose first document is a mapping with `services:` and no `apiVersion`/`kind`
/// (so never a Kubernetes manifest).
pub fn looks_like_compose(text: &str) -> bool {
    let Ok(docs) = yaml::parse(&Arc::from("-"), text) else {
        return false;
    };
    docs.first().is_some_and(|d| {
        d.get("services")
            .is_some_and(|s| matches!(s.kind, Kind::Map(_)))
            && d.get("apiVersion").is_none()
            && d.get("kind").is_none()
    })
}

fn fix_env(service: &str, variable: &str) -> String {
    let name = super::envcreds::generated_name(service, variable);
    // `X_FILE` for `X`; a variable already named `X_FILE` keeps its name.
    let (pointer, _) = crate::policy::file_fix(variable);
    format!(
        "declare a secret (secrets: {{{name}: {{file: ./{name}.txt}}}}), grant it to the service (secrets: [{name}]) and set {pointer}=/run/secrets/{name}; or run runsecrets compose convert, which does it"
    )
}

fn fix_build(variable: &str) -> String {
    let id = crate::policy::suggested_name(variable);
    format!("pass it as a build secret (build: secrets: [{id}]) and read it with RUN --mount=type=secret,id={id}")
}

/// What scanning one Compose file found, and what it could not read: a bad env file or a bad
/// `environment:` is an error for that part alone, the rest is still judged.
#[derive(Debug, Default)]
pub struct FileScan {
    pub findings: Vec<ComposeFinding>,
    /// Messages naming the file and line.
    pub errors: Vec<String>,
}

/// Scans one Compose file. Env files are read as written (no shell, no `.env`), like the
/// Compose file itself.
pub fn scan_file(path: &Path, text: &str) -> FileScan {
    let mut out = FileScan::default();
    let name = path.display().to_string();
    let mut docs = match yaml::parse(&Arc::from(name.as_str()), text) {
        Ok(docs) => docs,
        Err(e) => {
            out.errors.push(Chain(&e).to_string());
            return out;
        }
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    for doc in &mut docs {
        // env_file paths are relative to the Compose file's directory, as in convert.
        paths::resolve(doc, dir);
        let Some(services) = doc.get("services").and_then(Node::as_map) else {
            continue;
        };
        for (key, svc) in services {
            let service = key.name.as_str();
            for (place, node) in [
                ("environment", svc.get("environment")),
                ("build.args", svc.get("build").and_then(|b| b.get("args"))),
            ] {
                let Some(node) = node else { continue };
                if let Err(e) = judge(&name, service, place, node, &mut out.findings) {
                    out.errors.push(Chain(&e).to_string());
                }
            }
            let Some(files) = svc.get("env_file") else {
                continue;
            };
            let refs = match env_file_refs(files) {
                Ok(refs) => refs,
                Err(e) => {
                    out.errors.push(Chain(&e).to_string());
                    continue;
                }
            };
            for (file, required, pos) in refs {
                let file_name = file.display().to_string();
                match dotenv::read_file(&file, required, &file_name, &pos, Lookup::AsWritten) {
                    Ok(entries) => env_file_findings(
                        &file_name,
                        service,
                        entries.unwrap_or_default(),
                        &mut out.findings,
                    ),
                    Err(e) => out.errors.push(Chain(&e).to_string()),
                }
            }
        }
    }
    out
}

fn env_file_findings(
    file: &str,
    service: &str,
    entries: Vec<dotenv::Entry>,
    out: &mut Vec<ComposeFinding>,
) {
    for e in entries {
        if let Some(reason) = literal_credential(&e.name, &e.value) {
            out.push(ComposeFinding {
                file: file.to_string(),
                line: e.line,
                service: service.to_string(),
                place: "env_file",
                fix: fix_env(service, &e.name),
                reason: described(&reason, e.from_vars),
                variable: e.name,
                rule: reason.rule(),
            });
        }
    }
}

/// The detector's reason, saying so when the value is a variable's (a credential all the
/// same: it lands in the container's env).
fn described(reason: &Reason, interpolated: bool) -> String {
    if interpolated {
        format!(
            "{} (value interpolated when Compose runs)",
            reason.describe()
        )
    } else {
        reason.describe()
    }
}

fn judge(
    file: &str,
    service: &str,
    place: &'static str,
    node: &Node,
    out: &mut Vec<ComposeFinding>,
) -> Result<(), ComposeError> {
    let map = key_value_map(node.clone())?;
    for (k, v) in map.as_map().unwrap_or_default() {
        let Some(value) = v.as_str() else { continue };
        if let Some(reason) = literal_credential(&k.name, value) {
            out.push(ComposeFinding {
                file: file.to_string(),
                line: k.pos.line,
                service: service.to_string(),
                place,
                variable: k.name.clone(),
                rule: reason.rule(),
                reason: described(&reason, value.contains('$')),
                fix: if place == "build.args" {
                    fix_build(&k.name)
                } else {
                    fix_env(service, &k.name)
                },
            });
        }
    }
    Ok(())
}

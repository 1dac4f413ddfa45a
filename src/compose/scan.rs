//! `runsecrets scan` on Compose files: literal credentials in `environment:` (list and
//! mapping forms), in the files `env_file:` names, and in `build.args`, judged by the
//! webhook's detector. The file is read as written (no interpolation): a `${VAR}` value under
//! a credential's name still puts that credential into the container's env. Findings carry
//! the line and a fix, never the value.

use std::path::Path;
use std::sync::Arc;

use super::dotenv;
use super::merge::key_value_map;
use super::yaml::{self, Kind, Node};
use super::Environment;
use crate::policy::detect::literal_credential;

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

/// Scans one Compose file; `Err` holds a message with the file and line.
pub fn scan_file(path: &Path, text: &str) -> Result<Vec<ComposeFinding>, String> {
    let name = path.display().to_string();
    let docs = yaml::parse(&Arc::from(name.as_str()), text).map_err(|e| e.to_string())?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut out = Vec::new();
    for doc in &docs {
        let Some(services) = doc.get("services").and_then(Node::as_map) else {
            continue;
        };
        for (key, svc) in services {
            let service = key.name.as_str();
            if let Some(env) = svc.get("environment") {
                judge(&name, service, "environment", env, &mut out)?;
            }
            if let Some(args) = svc.get("build").and_then(|b| b.get("args")) {
                judge(&name, service, "build.args", args, &mut out)?;
            }
            if let Some(files) = svc.get("env_file") {
                let items: Vec<&Node> = match &files.kind {
                    Kind::Seq(items) => items.iter().collect(),
                    _ => vec![files],
                };
                for item in items {
                    let (Some(p), required) = (
                        item.as_str()
                            .or_else(|| item.get("path").and_then(Node::as_str)),
                        item.get("required").and_then(Node::as_str) != Some("false"),
                    ) else {
                        continue;
                    };
                    let file = dir.join(p);
                    let text = match std::fs::read_to_string(&file) {
                        Ok(t) => t,
                        Err(_) if !required => continue,
                        Err(e) => {
                            return Err(format!("{}: env_file {}: {e}", item.pos, file.display()))
                        }
                    };
                    let entries = dotenv::parse(&text, &Environment::default())
                        .map_err(|e| format!("{}:{}: {}", file.display(), e.line, e.problem))?;
                    for e in entries {
                        if let Some(reason) = literal_credential(&e.name, &e.value) {
                            out.push(ComposeFinding {
                                file: file.display().to_string(),
                                line: e.line,
                                service: service.to_string(),
                                place: "env_file",
                                fix: fix_env(service, &e.name),
                                variable: e.name,
                                rule: reason.rule(),
                                reason: reason.describe(),
                            });
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

fn judge(
    file: &str,
    service: &str,
    place: &'static str,
    node: &Node,
    out: &mut Vec<ComposeFinding>,
) -> Result<(), String> {
    let map = key_value_map(node.clone()).map_err(|e| e.to_string())?;
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
                reason: if value.contains('$') {
                    format!(
                        "{} (value interpolated when Compose runs)",
                        reason.describe()
                    )
                } else {
                    reason.describe()
                },
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

//! The typed project: what the converter needs from the merged tree, with the position of
//! every value it may have to complain about. Keys it does not map are collected (once per
//! key) so the report lists them; `x-` keys are ignored except `x-runsecrets`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::error::ComposeError;
use super::mode::Mode;
use super::service;
use super::yaml::{Kind, Node, Pos};

/// Where a secret's or config's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    /// The value of a variable of the project environment.
    Environment(String),
    /// Inline `content:` (configs only).
    Content(String),
    /// Exists already, under this name.
    External(String),
}

/// A top-level `secrets:` or `configs:` entry.
#[derive(Debug, Clone)]
pub struct Definition {
    pub key: String,
    /// The object's name: `name:` when given, else the key.
    pub name: String,
    pub source: Source,
    pub pos: Pos,
}

/// A service's `secrets:`/`configs:` entry (short or long syntax).
#[derive(Debug, Clone)]
pub struct FileRef {
    pub source: String,
    pub target: Option<String>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mode: Option<Mode>,
    pub pos: Pos,
}

/// One `environment:` (or `env_file:`, or `build.args`) variable.
#[derive(Debug, Clone)]
pub struct EnvVar {
    pub name: String,
    /// None: no value and none in the project environment (Compose leaves it unset).
    pub value: Option<String>,
    /// Some of the value came from the shell or `.env` by interpolation.
    pub from_vars: bool,
    pub pos: Pos,
}

/// The kinds of workload a service can become.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Controller {
    Deployment,
    StatefulSet,
    DaemonSet,
    Job,
}

/// `x-runsecrets:` at the top level or on a service.
#[derive(Debug, Clone, Default)]
pub struct Hints {
    pub namespace: Option<(String, Pos)>,
    pub controller: Option<Controller>,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug)]
pub struct Project {
    pub name: String,
    /// Enabled services (profiles applied), sorted by name.
    pub services: Vec<service::Service>,
    /// Services left out by profiles.
    pub disabled: Vec<String>,
    pub secrets: BTreeMap<String, Definition>,
    pub configs: BTreeMap<String, Definition>,
    pub volumes: BTreeSet<String>,
    pub hints: Hints,
    /// Keys that do not map, by key, with where each was seen.
    pub unmapped: BTreeMap<String, Vec<Pos>>,
}

pub fn scalar_str<'a>(node: &'a Node, what: &str) -> Result<&'a str, ComposeError> {
    node.as_str().ok_or_else(|| {
        ComposeError::at(
            &node.pos,
            format!("{what} must be a string, not {}", node.describe()),
        )
    })
}

pub fn map_of<'a>(
    node: &'a Node,
    what: &str,
) -> Result<&'a [(super::yaml::Key, Node)], ComposeError> {
    if node.is_null() {
        return Ok(&[]);
    }
    node.as_map().ok_or_else(|| {
        ComposeError::at(
            &node.pos,
            format!("{what} must be a mapping, not {}", node.describe()),
        )
    })
}

/// A boolean as compose-go reads it (YAML 1.1 words with a warning there; accepted here).
pub fn boolean(node: &Node) -> Result<bool, ComposeError> {
    match node.as_str().map(str::to_ascii_lowercase).as_deref() {
        Some("true" | "yes" | "y" | "on") => Ok(true),
        Some("false" | "no" | "n" | "off") => Ok(false),
        _ => Err(ComposeError::at(&node.pos, "expected true or false")),
    }
}

fn definitions(
    tree: &Node,
    section: &str,
    unmapped: &mut BTreeMap<String, Vec<Pos>>,
) -> Result<BTreeMap<String, Definition>, ComposeError> {
    let mut out = BTreeMap::new();
    let Some(node) = tree.get(section) else {
        return Ok(out);
    };
    let singular = &section[..section.len() - 1];
    for (key, def) in map_of(node, section)? {
        let entries = map_of(def, &format!("{section}.{}", key.name))?;
        let name = def.get("name").map(|n| scalar_str(n, "name")).transpose()?;
        let mut external = None;
        let mut sources = Vec::new();
        for (k, v) in entries {
            match k.name.as_str() {
                "external" => {
                    external = Some(match &v.kind {
                        Kind::Map(_) => v
                            .get("name")
                            .map(|n| scalar_str(n, "external.name").map(str::to_string))
                            .transpose()?
                            .map(Some)
                            .unwrap_or(Some(String::new())),
                        _ => boolean(v)?.then(String::new),
                    })
                }
                "file" => sources.push((k, Source::File(PathBuf::from(scalar_str(v, "file")?)))),
                "environment" => sources.push((
                    k,
                    Source::Environment(scalar_str(v, "environment")?.to_string()),
                )),
                "content" if section == "configs" => {
                    sources.push((k, Source::Content(scalar_str(v, "content")?.to_string())))
                }
                "name" => {}
                other if other.starts_with("x-") => {}
                "labels" | "driver" | "driver_opts" | "template_driver" => unmapped
                    .entry(format!("{section}.*.{}", k.name))
                    .or_default()
                    .push(k.pos.clone()),
                _ => {
                    if external.is_none() {
                        return Err(ComposeError::at(&k.pos, format!(
                            "{section}.{}: unknown key {:?} (use file:, environment:{} or external:)",
                            key.name, super::yaml::shorten(&k.name), if section == "configs" { ", content:" } else { "" }
                        )));
                    }
                }
            }
        }
        let external = external.flatten();
        let source = match (external, sources.len()) {
            (Some(ext_name), _) => {
                if let Some((k, _)) = entries.iter().find(|(k, _)| {
                    !matches!(k.name.as_str(), "external" | "name") && !k.name.starts_with("x-")
                }) {
                    return Err(ComposeError::at(&k.pos, format!(
                        "{section}.{} is external, so it cannot also set {}: remove it (an external {singular} must already exist in the namespace)",
                        key.name, super::yaml::shorten(&k.name)
                    )));
                }
                let n = if !ext_name.is_empty() {
                    ext_name
                } else {
                    name.unwrap_or(&key.name).to_string()
                };
                Source::External(n)
            }
            (None, 1) => sources.remove(0).1,
            (None, 0) => {
                return Err(ComposeError::at(
                    &key.pos,
                    format!(
                        "{section}.{} has no value: give file:, environment:{} or external: true",
                        key.name,
                        if section == "configs" {
                            ", content:"
                        } else {
                            ""
                        }
                    ),
                ))
            }
            (None, _) => {
                return Err(ComposeError::at(
                    &sources[1].0.pos,
                    format!(
                        "{section}.{} has more than one source: keep one of file:, environment:{}",
                        key.name,
                        if section == "configs" {
                            ", content:"
                        } else {
                            ""
                        }
                    ),
                ))
            }
        };
        out.insert(
            key.name.clone(),
            Definition {
                key: key.name.clone(),
                name: name.unwrap_or(&key.name).to_string(),
                source,
                pos: key.pos.clone(),
            },
        );
    }
    Ok(out)
}

pub fn hints(node: Option<&Node>) -> Result<Hints, ComposeError> {
    let mut hints = Hints::default();
    let Some(node) = node else {
        return Ok(hints);
    };
    for (k, v) in map_of(node, "x-runsecrets")? {
        match k.name.as_str() {
            "namespace" => {
                hints.namespace = Some((
                    scalar_str(v, "x-runsecrets.namespace")?.to_string(),
                    v.pos.clone(),
                ))
            }
            "controller" => {
                hints.controller = Some(match scalar_str(v, "x-runsecrets.controller")? {
                    "deployment" => Controller::Deployment,
                    "statefulset" => Controller::StatefulSet,
                    "daemonset" => Controller::DaemonSet,
                    "job" => Controller::Job,
                    _ => return Err(ComposeError::at(
                        &v.pos,
                        "x-runsecrets.controller must be deployment, statefulset, daemonset or job",
                    )),
                })
            }
            "annotations" => {
                for (ak, av) in map_of(v, "x-runsecrets.annotations")? {
                    hints.annotations.insert(
                        ak.name.clone(),
                        scalar_str(av, "an annotation value")?.to_string(),
                    );
                }
            }
            _ => {
                return Err(ComposeError::at(
                    &k.pos,
                    "x-runsecrets knows namespace, controller and annotations",
                ))
            }
        }
    }
    Ok(hints)
}

/// Compose's project name rule: lowercase letters, digits, `-` and `_`, starting with a letter
/// or digit.
pub fn normalise_project_name(name: &str) -> String {
    let lowered: String = name
        .to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    lowered.trim_start_matches(['-', '_']).to_string()
}

/// Builds the project from the merged tree, keeping the services `profiles` enables.
pub fn project(tree: &Node, name: String, profiles: &[String]) -> Result<Project, ComposeError> {
    let mut unmapped: BTreeMap<String, Vec<Pos>> = BTreeMap::new();
    for (k, v) in map_of(tree, "the file")? {
        match k.name.as_str() {
            "services" | "secrets" | "configs" | "volumes" | "name" | "version"
            | "x-runsecrets" => {}
            "networks" => {
                if !map_of(v, "networks")?.is_empty() {
                    unmapped
                        .entry("networks".into())
                        .or_default()
                        .push(k.pos.clone());
                }
            }
            other if other.starts_with("x-") => {}
            _ => unmapped
                .entry(k.name.clone())
                .or_default()
                .push(k.pos.clone()),
        }
    }
    let mut services = Vec::new();
    let mut disabled = Vec::new();
    if let Some(node) = tree.get("services") {
        for (key, svc) in map_of(node, "services")? {
            let s = service::service(&key.name, key.pos.clone(), svc, &mut unmapped)?;
            let enabled = s.profiles.is_empty()
                || s.profiles
                    .iter()
                    .any(|p| profiles.iter().any(|a| a == p || a == "*"));
            if enabled {
                services.push(s);
            } else {
                disabled.push(key.name.clone());
            }
        }
    }
    services.sort_by(|a, b| a.name.cmp(&b.name));
    let volumes = match tree.get("volumes") {
        Some(v) => map_of(v, "volumes")?
            .iter()
            .map(|(k, _)| k.name.clone())
            .collect(),
        None => BTreeSet::new(),
    };
    Ok(Project {
        name,
        services,
        disabled,
        secrets: definitions(tree, "secrets", &mut unmapped)?,
        configs: definitions(tree, "configs", &mut unmapped)?,
        volumes,
        hints: hints(tree.get("x-runsecrets"))?,
        unmapped,
    })
}

//! One service of the project: the fields the converter maps, read and checked.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::error::ComposeError;
use super::merge::key_value_map;
use super::mode;
use super::model::{boolean, hints, map_of, scalar_str, EnvVar, FileRef, Hints};
use super::syntax::{command, health, mounts, ports, seconds};
use super::yaml::{Kind, Node, Pos};

/// A `ports:` or `expose:` entry: the container port (what other services connect to).
#[derive(Debug, Clone)]
pub struct Port {
    pub target: u16,
    pub published: Option<String>,
    pub udp: bool,
    pub pos: Pos,
}

#[derive(Debug, Clone)]
pub enum Mount {
    /// A named volume of the project.
    Volume {
        name: String,
        target: String,
        read_only: bool,
        pos: Pos,
    },
    /// `type: tmpfs` (memory) or an anonymous volume (node disk): an `emptyDir`.
    Scratch { target: String, memory: bool },
    /// A host path: no cluster equivalent.
    Bind { pos: Pos },
}

#[derive(Debug, Clone)]
pub struct Health {
    /// The command, as exec arguments; None when the check is disabled.
    pub test: Option<Vec<String>>,
    pub interval: Option<i32>,
    pub timeout: Option<i32>,
    pub start_period: Option<i32>,
    pub retries: Option<i32>,
}

#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub pos: Pos,
    pub image: Option<String>,
    pub has_build: bool,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub working_dir: Option<String>,
    /// `user:` as written, with its position.
    pub user: Option<(String, Pos)>,
    pub environment: Vec<EnvVar>,
    pub env_files: Vec<(PathBuf, bool, Pos)>,
    pub ports: Vec<Port>,
    pub secrets: Vec<FileRef>,
    pub configs: Vec<FileRef>,
    pub mounts: Vec<Mount>,
    pub healthcheck: Option<Health>,
    pub global: bool,
    pub replicas: Option<i32>,
    pub profiles: Vec<String>,
    /// Services named in `depends_on` (short or long syntax): they are connected to.
    pub depends_on: Vec<String>,
    pub grace_period: Option<i64>,
    pub hints: Hints,
}

fn env_vars(node: &Node) -> Result<Vec<EnvVar>, ComposeError> {
    let map = key_value_map(node.clone())?;
    let mut out = Vec::new();
    for (k, v) in map.as_map().unwrap_or_default() {
        let (value, from_vars) = match &v.kind {
            _ if v.is_null() => (None, false),
            Kind::Scalar(s) => (Some(s.text.clone()), s.from_vars),
            _ => {
                return Err(ComposeError::at(
                    &v.pos,
                    format!("{} must be a string", k.name),
                ))
            }
        };
        out.push(EnvVar {
            name: k.name.clone(),
            value,
            from_vars,
            pos: k.pos.clone(),
        });
    }
    Ok(out)
}

fn id(node: Option<&Node>, what: &str) -> Result<Option<u32>, ComposeError> {
    let Some(node) = node else { return Ok(None) };
    let text = scalar_str(node, what)?;
    text.parse::<u32>().map(Some).map_err(|_| {
        ComposeError::at(
            &node.pos,
            format!("{what} must be a numeric id (0-4294967295)"),
        )
    })
}

fn file_refs(node: &Node, what: &str) -> Result<Vec<FileRef>, ComposeError> {
    let Some(items) = node.as_seq() else {
        return Err(ComposeError::at(
            &node.pos,
            format!("{what} must be a list"),
        ));
    };
    let mut out = Vec::new();
    for item in items {
        if let Some(name) = item.as_str() {
            out.push(FileRef {
                source: name.to_string(),
                target: None,
                uid: None,
                gid: None,
                mode: None,
                pos: item.pos.clone(),
            });
            continue;
        }
        let entries = map_of(item, what)?;
        if let Some((k, _)) = entries.iter().find(|(k, _)| {
            !matches!(
                k.name.as_str(),
                "source" | "target" | "uid" | "gid" | "mode"
            ) && !k.name.starts_with("x-")
        }) {
            return Err(ComposeError::at(
                &k.pos,
                format!(
                    "unknown key {:?} in {what} (source, target, uid, gid, mode)",
                    super::yaml::shorten(&k.name)
                ),
            ));
        }
        let source = item
            .get("source")
            .ok_or_else(|| ComposeError::at(&item.pos, format!("{what} entry needs source:")))?;
        let mode = match item.get("mode") {
            Some(m) => {
                let s = m
                    .as_scalar()
                    .ok_or_else(|| ComposeError::at(&m.pos, "mode must be a number"))?;
                Some(
                    mode::parse(&s.text, s.plain)
                        .map_err(|e| ComposeError::at(&m.pos, e.to_string()))?,
                )
            }
            None => None,
        };
        out.push(FileRef {
            source: scalar_str(source, "source")?.to_string(),
            target: item
                .get("target")
                .map(|t| scalar_str(t, "target").map(str::to_string))
                .transpose()?,
            uid: id(item.get("uid"), "uid")?,
            gid: id(item.get("gid"), "gid")?,
            mode,
            pos: item.pos.clone(),
        });
    }
    Ok(out)
}

/// The files of a service's `env_file:` (a path, a list of paths, or of `{path, required}`),
/// with whether each must exist; `convert` and `scan` both read them from here.
pub fn env_file_refs(v: &Node) -> Result<Vec<(PathBuf, bool, Pos)>, ComposeError> {
    let items: Vec<&Node> = match &v.kind {
        Kind::Seq(items) => items.iter().collect(),
        _ => vec![v],
    };
    let mut out = Vec::new();
    for item in items {
        let (path, required) = match item.as_str() {
            Some(p) => (p.to_string(), true),
            None => (
                item.get("path")
                    .map(|p| scalar_str(p, "env_file.path"))
                    .transpose()?
                    .ok_or_else(|| ComposeError::at(&item.pos, "env_file entry needs path:"))?
                    .to_string(),
                item.get("required")
                    .map(boolean)
                    .transpose()?
                    .unwrap_or(true),
            ),
        };
        out.push((PathBuf::from(path), required, item.pos.clone()));
    }
    Ok(out)
}

pub fn service(
    name: &str,
    pos: Pos,
    node: &Node,
    unmapped: &mut BTreeMap<String, Vec<Pos>>,
) -> Result<Service, ComposeError> {
    let entries = map_of(node, &format!("services.{name}"))?;
    let mut s = Service {
        name: name.to_string(),
        pos,
        image: None,
        has_build: false,
        command: None,
        entrypoint: None,
        working_dir: None,
        user: None,
        environment: Vec::new(),
        env_files: Vec::new(),
        ports: Vec::new(),
        secrets: Vec::new(),
        configs: Vec::new(),
        mounts: Vec::new(),
        healthcheck: None,
        global: false,
        replicas: None,
        profiles: Vec::new(),
        depends_on: Vec::new(),
        grace_period: None,
        hints: Hints::default(),
    };
    for (k, v) in entries {
        let key = k.name.as_str();
        match key {
            "image" => s.image = Some(scalar_str(v, "image")?.to_string()),
            "build" => {
                // The image is not built here; build args and build secrets are build-time.
                unmapped
                    .entry("build".into())
                    .or_default()
                    .push(k.pos.clone());
                s.has_build = true;
            }
            "command" => s.command = command(v, "command")?,
            "entrypoint" => s.entrypoint = command(v, "entrypoint")?,
            "working_dir" => s.working_dir = Some(scalar_str(v, "working_dir")?.to_string()),
            "user" => s.user = Some((scalar_str(v, "user")?.to_string(), v.pos.clone())),
            "environment" => s.environment = env_vars(v)?,
            "env_file" => s.env_files = env_file_refs(v)?,
            "tmpfs" => {
                let items: Vec<&Node> = match &v.kind {
                    Kind::Seq(items) => items.iter().collect(),
                    _ => vec![v],
                };
                for item in items {
                    let text = scalar_str(item, "tmpfs")?;
                    let target = text.split(':').next().unwrap_or(text).to_string();
                    s.mounts.push(Mount::Scratch {
                        target,
                        memory: true,
                    });
                }
            }
            "ports" => s.ports.extend(ports(v, false)?),
            "expose" => s.ports.extend(ports(v, true)?),
            "secrets" => s.secrets = file_refs(v, "secrets")?,
            "configs" => s.configs = file_refs(v, "configs")?,
            "volumes" => s.mounts.extend(mounts(v)?),
            "healthcheck" => {
                for (hk, _) in map_of(v, "healthcheck")? {
                    let known = [
                        "test",
                        "interval",
                        "timeout",
                        "start_period",
                        "retries",
                        "disable",
                    ];
                    if !known.contains(&hk.name.as_str()) && !hk.name.starts_with("x-") {
                        unmapped
                            .entry(format!("healthcheck.{}", hk.name))
                            .or_default()
                            .push(hk.pos.clone());
                    }
                }
                s.healthcheck = Some(health(v)?);
            }
            "profiles" => {
                s.profiles = v
                    .as_seq()
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|p| p.as_str().map(str::to_string))
                    .collect()
            }
            "stop_grace_period" => s.grace_period = Some(seconds(v)?),
            "x-runsecrets" => s.hints = hints(Some(v))?,
            "deploy" => {
                for (dk, dv) in map_of(v, "deploy")? {
                    match dk.name.as_str() {
                        "mode" => s.global = scalar_str(dv, "deploy.mode")? == "global",
                        "replicas" => {
                            s.replicas =
                                Some(scalar_str(dv, "deploy.replicas")?.parse().map_err(|_| {
                                    ComposeError::at(&dv.pos, "deploy.replicas must be a number")
                                })?)
                        }
                        other => unmapped
                            .entry(format!("deploy.{other}"))
                            .or_default()
                            .push(dk.pos.clone()),
                    }
                }
            }
            "depends_on" => {
                // Start order has no equivalent; who is connected to still matters (below).
                s.depends_on = match (v.as_seq(), v.as_map()) {
                    (Some(seq), _) => seq
                        .iter()
                        .filter_map(|n| n.as_str().map(str::to_string))
                        .collect(),
                    (_, Some(map)) => map.iter().map(|(k, _)| k.name.clone()).collect(),
                    _ => Vec::new(),
                };
                unmapped
                    .entry(key.to_string())
                    .or_default()
                    .push(k.pos.clone());
            }
            "container_name" | "restart" => unmapped
                .entry(key.to_string())
                .or_default()
                .push(k.pos.clone()),
            _ if key.starts_with("x-") => {}
            _ => unmapped
                .entry(key.to_string())
                .or_default()
                .push(k.pos.clone()),
        }
    }
    Ok(s)
}

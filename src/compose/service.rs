//! One service of the project: the fields the converter maps, read and checked.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::error::ComposeError;
use super::merge::key_value_map;
use super::mode;
use super::model::{boolean, hints, map_of, scalar_str, EnvVar, FileRef, Hints};
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
    Tmpfs {
        target: String,
    },
    /// A host path: no cluster equivalent.
    Bind {
        pos: Pos,
    },
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
    pub build_args: Vec<EnvVar>,
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
    pub grace_period: Option<i64>,
    pub hints: Hints,
}

/// Splits a command string as compose-go's shell-words parser does: blanks separate words,
/// quotes group them, backslash escapes.
pub fn shell_words(s: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') | (None, '\\') => {
                word.push(chars.next()?);
                in_word = true;
            }
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return None;
    }
    if in_word {
        words.push(word);
    }
    Some(words)
}

fn command(node: &Node, what: &str) -> Result<Option<Vec<String>>, ComposeError> {
    if node.is_null() {
        return Ok(None);
    }
    match &node.kind {
        Kind::Seq(items) => items
            .iter()
            .map(|i| scalar_str(i, what).map(str::to_string))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        _ => shell_words(scalar_str(node, what)?)
            .map(Some)
            .ok_or_else(|| ComposeError::at(&node.pos, format!("{what} has an unclosed quote"))),
    }
}

/// `1m30s`, `10s`, `500ms` → whole seconds (rounded up; at least 1).
pub fn seconds(node: &Node) -> Result<i64, ComposeError> {
    let text = scalar_str(node, "a duration")?;
    let bad = || {
        ComposeError::at(
            &node.pos,
            "not a duration: write it like 30s, 1m30s or 500ms",
        )
    };
    let mut total_ms: i64 = 0;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(bad)?;
        let value: f64 = rest[..n].parse().map_err(|_| bad())?;
        let unit_len = rest[n..]
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len() - n);
        let unit = &rest[n..n + unit_len];
        let ms = match unit {
            "h" => 3_600_000.0,
            "m" => 60_000.0,
            "s" => 1000.0,
            "ms" => 1.0,
            "us" | "µs" => 0.001,
            "ns" => 0.000_001,
            _ => return Err(bad()),
        };
        total_ms = total_ms.saturating_add((value * ms) as i64);
        rest = &rest[n + unit_len..];
    }
    Ok(((total_ms + 999) / 1000).max(1))
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

fn port_number(text: &str) -> Option<u16> {
    text.parse::<u16>().ok().filter(|p| *p > 0)
}

fn ports(node: &Node, expose: bool) -> Result<Vec<Port>, ComposeError> {
    let items = node
        .as_seq()
        .ok_or_else(|| ComposeError::at(&node.pos, "ports must be a list"))?;
    let bad = |pos: &Pos| {
        ComposeError::at(
            pos,
            "not a port: write CONTAINER, HOST:CONTAINER or HOST_IP:HOST:CONTAINER[/udp]",
        )
    };
    let mut out = Vec::new();
    for item in items {
        if let Some(text) = item.as_str() {
            let (spec, proto) = text.split_once('/').unwrap_or((text, "tcp"));
            let (published, target) = match spec.rsplit_once(':') {
                Some((p, t)) if !expose => (Some(p.rsplit(':').next().unwrap_or(p).to_string()), t),
                _ => (None, spec),
            };
            // A range ("8000-8002") maps each port.
            let (lo, hi) = target.split_once('-').unwrap_or((target, target));
            let (lo, hi) = (
                port_number(lo).ok_or_else(|| bad(&item.pos))?,
                port_number(hi).ok_or_else(|| bad(&item.pos))?,
            );
            for p in lo..=hi.max(lo) {
                out.push(Port {
                    target: p,
                    published: published.clone(),
                    udp: proto == "udp",
                    pos: item.pos.clone(),
                });
            }
        } else {
            let target = item
                .get("target")
                .and_then(Node::as_str)
                .and_then(port_number)
                .ok_or_else(|| bad(&item.pos))?;
            out.push(Port {
                target,
                published: item
                    .get("published")
                    .and_then(Node::as_str)
                    .map(str::to_string),
                udp: item.get("protocol").and_then(Node::as_str) == Some("udp"),
                pos: item.pos.clone(),
            });
        }
    }
    Ok(out)
}

fn mounts(node: &Node) -> Result<Vec<Mount>, ComposeError> {
    let items = node
        .as_seq()
        .ok_or_else(|| ComposeError::at(&node.pos, "volumes must be a list"))?;
    let mut out = Vec::new();
    for item in items {
        let (kind, source, target, ro) = match item.as_str() {
            Some(text) => {
                let parts: Vec<&str> = text.split(':').collect();
                match parts.as_slice() {
                    [t] => ("volume", "", *t, false),
                    [s, t] => (
                        if s.starts_with(['.', '/', '~']) {
                            "bind"
                        } else {
                            "volume"
                        },
                        *s,
                        *t,
                        false,
                    ),
                    [s, t, m, ..] => (
                        if s.starts_with(['.', '/', '~']) {
                            "bind"
                        } else {
                            "volume"
                        },
                        *s,
                        *t,
                        m.split(',').any(|o| o == "ro"),
                    ),
                    [] => return Err(ComposeError::at(&item.pos, "empty volume")),
                }
            }
            None => (
                item.get("type").and_then(Node::as_str).unwrap_or("volume"),
                item.get("source").and_then(Node::as_str).unwrap_or(""),
                item.get("target")
                    .and_then(Node::as_str)
                    .ok_or_else(|| ComposeError::at(&item.pos, "a volume needs target:"))?,
                item.get("read_only")
                    .map(boolean)
                    .transpose()?
                    .unwrap_or(false),
            ),
        };
        out.push(match kind {
            "volume" if !source.is_empty() => Mount::Volume {
                name: source.to_string(),
                target: target.to_string(),
                read_only: ro,
                pos: item.pos.clone(),
            },
            "volume" | "tmpfs" => Mount::Tmpfs {
                target: target.to_string(),
            },
            _ => Mount::Bind {
                pos: item.pos.clone(),
            },
        });
    }
    Ok(out)
}

fn health(node: &Node) -> Result<Health, ComposeError> {
    let disabled = node
        .get("disable")
        .map(boolean)
        .transpose()?
        .unwrap_or(false);
    let test = match node.get("test") {
        None => None,
        Some(t) => match &t.kind {
            Kind::Seq(_) => {
                let words = command(t, "healthcheck.test")?.unwrap_or_default();
                match words.split_first() {
                    Some((first, rest)) if first == "CMD" => Some(rest.to_vec()),
                    Some((first, rest)) if first == "CMD-SHELL" => {
                        Some(vec!["/bin/sh".into(), "-c".into(), rest.join(" ")])
                    }
                    Some((first, _)) if first == "NONE" => None,
                    _ => {
                        return Err(ComposeError::at(
                            &t.pos,
                            "healthcheck.test must start with CMD, CMD-SHELL or NONE",
                        ))
                    }
                }
            }
            _ => Some(vec![
                "/bin/sh".into(),
                "-c".into(),
                scalar_str(t, "healthcheck.test")?.to_string(),
            ]),
        },
    };
    let secs = |key: &str| -> Result<Option<i32>, ComposeError> {
        node.get(key)
            .map(seconds)
            .transpose()
            .map(|v| v.map(|s| i32::try_from(s).unwrap_or(i32::MAX)))
    };
    Ok(Health {
        test: if disabled { None } else { test },
        interval: secs("interval")?,
        timeout: secs("timeout")?,
        start_period: secs("start_period")?,
        retries: node
            .get("retries")
            .and_then(Node::as_str)
            .and_then(|r| r.parse().ok()),
    })
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
        build_args: Vec::new(),
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
        grace_period: None,
        hints: Hints::default(),
    };
    for (k, v) in entries {
        let key = k.name.as_str();
        match key {
            "image" => s.image = Some(scalar_str(v, "image")?.to_string()),
            "build" => {
                s.has_build = true;
                if let Some(args) = v.get("args") {
                    s.build_args = env_vars(args)?;
                }
            }
            "command" => s.command = command(v, "command")?,
            "entrypoint" => s.entrypoint = command(v, "entrypoint")?,
            "working_dir" => s.working_dir = Some(scalar_str(v, "working_dir")?.to_string()),
            "user" => s.user = Some((scalar_str(v, "user")?.to_string(), v.pos.clone())),
            "environment" => s.environment = env_vars(v)?,
            "env_file" => {
                let items: Vec<&Node> = match &v.kind {
                    Kind::Seq(items) => items.iter().collect(),
                    _ => vec![v],
                };
                for item in items {
                    let (path, required) = match item.as_str() {
                        Some(p) => (p.to_string(), true),
                        None => (
                            item.get("path")
                                .map(|p| scalar_str(p, "env_file.path"))
                                .transpose()?
                                .ok_or_else(|| {
                                    ComposeError::at(&item.pos, "env_file entry needs path:")
                                })?
                                .to_string(),
                            item.get("required")
                                .map(boolean)
                                .transpose()?
                                .unwrap_or(true),
                        ),
                    };
                    s.env_files
                        .push((PathBuf::from(path), required, item.pos.clone()));
                }
            }
            "ports" => s.ports.extend(ports(v, false)?),
            "expose" => s.ports.extend(ports(v, true)?),
            "secrets" => s.secrets = file_refs(v, "secrets")?,
            "configs" => s.configs = file_refs(v, "configs")?,
            "volumes" => s.mounts = mounts(v)?,
            "healthcheck" => s.healthcheck = Some(health(v)?),
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
            "container_name" | "depends_on" | "restart" => unmapped
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

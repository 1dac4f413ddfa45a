//! The short and long syntaxes of service fields that have both: `command` strings split
//! like a shell, durations, `ports`/`expose`, `volumes` and `healthcheck`.

use super::error::ComposeError;
use super::model::{boolean, scalar_str};
use super::service::{Health, Mount, Port};
use super::yaml::{Kind, Node, Pos};

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

pub fn command(node: &Node, what: &str) -> Result<Option<Vec<String>>, ComposeError> {
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
    Ok((total_ms.saturating_add(999) / 1000).max(1))
}

fn port_number(text: &str) -> Option<u16> {
    text.parse::<u16>().ok().filter(|p| *p > 0)
}

pub fn ports(node: &Node, expose: bool) -> Result<Vec<Port>, ComposeError> {
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

pub fn mounts(node: &Node) -> Result<Vec<Mount>, ComposeError> {
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
            "volume" | "tmpfs" => Mount::Scratch {
                target: target.to_string(),
                memory: kind == "tmpfs",
            },
            _ => Mount::Bind {
                pos: item.pos.clone(),
            },
        });
    }
    Ok(out)
}

pub fn health(node: &Node) -> Result<Health, ComposeError> {
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

//! Merging Compose files (and an `extends` base with its service) by the specification's
//! rules ("Merge and override"; compose-go's `override` package): mappings merge, sequences
//! append, scalars are replaced; `command`, `entrypoint` and `healthcheck.test` are replaced
//! whole; `environment`, `labels`, `annotations`, `sysctls`, `build.args`, `build.labels` and
//! `deploy.labels` merge by key whichever form (list or mapping) each side uses; `secrets` and
//! `configs` merge by target, `volumes` by target, `ports` and other lists drop repeated
//! entries. `!reset` removes a value, `!override` replaces it instead of merging.

use super::error::ComposeError;
use super::yaml::{Key, Kind, Node, Tag};

fn matches(path: &[String], pattern: &[&str]) -> bool {
    path.len() == pattern.len() && path.iter().zip(pattern).all(|(p, q)| *q == "*" || p == q)
}

/// Keys whose list form is `KEY=VALUE` and whose mapping form is `KEY: VALUE`.
fn is_key_value(path: &[String]) -> bool {
    ["environment", "labels", "annotations", "sysctls"]
        .iter()
        .any(|k| matches(path, &["services", "*", k]))
        || matches(path, &["services", "*", "build", "args"])
        || matches(path, &["services", "*", "build", "labels"])
        || matches(path, &["services", "*", "deploy", "labels"])
}

fn is_replaced(path: &[String]) -> bool {
    matches(path, &["services", "*", "command"])
        || matches(path, &["services", "*", "entrypoint"])
        || matches(path, &["services", "*", "healthcheck", "test"])
}

/// Merges `over` into `base` at `path` (the keys from the root).
pub fn merge(base: Node, over: Node, path: &mut Vec<String>) -> Result<Node, ComposeError> {
    if over.tag == Tag::Override || is_replaced(path) {
        return Ok(over);
    }
    if is_key_value(path) {
        let base = key_value_map(base)?;
        let over = key_value_map(over)?;
        return merge_maps(base, over, path);
    }
    let base = normalise(base, path);
    let over = normalise(over, path);
    match (&base.kind, &over.kind) {
        (Kind::Map(_), Kind::Map(_)) => merge_maps(base, over, path),
        (Kind::Seq(_), Kind::Seq(_)) => Ok(merge_seqs(base, over, path)),
        (Kind::Map(_), _) | (Kind::Seq(_), _) if !over.is_null() => Err(ComposeError::at(
            &over.pos,
            format!(
                "{} is {} here but {} in the file it overrides: use the same form, or tag it !override",
                path.join("."),
                over.describe(),
                base.describe()
            ),
        )),
        _ if over.is_null() && !matches!(base.kind, Kind::Scalar(_)) => Ok(base),
        _ => Ok(over),
    }
}

fn merge_maps(base: Node, over: Node, path: &mut Vec<String>) -> Result<Node, ComposeError> {
    let pos = base.pos.clone();
    let tag = base.tag;
    let (Kind::Map(mut entries), Kind::Map(others)) = (base.kind, over.kind) else {
        return Ok(Node::map(pos, Vec::new()));
    };
    for (key, value) in others {
        let existing = entries.iter().position(|(k, _)| k.name == key.name);
        match (existing, value.tag) {
            (Some(i), Tag::Reset) => {
                entries.remove(i);
            }
            (None, Tag::Reset) => {}
            (Some(i), _) => {
                let (k, old) = entries.remove(i);
                path.push(key.name.clone());
                let merged = merge(old, value, path);
                path.pop();
                entries.insert(i, (k, merged?));
            }
            (None, _) => entries.push((key, value)),
        }
    }
    Ok(Node {
        pos,
        tag,
        kind: Kind::Map(entries),
    })
}

/// The identity of a list item for de-duplication, by what the list is.
fn identity(path: &[String], item: &Node) -> Option<String> {
    let field = |name: &str| item.get(name).and_then(Node::as_str).map(str::to_string);
    if matches(path, &["services", "*", "secrets"]) || matches(path, &["services", "*", "configs"])
    {
        let secrets = path.get(2).is_some_and(|p| p == "secrets");
        let source = item
            .as_str()
            .map(str::to_string)
            .or_else(|| field("source"))?;
        let target = field("target").unwrap_or(source);
        return Some(match (secrets, target.starts_with('/')) {
            (_, true) => target,
            (true, false) => format!("/run/secrets/{target}"),
            (false, false) => format!("/{target}"),
        });
    }
    if matches(path, &["services", "*", "volumes"]) {
        return field("target").or_else(|| {
            let s = item.as_str()?;
            // `SOURCE:TARGET[:MODE]` or just `TARGET`.
            let mut parts = s.split(':');
            let first = parts.next().unwrap_or_default();
            Some(parts.next().unwrap_or(first).to_string())
        });
    }
    if matches(path, &["services", "*", "env_file"]) {
        return item.as_str().map(str::to_string).or_else(|| field("path"));
    }
    item.as_str().map(str::to_string)
}

fn merge_seqs(base: Node, over: Node, path: &[String]) -> Node {
    let pos = base.pos.clone();
    let tag = base.tag;
    let (Kind::Seq(mut items), Kind::Seq(others)) = (base.kind, over.kind) else {
        return Node::map(pos, Vec::new());
    };
    for item in others {
        if item.tag == Tag::Reset {
            continue;
        }
        let id = identity(path, &item);
        let same = id.as_ref().and_then(|id| {
            items
                .iter()
                .position(|i| identity(path, i).as_ref() == Some(id))
        });
        match same {
            Some(i) => items[i] = item,
            None => items.push(item),
        }
    }
    Node {
        pos,
        tag,
        kind: Kind::Seq(items),
    }
}

/// Brings the two forms of a field to one before merging: `build: DIR` → `{context: DIR}`,
/// `depends_on`/`networks` lists → mappings.
fn normalise(node: Node, path: &[String]) -> Node {
    if matches(path, &["services", "*", "build"]) {
        if let Kind::Scalar(_) = node.kind {
            if !node.is_null() {
                let pos = node.pos.clone();
                let key = Key {
                    name: "context".into(),
                    pos: pos.clone(),
                };
                return Node::map(pos, vec![(key, node)]);
            }
        }
    }
    let listish = matches(path, &["services", "*", "depends_on"])
        || matches(path, &["services", "*", "networks"]);
    if listish {
        if let Kind::Seq(items) = &node.kind {
            let entries = items
                .iter()
                .filter_map(|i| {
                    let name = i.as_str()?.to_string();
                    Some((
                        Key {
                            name,
                            pos: i.pos.clone(),
                        },
                        Node::map(i.pos.clone(), Vec::new()),
                    ))
                })
                .collect();
            return Node::map(node.pos.clone(), entries);
        }
    }
    node
}

/// `KEY=VALUE` lists and `KEY: VALUE` mappings as one mapping (a bare `KEY` is null: its value
/// comes from the environment).
pub fn key_value_map(node: Node) -> Result<Node, ComposeError> {
    let pos = node.pos.clone();
    let tag = node.tag;
    match node.kind {
        Kind::Map(_) => Ok(node),
        Kind::Seq(items) => {
            let mut entries: Vec<(Key, Node)> = Vec::new();
            for item in items {
                let Some(s) = item.as_scalar() else {
                    return Err(ComposeError::at(
                        &item.pos,
                        "a list entry here must be KEY=VALUE",
                    ));
                };
                let (name, value) = match s.text.split_once('=') {
                    Some((k, v)) => {
                        let mut value = item.clone();
                        if let Kind::Scalar(sc) = &mut value.kind {
                            sc.text = v.to_string();
                            sc.plain = false;
                        }
                        (k.to_string(), value)
                    }
                    None => {
                        let mut null = Node::scalar(item.pos.clone(), "");
                        if let Kind::Scalar(sc) = &mut null.kind {
                            sc.plain = true;
                        }
                        (s.text.clone(), null)
                    }
                };
                entries.retain(|(k, _)| k.name != name);
                entries.push((
                    Key {
                        name,
                        pos: item.pos.clone(),
                    },
                    value,
                ));
            }
            Ok(Node {
                pos,
                tag,
                kind: Kind::Map(entries),
            })
        }
        Kind::Scalar(_) if node.is_null() => Ok(Node {
            pos,
            tag,
            kind: Kind::Map(Vec::new()),
        }),
        Kind::Scalar(_) => Err(ComposeError::at(
            &pos,
            "expected a mapping or a list of KEY=VALUE",
        )),
    }
}

/// Removes every value still tagged `!reset` (one in a file that overrides nothing).
pub fn strip_resets(node: &mut Node) {
    match &mut node.kind {
        Kind::Map(entries) => {
            entries.retain(|(_, v)| v.tag != Tag::Reset);
            for (_, v) in entries.iter_mut() {
                strip_resets(v);
            }
        }
        Kind::Seq(items) => {
            items.retain(|v| v.tag != Tag::Reset);
            for v in items.iter_mut() {
                strip_resets(v);
            }
        }
        Kind::Scalar(_) => {}
    }
}

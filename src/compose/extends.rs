//! `extends` (a service based on another, in the same file or another one) and `include`
//! (another Compose project copied in). Both are resolved completely or refused: a remote
//! `include` (git, OCI, URLs) is refused, since reading it would need the network.

use std::path::{Path, PathBuf};

use super::error::ComposeError;
use super::load::{display, Loader};
use super::yaml::{Key, Kind, Node, Pos};
use super::{merge, paths, Environment};

/// Sections an included project contributes; a name defined on both sides is an error.
const SECTIONS: [&str; 5] = ["services", "secrets", "configs", "volumes", "networks"];

fn strings(node: &Node) -> Result<Vec<(String, Pos)>, ComposeError> {
    match &node.kind {
        Kind::Seq(items) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(|s| (s.to_string(), i.pos.clone()))
                    .ok_or_else(|| ComposeError::at(&i.pos, "expected a path"))
            })
            .collect(),
        _ => node
            .as_str()
            .map(|s| vec![(s.to_string(), node.pos.clone())])
            .ok_or_else(|| ComposeError::at(&node.pos, "expected a path or a list of paths")),
    }
}

fn is_remote(path: &str) -> bool {
    path.contains("://") || path.starts_with("git@") || path.starts_with("oci:")
}

/// Loads every `include` entry of `doc` as its own project and copies its resources in.
pub fn apply_include(
    loader: &mut Loader<'_>,
    doc: &mut Node,
    project_dir: &Path,
    env: &Environment,
) -> Result<(), ComposeError> {
    let Some(map) = doc.as_map_mut() else {
        return Ok(());
    };
    let Some(i) = map.iter().position(|(k, _)| k.name == "include") else {
        return Ok(());
    };
    let (_, include) = map.remove(i);
    let entries: Vec<Node> = match include.kind {
        Kind::Seq(items) => items,
        _ => return Err(ComposeError::at(&include.pos, "include must be a list")),
    };
    for entry in entries {
        let (files, dir, env_files) = match &entry.kind {
            Kind::Map(_) => {
                let path = entry
                    .get("path")
                    .ok_or_else(|| ComposeError::at(&entry.pos, "an include entry needs path:"))?;
                let dir = entry.get("project_directory").and_then(Node::as_str);
                let env_files = match entry.get("env_file") {
                    Some(n) => strings(n)?,
                    None => Vec::new(),
                };
                (strings(path)?, dir.map(str::to_string), env_files)
            }
            _ => (strings(&entry)?, None, Vec::new()),
        };
        if let Some((_, pos)) = files.iter().find(|(p, _)| is_remote(p)) {
            return Err(ComposeError::at(
                pos,
                "include of a remote project (git, OCI or URL) is not supported: check it out and include the local path",
            ));
        }
        let files: Vec<PathBuf> = files
            .iter()
            .map(|(p, _)| paths::normalise(&project_dir.join(p)))
            .collect();
        let first = files.first().cloned().unwrap_or_default();
        for f in &files {
            if loader.including.contains(f) {
                return Err(ComposeError::at(
                    &entry.pos,
                    format!(
                        "include cycle: {} is already being loaded: remove one of the includes",
                        display(f, loader.cwd)
                    ),
                ));
            }
            if !f.is_file() {
                return Err(ComposeError::at(
                    &entry.pos,
                    format!("included file {} does not exist", display(f, loader.cwd)),
                ));
            }
        }
        let sub_dir = match dir {
            Some(d) => project_dir.join(d),
            None => first.parent().map(Path::to_path_buf).unwrap_or_default(),
        };
        let env_files: Vec<PathBuf> = env_files.iter().map(|(p, _)| project_dir.join(p)).collect();
        // The included project's own .env, overridden by this project's variables.
        let mut sub_env = super::load::environment(&sub_dir, &env_files, env, loader.cwd)?;
        sub_env.overlay(env);
        let included = loader.load(&files, &sub_dir, &sub_env)?;
        copy_resources(doc, included)?;
    }
    Ok(())
}

fn copy_resources(doc: &mut Node, included: Node) -> Result<(), ComposeError> {
    let Kind::Map(sections) = included.kind else {
        return Ok(());
    };
    let Some(map) = doc.as_map_mut() else {
        return Ok(());
    };
    for (section, value) in sections {
        if !SECTIONS.contains(&section.name.as_str()) {
            continue;
        }
        let Kind::Map(items) = value.kind else {
            continue;
        };
        let target = match map.iter().position(|(k, _)| k.name == section.name) {
            Some(i) => &mut map[i].1,
            None => {
                map.push((section.clone(), Node::map(section.pos.clone(), Vec::new())));
                let last = map.len() - 1;
                &mut map[last].1
            }
        };
        let Some(target) = target.as_map_mut() else {
            continue;
        };
        for (name, item) in items {
            if let Some((k, _)) = target.iter().find(|(k, _)| k.name == name.name) {
                return Err(ComposeError::at(
                    &k.pos,
                    format!(
                        "{}.{} is also defined by an included project ({}): rename one of them",
                        section.name, name.name, name.pos
                    ),
                ));
            }
            target.push((name, item));
        }
    }
    Ok(())
}

/// Resolves `extends` for every service of `doc` (read from `file`).
pub fn apply_extends(
    loader: &mut Loader<'_>,
    doc: &mut Node,
    file: &Path,
    env: &Environment,
) -> Result<(), ComposeError> {
    let names: Vec<String> = match doc.get("services").and_then(Node::as_map) {
        Some(services) => services
            .iter()
            .filter(|(_, s)| s.get("extends").is_some())
            .map(|(k, _)| k.name.clone())
            .collect(),
        None => return Ok(()),
    };
    let snapshot = doc.clone();
    for name in names {
        let resolved = resolve(loader, &snapshot, file, &name, env, &mut Vec::new())?;
        if let Some(slot) = doc.get_mut("services").and_then(|s| s.get_mut(&name)) {
            *slot = resolved;
        }
    }
    Ok(())
}

/// The service `name` of `doc` with its `extends` chain merged in.
fn resolve(
    loader: &mut Loader<'_>,
    doc: &Node,
    file: &Path,
    name: &str,
    env: &Environment,
    chain: &mut Vec<(PathBuf, String)>,
) -> Result<Node, ComposeError> {
    let service = doc
        .get("services")
        .and_then(|s| s.get(name))
        .cloned()
        .ok_or_else(|| {
            ComposeError::at(
                &doc.pos,
                format!(
                    "extends: service {name:?} is not defined in {}",
                    display(file, loader.cwd)
                ),
            )
        })?;
    let here = (file.to_path_buf(), name.to_string());
    if chain.contains(&here) {
        return Err(ComposeError::at(
            &service.pos,
            format!("extends cycle through service {name:?}"),
        ));
    }
    let Some(ext) = service.get("extends").cloned() else {
        return Ok(service);
    };
    chain.push(here);
    let (base_name, base_file) = match (&ext.kind, ext.as_str()) {
        (_, Some(s)) => (s.to_string(), None),
        (Kind::Map(_), None) => (
            ext.get("service")
                .and_then(Node::as_str)
                .ok_or_else(|| ComposeError::at(&ext.pos, "extends needs service:"))?
                .to_string(),
            ext.get("file").and_then(Node::as_str).map(str::to_string),
        ),
        _ => {
            return Err(ComposeError::at(
                &ext.pos,
                "extends must be a service name or {service:, file:}",
            ))
        }
    };
    let base = match base_file {
        None => {
            defined(doc, &base_name, &ext.pos, &display(file, loader.cwd))?;
            resolve(loader, doc, file, &base_name, env, chain)?
        }
        Some(other) => {
            let dir = file.parent().unwrap_or(Path::new("."));
            // Normalised, so a cycle through `../` is the same path again, not a new one.
            let path = paths::normalise(&dir.join(&other));
            let mut other_doc = loader.base_file(&path, &ext.pos, &other)?;
            loader.interpolate(&mut other_doc, env)?;
            defined(
                &other_doc,
                &base_name,
                &ext.pos,
                &display(&path, loader.cwd),
            )?;
            let mut base = resolve(loader, &other_doc, &path, &base_name, env, chain)?;
            // Paths in the other file are relative to that file.
            let pos = base.pos.clone();
            let mut wrapper = Node::map(
                pos.clone(),
                vec![(
                    Key {
                        name: "services".into(),
                        pos: pos.clone(),
                    },
                    Node::map(
                        pos.clone(),
                        vec![(
                            Key {
                                name: base_name.clone(),
                                pos,
                            },
                            base,
                        )],
                    ),
                )],
            );
            paths::resolve(&mut wrapper, path.parent().unwrap_or(Path::new(".")));
            base = wrapper
                .get("services")
                .and_then(|s| s.get(&base_name))
                .cloned()
                .unwrap_or_else(|| Node::map(ext.pos.clone(), Vec::new()));
            base
        }
    };
    chain.pop();
    let mut local = service;
    if let Some(m) = local.as_map_mut() {
        m.retain(|(k, _)| k.name != "extends");
    }
    let mut base = base;
    if let Some(m) = base.as_map_mut() {
        m.retain(|(k, _)| k.name != "extends");
    }
    let mut path = vec!["services".to_string(), name.to_string()];
    merge::merge(base, local, &mut path)
}

/// Refuses an `extends` whose base service does not exist, at the `extends` line.
fn defined(doc: &Node, name: &str, at: &Pos, file: &str) -> Result<(), ComposeError> {
    match doc.get("services").and_then(|s| s.get(name)) {
        Some(_) => Ok(()),
        None => Err(ComposeError::at(
            at,
            format!("extends: service {name:?} is not defined in {file}: fix service: or file:"),
        )),
    }
}

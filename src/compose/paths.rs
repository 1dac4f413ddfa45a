//! Relative paths made absolute against the directory they are relative to: the project
//! directory for the project's own files, the file's directory for an `extends` base from
//! another file, the included project's directory for `include`.

use std::path::{Component, Path, PathBuf};

use super::yaml::{Kind, Node};

fn absolutise(node: &mut Node, base: &Path) {
    if let Kind::Scalar(s) = &mut node.kind {
        let is_remote = s.text.contains("://") || s.text.starts_with("git@");
        if !s.text.is_empty() && !s.text.starts_with('/') && !s.text.starts_with('~') && !is_remote
        {
            s.text = normalise(&base.join(&s.text)).display().to_string();
        }
    }
}

/// Resolves `secrets.*.file`, `configs.*.file`, `services.*.env_file` and
/// `services.*.build.context` in a file's tree.
pub fn resolve(tree: &mut Node, base: &Path) {
    for section in ["secrets", "configs"] {
        if let Some(Kind::Map(items)) = tree.get_mut(section).map(|n| &mut n.kind) {
            for (_, item) in items.iter_mut() {
                if let Some(file) = item.get_mut("file") {
                    absolutise(file, base);
                }
            }
        }
    }
    let Some(Kind::Map(services)) = tree.get_mut("services").map(|n| &mut n.kind) else {
        return;
    };
    for (_, service) in services.iter_mut() {
        if let Some(env_file) = service.get_mut("env_file") {
            match &mut env_file.kind {
                Kind::Scalar(_) => absolutise(env_file, base),
                Kind::Seq(items) => {
                    for item in items.iter_mut() {
                        match &item.kind {
                            Kind::Map(_) => {
                                if let Some(p) = item.get_mut("path") {
                                    absolutise(p, base);
                                }
                            }
                            _ => absolutise(item, base),
                        }
                    }
                }
                Kind::Map(_) => {}
            }
        }
        if let Some(build) = service.get_mut("build") {
            match &build.kind {
                Kind::Scalar(_) => absolutise(build, base),
                _ => {
                    if let Some(context) = build.get_mut("context") {
                        absolutise(context, base);
                    }
                }
            }
        }
    }
}

/// `a/./b/../c` → `a/c`, lexically (as Go's `filepath.Join` cleans paths); the file system is
/// not asked, so a missing file is reported under the path the user wrote.
pub fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

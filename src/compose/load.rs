//! Finding and loading a project: default file discovery, the project directory, `.env`, and
//! each file's documents through interpolation, `include`, `extends` and the merge, in
//! compose-go's order (per document: interpolate, include, extends, merge into the result).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::ComposeError;
use super::interpolate::{interpolate_tree, TemplateError};
use super::yaml::{self, Kind, Node, Pos};
use super::{dotenv, extends, merge, paths, Environment};

/// Compose's default file names, in its order of preference.
pub const COMPOSE_NAMES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
];
/// The override files read after the default file, first one found.
pub const OVERRIDE_NAMES: [&str; 4] = [
    "compose.override.yaml",
    "compose.override.yml",
    "docker-compose.override.yml",
    "docker-compose.override.yaml",
];

/// What loading learned besides the tree.
#[derive(Debug, Default)]
pub struct Notes {
    /// Variables referenced but not set (they became "").
    pub unset: BTreeSet<String>,
}

/// Shared state of one load: the working directory (for display names), the files on the
/// `include`/`extends` path (cycle detection), and the `extends: file:` bases already parsed.
pub struct Loader<'a> {
    pub cwd: &'a Path,
    pub notes: Notes,
    pub including: Vec<PathBuf>,
    /// Each base file's last document, by canonical path, as parsed (before interpolation,
    /// which depends on the project that extends it): ten services extending one file read
    /// and parse it once, and all see the same text.
    bases: BTreeMap<PathBuf, Node>,
}

/// The default files: the first Compose file in the working directory or its parents, plus
/// the first override file beside it.
pub fn discover(cwd: &Path) -> Result<(Vec<PathBuf>, Vec<String>), ComposeError> {
    let mut warnings = Vec::new();
    for dir in cwd.ancestors() {
        let found: Vec<PathBuf> = COMPOSE_NAMES
            .iter()
            .map(|n| dir.join(n))
            .filter(|p| p.is_file())
            .collect();
        let Some(first) = found.first() else {
            continue;
        };
        if found.len() > 1 {
            warnings.push(format!(
                "found several Compose files in {}; using {}",
                dir.display(),
                first.file_name().unwrap_or_default().to_string_lossy()
            ));
        }
        let mut files = vec![first.clone()];
        if let Some(o) = OVERRIDE_NAMES
            .iter()
            .map(|n| dir.join(n))
            .find(|p| p.is_file())
        {
            files.push(o);
        }
        return Ok((files, warnings));
    }
    Err(ComposeError::Input(format!(
        "no Compose file in {} or its parents (looked for {}): pass -f FILE",
        cwd.display(),
        COMPOSE_NAMES.join(", ")
    )))
}

/// `path` as the user should see it: relative to the working directory when under it.
pub fn display(path: &Path, cwd: &Path) -> String {
    path.strip_prefix(cwd).unwrap_or(path).display().to_string()
}

/// The project's variables: the env files (`.env` in the project directory unless
/// `--env-file` is given), overlaid by the process environment, which wins.
pub fn environment(
    project_dir: &Path,
    env_files: &[PathBuf],
    os: &Environment,
    cwd: &Path,
) -> Result<Environment, ComposeError> {
    let default = project_dir.join(".env");
    let files: Vec<PathBuf> = if env_files.is_empty() {
        if default.is_file() {
            vec![default]
        } else {
            Vec::new()
        }
    } else {
        env_files.to_vec()
    };
    let mut env = Environment::default();
    for file in files {
        let name = display(&file, cwd);
        let text = std::fs::read_to_string(&file).map_err(|source| ComposeError::Read {
            path: name.clone(),
            source,
        })?;
        let mut lookup = env.clone();
        lookup.overlay(os);
        let entries = dotenv::parse(&text, dotenv::Lookup::Vars(&lookup))
            .map_err(|e| ComposeError::at(&file_pos(&name, e.line), e.problem))?;
        for e in entries {
            env.insert(e.name, e.value);
        }
    }
    env.overlay(os);
    Ok(env)
}

pub fn file_pos(name: &str, line: usize) -> Pos {
    Pos {
        file: Arc::from(name),
        line,
        col: 1,
    }
}

impl<'a> Loader<'a> {
    pub fn new(cwd: &'a Path) -> Self {
        Self {
            cwd,
            notes: Notes::default(),
            including: Vec::new(),
            bases: BTreeMap::new(),
        }
    }

    /// The document an `extends: file:` at `at` names (its last one), read and parsed on
    /// first use; `written` is the path as the entry writes it.
    pub fn base_file(
        &mut self,
        path: &Path,
        at: &Pos,
        written: &str,
    ) -> Result<Node, ComposeError> {
        // A path that cannot be resolved is read under its own name, which then fails
        // with the reason.
        let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        if let Some(doc) = self.bases.get(&key) {
            return Ok(doc.clone());
        }
        let doc = self
            .parse_file(path, Some(at))?
            .pop()
            .ok_or_else(|| ComposeError::at(at, format!("{written} holds no document")))?;
        self.bases.insert(key, doc.clone());
        Ok(doc)
    }

    /// Reads and parses one file; every document must be a mapping.
    pub fn parse_file(&self, path: &Path, at: Option<&Pos>) -> Result<Vec<Node>, ComposeError> {
        let name = display(path, self.cwd);
        let text = std::fs::read_to_string(path).map_err(|source| match at {
            Some(pos) => ComposeError::ReadAt {
                pos: pos.clone(),
                what: format!("cannot read Compose file {name}"),
                source,
            },
            None => ComposeError::Read {
                path: name.clone(),
                source,
            },
        })?;
        let docs = yaml::parse(&Arc::from(name.as_str()), &text)?;
        for doc in &docs {
            if !matches!(doc.kind, Kind::Map(_)) {
                return Err(ComposeError::at(
                    &doc.pos,
                    "a Compose file must be a mapping (services:, secrets:, …)",
                ));
            }
        }
        Ok(docs)
    }

    /// Interpolates a document with `env`.
    pub fn interpolate(&mut self, doc: &mut Node, env: &Environment) -> Result<(), ComposeError> {
        interpolate_tree(doc, &mut Vec::new(), env, &mut self.notes.unset).map_err(|e| {
            let message = match e.error {
                TemplateError::Invalid => format!(
                    "invalid interpolation in {}: use ${{VAR}}, ${{VAR:-default}}, … and write $$ for a literal $",
                    e.path
                ),
                TemplateError::Required { name, message } => format!(
                    "required variable {name} is missing a value ({}): {message}",
                    e.path
                ),
            };
            ComposeError::at(&e.node_pos, message)
        })
    }

    /// Loads `files` as one project rooted at `project_dir`: the merged tree with relative
    /// paths made absolute and `!reset` values removed.
    pub fn load(
        &mut self,
        files: &[PathBuf],
        project_dir: &Path,
        env: &Environment,
    ) -> Result<Node, ComposeError> {
        let depth = self.including.len();
        self.including.extend(files.iter().cloned());
        let merged = self.load_files(files, project_dir, env);
        self.including.truncate(depth);
        let mut tree = merged?
            .ok_or_else(|| ComposeError::Input("the Compose files hold no document".into()))?;
        merge::strip_resets(&mut tree);
        paths::resolve(&mut tree, project_dir);
        Ok(tree)
    }

    /// The files' documents, each interpolated, with includes and extends applied, merged.
    fn load_files(
        &mut self,
        files: &[PathBuf],
        project_dir: &Path,
        env: &Environment,
    ) -> Result<Option<Node>, ComposeError> {
        let mut merged: Option<Node> = None;
        for file in files {
            for mut doc in self.parse_file(file, None)? {
                self.interpolate(&mut doc, env)?;
                extends::apply_include(self, &mut doc, project_dir, env)?;
                extends::apply_extends(self, &mut doc, file, env)?;
                merged = Some(match merged {
                    None => doc,
                    Some(base) => merge::merge(base, doc, &mut Vec::new())?,
                });
            }
        }
        Ok(merged)
    }
}

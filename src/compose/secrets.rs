//! A service's `secrets:` as annotation entries, and the values to seal. The entries keep
//! Compose's mount exactly: target (relative under `/run/secrets`, absolute kept), uid, gid and
//! mode with writable bits dropped; an entry without uid/gid on a service whose `user:` is
//! numeric gets that owner, so a `0400` file stays readable by the process (the report says
//! so). Values are read into zeroizing buffers and never shown.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use zeroize::Zeroizing;

use super::error::ComposeError;
use super::mode;
use super::model::{Definition, Project, Source};
use super::report::Report;
use super::service::Service;
use super::yaml::{shorten, Pos};
use super::Environment;
use crate::spec::{self, SecretRef, Target};
use crate::store::MAX_SECRET_BYTES;

/// A service's numeric `user: UID[:GID]`, if it is one.
pub fn numeric_user(user: &str) -> Option<(u32, Option<u32>)> {
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let uid = u.parse().ok()?;
    match g {
        None => Some((uid, None)),
        Some(g) => Some((uid, Some(g.parse().ok()?))),
    }
}

/// Checks a secret name with Swarm's rule, at `pos`.
pub fn check_name(name: &str, pos: &Pos, what: &str) -> Result<(), ComposeError> {
    spec::check_name(name).map_err(|_| {
        ComposeError::at(
            pos,
            format!(
                "{what} {:?} cannot be a secret name: use 1-{} of [a-zA-Z0-9-_.], alphanumeric at both ends (set name: to a valid one)",
                shorten(name),
                spec::MAX_NAME_LEN
            ),
        )
    })
}

/// One reference of a pod template, with where it was declared.
#[derive(Debug, Clone)]
pub struct Reference {
    pub entry: SecretRef,
    pub pos: Pos,
}

/// Adds `entry` to `refs`, refusing a target that another entry already uses.
pub fn push(refs: &mut Vec<Reference>, entry: SecretRef, pos: &Pos) -> Result<(), ComposeError> {
    if let Some(other) = refs
        .iter()
        .find(|r| r.entry.target.conflict_with(&entry.target).is_some())
    {
        let why = other
            .entry
            .target
            .conflict_with(&entry.target)
            .unwrap_or("is declared twice");
        return Err(ComposeError::at(
            pos,
            format!(
                "target {} {why} (also at {}): give each secret its own target",
                entry.target.container_path(),
                other.pos
            ),
        ));
    }
    refs.push(Reference {
        entry,
        pos: pos.clone(),
    });
    Ok(())
}

/// The references of `svc`'s `secrets:` and the definitions they use.
pub fn references<'p>(
    project: &'p Project,
    svc: &Service,
    report: &mut Report,
) -> Result<(Vec<Reference>, Vec<&'p Definition>), ComposeError> {
    let owner = svc.user.as_ref().and_then(|(u, _)| numeric_user(u));
    let mut refs = Vec::new();
    let mut used = Vec::new();
    for r in &svc.secrets {
        let def = project.secrets.get(&r.source).ok_or_else(|| {
            ComposeError::at(
                &r.pos,
                format!(
                    "service {} uses secret {:?}, which the top-level secrets: section does not define: add it (e.g. secrets: {}: file: ./{}.txt) or fix the name",
                    svc.name,
                    shorten(&r.source),
                    shorten(&r.source),
                    shorten(&r.source)
                ),
            )
        })?;
        let name = match &def.source {
            Source::External(name) => name.clone(),
            _ => def.name.clone(),
        };
        check_name(&name, &def.pos, "secret name")?;
        let written = r.target.clone().unwrap_or_else(|| def.key.clone());
        let target = Target::parse(&written)
            .map_err(|e| ComposeError::at(&r.pos, format!("secret {}: {e}", shorten(&r.source))))?;
        let bits = match r.mode {
            Some(m) => {
                if m.suspicious_decimal {
                    report.warn(
                        Some(&r.pos),
                        format!(
                            "mode {} is a decimal number ({:#o} in octal), as Compose reads it; write 0{} or \"0{}\" if you meant octal",
                            m.bits, m.bits, m.bits, m.bits
                        ),
                    );
                }
                mode::effective(m.bits)
            }
            None => spec::DEFAULT_MODE,
        };
        let uid = r.uid.or(owner.map(|(u, _)| u));
        let gid = r.gid.or(owner.and_then(|(_, g)| g));
        if let (Some((user, _)), true) = (
            &svc.user,
            owner.is_some() && (r.uid.is_none() || r.gid.is_none()),
        ) {
            report.owner(format!(
                "service {}: secret {} at {} is owned by uid {} gid {} (from user: {user})",
                svc.name,
                name,
                target.container_path(),
                uid.unwrap_or(0),
                gid.unwrap_or(0)
            ));
        }
        let entry = SecretRef {
            source: name,
            target,
            uid: uid.unwrap_or(0),
            gid: gid.unwrap_or(0),
            mode: bits,
        };
        push(&mut refs, entry, &r.pos)?;
        if !used.iter().any(|d: &&Definition| d.key == def.key) {
            used.push(def);
        }
    }
    Ok((refs, used))
}

/// The annotation value for `refs`, checked by parsing it back with the webhook's parser.
pub fn annotation(refs: &[Reference], at: &Pos) -> Result<String, ComposeError> {
    let text = spec::canonical_list(&refs.iter().map(|r| r.entry.clone()).collect::<Vec<_>>());
    match spec::parse_secrets(&text) {
        Ok(parsed)
            if parsed.len() == refs.len()
                && parsed.iter().zip(refs).all(|(p, r)| *p == r.entry) =>
        {
            Ok(text)
        }
        Ok(_) => Err(ComposeError::at(
            at,
            "the secrets do not round-trip through the annotation parser",
        )),
        Err(e) => Err(ComposeError::at(
            at,
            format!("the secrets annotation would be refused: {e}"),
        )),
    }
}

/// A value to seal: shared, since one file can be sealed for several namespaces.
pub type Value = Rc<Zeroizing<Vec<u8>>>;

/// The secret values of one conversion. A file is read once, by canonical path, however many
/// definitions, services and namespaces use it, so every sealed copy holds the same bytes even
/// when the file changes during the conversion or is a pipe that can be read only once.
#[derive(Default)]
pub struct Values {
    files: BTreeMap<PathBuf, Value>,
}

impl Values {
    /// A definition's value for sealing.
    pub fn get(
        &mut self,
        def: &Definition,
        env: &Environment,
        cwd: &Path,
    ) -> Result<Value, ComposeError> {
        let data = match &def.source {
            Source::File(path) => self.file(def, path, cwd)?,
            Source::Environment(var) => match env.get(var) {
                Some(v) => Rc::new(Zeroizing::new(v.as_bytes().to_vec())),
                None => {
                    return Err(ComposeError::at(
                        &def.pos,
                        format!(
                            "secret {}: environment variable {var} is not set: export it or set it in .env",
                            shorten(&def.key)
                        ),
                    ))
                }
            },
            Source::Content(text) => Rc::new(Zeroizing::new(text.as_bytes().to_vec())),
            Source::External(_) => Rc::default(),
        };
        if data.is_empty() || data.len() >= MAX_SECRET_BYTES {
            return Err(ComposeError::at(
                &def.pos,
                format!(
                    "secret {} is {} bytes: a secret must be larger than 0 and less than {MAX_SECRET_BYTES} bytes",
                    shorten(&def.key),
                    data.len()
                ),
            ));
        }
        Ok(data)
    }

    fn file(&mut self, def: &Definition, path: &Path, cwd: &Path) -> Result<Value, ComposeError> {
        // A path that cannot be resolved is read under its own name, which then fails with
        // the reason.
        let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        if let Some(data) = self.files.get(&key) {
            return Ok(Rc::clone(data));
        }
        let bytes = std::fs::read(path).map_err(|source| ComposeError::ReadAt {
            pos: def.pos.clone(),
            what: format!(
                "secret {}: cannot read file {} (create it, or fix file:)",
                shorten(&def.key),
                super::load::display(path, cwd)
            ),
            source,
        })?;
        let data = Rc::new(Zeroizing::new(bytes));
        self.files.insert(key, Rc::clone(&data));
        Ok(data)
    }
}

/// Values to seal, by namespace and secret name; the first definition seen for a name wins
/// and a second one with another source is refused.
#[derive(Default)]
pub struct ToSeal {
    pub items: BTreeMap<(String, String), SealItem>,
}

pub struct SealItem {
    pub data: Value,
    /// Where the value came from, for the report: never the value.
    pub origin: String,
    pub pos: Pos,
}

impl ToSeal {
    /// Adds the value of `namespace/name` unless it is already there from the same origin;
    /// `data` is only asked for a name not seen yet (a secret that ten services use is read
    /// once).
    pub fn add(
        &mut self,
        namespace: &str,
        name: &str,
        origin: String,
        pos: &Pos,
        data: impl FnOnce() -> Result<Value, ComposeError>,
    ) -> Result<(), ComposeError> {
        let key = (namespace.to_string(), name.to_string());
        if let Some(existing) = self.items.get(&key) {
            if existing.origin != origin {
                return Err(ComposeError::at(
                    pos,
                    format!(
                        "two different values would be sealed as {namespace}/{name} (also at {}): give them different names",
                        existing.pos
                    ),
                ));
            }
            return Ok(());
        }
        let item = SealItem {
            data: data()?,
            origin,
            pos: pos.clone(),
        };
        self.items.insert(key, item);
        Ok(())
    }
}

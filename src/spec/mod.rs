//! The `runsecrets.io/secrets` annotation: Docker's `--secret` syntax turned into validated
//! references. The webhook, the offline CLI and the node plugin all parse through here, so a
//! reference means the same thing at admission time and at mount time.

mod mountpoints;
mod target;

pub use mountpoints::{MountpointError, Mountpoints, MAX_MOUNTPOINTS};
pub use target::{is_dir_prefix, Target, TargetError, EXTERNAL_DIR, SERVICE_ACCOUNT_DIR};

use std::fmt;

/// What every annotation runsecrets reads begins with: a review keeps only these and skips the
/// rest unread.
pub const ANNOTATION_PREFIX: &str = "runsecrets.io/";
/// Annotation on a pod (or pod template) declaring the secrets it wants, one reference per line
/// or `;`.
pub const SECRETS_ANNOTATION: &str = "runsecrets.io/secrets";
/// Annotation limiting which containers get the mount; comma-separated names, default all.
pub const CONTAINERS_ANNOTATION: &str = "runsecrets.io/containers";
/// Status annotation written by the webhook: `sha256:<hex>` of the canonical references, so a
/// reinvocation or a re-applied pod is recognised and left alone.
pub const INJECTED_ANNOTATION: &str = "runsecrets.io/injected";
/// Names of env vars a pod may carry as literals despite the policy (comma-separated).
pub const ALLOW_ENV_ANNOTATION: &str = "runsecrets.io/allow-env";
/// Annotation `secret reseal` writes on a `RunSecret` it updates: the server's proof
/// (`POST /v1/reseal`) that it made the new envelope from the stored one. The webhook refuses a
/// spec change without it, so an update cannot be used to test guesses of the value.
pub const RESEAL_TAG_ANNOTATION: &str = "runsecrets.io/reseal-tag";
/// CSI driver name, also the CSIDriver object's name and the token audience.
pub const DRIVER_NAME: &str = "runsecrets.io";
/// Name of the volume the webhook adds to a pod.
pub const VOLUME_NAME: &str = "runsecrets";
/// Where the volume is mounted in every selected container (Compose's location).
pub const MOUNT_PATH: &str = "/run/secrets";
/// CSI volume attribute carrying the canonical reference list (one reference per line).
pub const SECRETS_ATTRIBUTE: &str = "runsecrets.io/secrets";
/// CSI volume attribute listing directories, relative to the volume, that other mounts of the
/// pod need as mount points inside the read-only volume (one per line; see [`Mountpoints`]).
pub const MOUNTPOINTS_ATTRIBUTE: &str = "runsecrets.io/mountpoints";

/// Swarm's default file mode for a secret.
pub const DEFAULT_MODE: u32 = 0o444;
/// Longest accepted secret name (Swarm's limit).
pub const MAX_NAME_LEN: usize = 64;
/// Most references one pod may declare; keeps volume attributes and reviews small.
pub const MAX_REFERENCES: usize = 256;

/// One validated reference: which secret, where, and with which owner and mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    pub source: String,
    pub target: Target,
    pub uid: u32,
    pub gid: u32,
    /// Permission bits with the write bits cleared: the files live on a read-only mount, as in
    /// Compose where writable bits are ignored.
    pub mode: u32,
}

impl SecretRef {
    /// The canonical long form; parsing it gives back the same reference.
    pub fn canonical(&self) -> String {
        format!(
            "source={},target={},uid={},gid={},mode={:04o}",
            self.source,
            self.target.as_written(),
            self.uid,
            self.gid,
            self.mode
        )
    }
}

/// Everything wrong with one entry of the annotation. The entry is named by its position and,
/// when it has a valid one, its source; its text is not quoted, since a mistaken entry may hold
/// a pasted value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryError {
    /// 1-based position of the entry among the non-empty entries.
    pub index: usize,
    pub source: Option<String>,
    pub problem: String,
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(source) => write!(
                f,
                "entry {} (source {source:?}): {}",
                self.index, self.problem
            ),
            None => write!(f, "entry {}: {}", self.index, self.problem),
        }
    }
}

/// All problems found in an annotation, so one `kubectl apply` shows every mistake at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", join(.0))]
pub struct SpecError(pub Vec<EntryError>);

fn join(errors: &[EntryError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The entry's source name, when it has a valid one: safe to show in messages.
fn named_source(entry: &str) -> Option<String> {
    let source = if entry.contains('=') || entry.contains(',') {
        entry.split(',').find_map(|field| {
            let (key, value) = field.split_once('=')?;
            matches!(key.trim().to_ascii_lowercase().as_str(), "source" | "src")
                .then(|| value.trim())
        })?
    } else {
        entry
    };
    check_name(source).ok().map(|()| source.to_string())
}

/// Splits an annotation value into its non-empty, trimmed entries (newline or `;`).
fn entries(value: &str) -> impl Iterator<Item = &str> {
    value
        .split(['\n', ';'])
        .map(str::trim)
        .filter(|e| !e.is_empty())
}

/// Parses `runsecrets.io/secrets`. Every entry is checked; all errors are returned together.
pub fn parse_secrets(value: &str) -> Result<Vec<SecretRef>, SpecError> {
    let mut refs: Vec<SecretRef> = Vec::new();
    let mut errors = Vec::new();
    for (i, entry) in entries(value).enumerate() {
        let index = i + 1;
        if index > MAX_REFERENCES {
            errors.push(EntryError {
                index,
                source: None,
                problem: format!("at most {MAX_REFERENCES} secrets per pod"),
            });
            break;
        }
        match parse_entry(entry) {
            Ok(r) => {
                let conflict = refs.iter().find_map(|other| {
                    other
                        .target
                        .conflict_with(&r.target)
                        .map(|why| format!("target {:?} {why}", r.target.as_written()))
                });
                match conflict {
                    Some(problem) => errors.push(EntryError {
                        index,
                        source: Some(r.source),
                        problem,
                    }),
                    None => refs.push(r),
                }
            }
            Err(problem) => errors.push(EntryError {
                index,
                source: named_source(entry),
                problem,
            }),
        }
    }
    if refs.is_empty() && errors.is_empty() {
        errors.push(EntryError {
            index: 0,
            source: None,
            problem: "declares no secret".into(),
        });
    }
    if errors.is_empty() {
        Ok(refs)
    } else {
        Err(SpecError(errors))
    }
}

fn parse_entry(entry: &str) -> Result<SecretRef, String> {
    if !entry.contains('=') && !entry.contains(',') {
        check_name(entry)?;
        return Ok(SecretRef {
            source: entry.to_string(),
            target: Target::parse(entry).map_err(|e| e.to_string())?,
            uid: 0,
            gid: 0,
            mode: DEFAULT_MODE,
        });
    }
    let (mut source, mut target, mut uid, mut gid, mut mode) = (None, None, None, None, None);
    for (n, field) in entry.split(',').map(str::trim).enumerate() {
        let Some((key, value)) = field.split_once('=') else {
            return Err(format!(
                "field {} is not key=value (long syntax: source=NAME,target=PATH,uid=N,gid=N,mode=0444)",
                n + 1
            ));
        };
        let (key, value) = (key.trim(), value.trim());
        let slot = match key.to_ascii_lowercase().as_str() {
            "source" | "src" => &mut source,
            "target" => &mut target,
            "uid" => &mut uid,
            "gid" => &mut gid,
            "mode" => &mut mode,
            _ => {
                let shown = quoted(key, 32, |c| c.is_ascii_alphabetic() || c == '_' || c == '-');
                return Err(format!(
                    "unknown key {} (known: source, src, target, uid, gid, mode)",
                    shown.as_deref().unwrap_or("an unreadable key")
                ));
            }
        };
        if slot.replace(value).is_some() {
            return Err(format!("key {key:?} given twice"));
        }
    }
    let source = match source {
        Some(s) if !s.is_empty() => s,
        _ => return Err("missing source (source=NAME)".into()),
    };
    check_name(source)?;
    let target = Target::parse(target.unwrap_or(source)).map_err(|e| e.to_string())?;
    Ok(SecretRef {
        source: source.to_string(),
        target,
        uid: uid.map(|v| parse_id("uid", v)).transpose()?.unwrap_or(0),
        gid: gid.map(|v| parse_id("gid", v)).transpose()?.unwrap_or(0),
        mode: mode.map(parse_mode).transpose()?.unwrap_or(DEFAULT_MODE) & !0o222,
    })
}

/// Swarm's name rule: 1–64 of `[a-zA-Z0-9-_.]`, alphanumeric at both ends.
pub fn check_name(name: &str) -> Result<(), String> {
    let bytes = name.as_bytes();
    let valid_chars = bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    let ends_ok = matches!((bytes.first(), bytes.last()),
        (Some(a), Some(z)) if a.is_ascii_alphanumeric() && z.is_ascii_alphanumeric());
    if name.is_empty() || name.len() > MAX_NAME_LEN || !valid_chars || !ends_ok {
        return Err(format!(
            "invalid secret name: use 1-{MAX_NAME_LEN} of [a-zA-Z0-9-_.], alphanumeric at both ends"
        ));
    }
    Ok(())
}

fn parse_id(key: &str, value: &str) -> Result<u32, String> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{key} is not a numeric id"));
    }
    value
        .parse::<u32>()
        .map_err(|_| format!("{key} is out of range (0-4294967295)"))
}

fn parse_mode(value: &str) -> Result<u32, String> {
    let bad = || "mode must be octal between 0 and 0777".to_string();
    if value.is_empty() || value.len() > 5 || !value.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(bad());
    }
    match u32::from_str_radix(value, 8) {
        Ok(m) if m <= 0o777 => Ok(m),
        _ => Err(bad()),
    }
}

/// `[A-Za-z0-9._-]`: every character of Kubernetes object names and Swarm secret names, the
/// shape a mistyped name keeps; a word with others in it is not a name.
pub fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// A word the caller wrote (a key, a container name), as a message shows it: whole and quoted
/// when it has the shape of what it should be (at most `max` characters, each accepted by
/// `plain`), else not at all. A mistaken annotation may hold a pasted value or megabytes of
/// text, and a denial goes back to the client and into the apiserver's audit log.
pub fn quoted(word: &str, max: usize, plain: fn(char) -> bool) -> Option<String> {
    (!word.is_empty() && word.chars().count() <= max && word.chars().all(plain))
        .then(|| format!("{word:?}"))
}

/// Parses `runsecrets.io/containers`: names separated by commas, `;`, newlines or spaces.
/// Empty means every container.
pub fn parse_containers(value: &str) -> Vec<String> {
    value
        .split([',', ';', '\n', ' ', '\t'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The canonical, order-preserving form of the references: what the volume attributes carry
/// and what the injection digest is taken over.
pub fn canonical_list(refs: &[SecretRef]) -> String {
    refs.iter()
        .map(SecretRef::canonical)
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;

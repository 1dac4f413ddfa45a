//! The env-credential policy, Pod Security Admission style: a level per mode (enforce, warn,
//! audit), chosen per namespace. The same engine runs in `/validate` and in `runsecrets scan`.

pub mod detect;
mod report;

pub use report::{file_fix, suggested_name, Report, WARNING_MAX};

use std::fmt;
use std::str::FromStr;

use crate::admission::pod::{Container, EnvFromSource, EnvVar, PodSpec};

use detect::Reason;

/// How strict a mode is. Ordered: a finding of level L is reported at every level ≥ L.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Level {
    #[default]
    Off,
    /// No literal credentials in `env`.
    Baseline,
    /// Also no Kubernetes Secret delivered through env (`secretKeyRef`, `envFrom.secretRef`).
    Strict,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Off => "off",
            Level::Baseline => "baseline",
            Level::Strict => "strict",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Level {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "off" => Ok(Level::Off),
            "baseline" => Ok(Level::Baseline),
            "strict" => Ok(Level::Strict),
            _ => Err(format!("unknown level {s:?} (off, baseline, strict)")),
        }
    }
}

/// What happens to findings: refused, shown to the client, or recorded in the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    Enforce,
    Warn,
    Audit,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Enforce, Mode::Warn, Mode::Audit];

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Warn => "warn",
            Mode::Audit => "audit",
        }
    }

    /// The namespace label that sets this mode's level, as in Pod Security Admission.
    pub fn label(self) -> &'static str {
        match self {
            Mode::Enforce => "runsecrets.io/enforce",
            Mode::Warn => "runsecrets.io/warn",
            Mode::Audit => "runsecrets.io/audit",
        }
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| format!("unknown mode {s:?} (enforce, warn, audit)"))
    }
}

/// The level of each mode for one review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Levels {
    pub enforce: Level,
    pub warn: Level,
    pub audit: Level,
}

impl Levels {
    pub fn get(&self, mode: Mode) -> Level {
        match mode {
            Mode::Enforce => self.enforce,
            Mode::Warn => self.warn,
            Mode::Audit => self.audit,
        }
    }

    /// Only `mode` at `level`: what a webhook entry selected by one namespace label asks for.
    pub fn only(mode: Mode, level: Level) -> Self {
        let mut l = Levels::default();
        match mode {
            Mode::Enforce => l.enforce = level,
            Mode::Warn => l.warn = level,
            Mode::Audit => l.audit = level,
        }
        l
    }

    pub fn max(&self) -> Level {
        self.enforce.max(self.warn).max(self.audit)
    }
}

/// Which list a container is in; messages say "initContainer" so the user finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContainerKind {
    Init,
    Regular,
    Ephemeral,
}

impl ContainerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerKind::Init => "initContainer",
            ContainerKind::Regular => "container",
            ContainerKind::Ephemeral => "ephemeralContainer",
        }
    }
}

/// Why an env entry breaks the policy. Carries names, never values.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Rule {
    Literal(Reason),
    SecretKeyRef { secret: String },
    EnvFromSecret { secret: String },
}

impl Rule {
    pub fn level(&self) -> Level {
        match self {
            Rule::Literal(_) => Level::Baseline,
            Rule::SecretKeyRef { .. } | Rule::EnvFromSecret { .. } => Level::Strict,
        }
    }

    /// Stable short id, for metrics and JSON output.
    pub fn id(&self) -> &'static str {
        match self {
            Rule::Literal(r) => r.rule(),
            Rule::SecretKeyRef { .. } => "secret-key-ref",
            Rule::EnvFromSecret { .. } => "env-from-secret",
        }
    }
}

/// One env entry that breaks the policy.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Finding {
    pub kind: ContainerKind,
    pub container: String,
    /// The variable's name; for `envFrom` the prefix (or empty).
    pub variable: String,
    pub rule: Rule,
}

/// Checks every container of a pod spec at `level`. Variables named in `allowed` are not
/// findings; they are returned separately so the exemption is visible in the audit log.
pub fn check_spec(
    spec: &PodSpec,
    level: Level,
    allowed: &[String],
) -> (Vec<Finding>, Vec<Finding>) {
    let mut findings = Vec::new();
    if level == Level::Off {
        return (findings, Vec::new());
    }
    let containers = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| (ContainerKind::Init, view(c)))
        .chain(
            spec.containers
                .iter()
                .map(|c| (ContainerKind::Regular, view(c))),
        )
        .chain(
            spec.ephemeral_containers
                .iter()
                .flatten()
                .map(|c| (ContainerKind::Ephemeral, view(c))),
        );
    for (kind, (name, env, env_from)) in containers {
        check_container(kind, name, env, env_from, level, &mut findings);
    }
    findings
        .into_iter()
        .partition(|f| !allowed.contains(&f.variable))
}

type View<'a> = (&'a str, &'a [EnvVar], &'a [EnvFromSource]);

fn view(c: &Container) -> View<'_> {
    (
        &c.name,
        c.env.as_deref().unwrap_or_default(),
        c.env_from.as_deref().unwrap_or_default(),
    )
}

fn check_container(
    kind: ContainerKind,
    container: &str,
    env: &[EnvVar],
    env_from: &[EnvFromSource],
    level: Level,
    out: &mut Vec<Finding>,
) {
    let mut push = |variable: &str, rule: Rule| {
        if rule.level() <= level {
            out.push(Finding {
                kind,
                container: container.to_string(),
                variable: variable.to_string(),
                rule,
            });
        }
    };
    for var in env {
        if let Some(value) = var.value.as_deref() {
            if let Some(reason) = detect::literal_credential(&var.name, value) {
                push(&var.name, Rule::Literal(reason));
            }
        }
        let secret_ref = var
            .value_from
            .as_ref()
            .and_then(|f| f.secret_key_ref.as_ref());
        if let Some(r) = secret_ref {
            push(
                &var.name,
                Rule::SecretKeyRef {
                    secret: r.name.clone(),
                },
            );
        }
    }
    for source in env_from {
        if let Some(r) = &source.secret_ref {
            push(
                source.prefix.as_deref().unwrap_or_default(),
                Rule::EnvFromSecret {
                    secret: r.name.clone(),
                },
            );
        }
    }
}

/// Parses the exemption annotation: variable names separated by commas or whitespace.
pub fn parse_allowed(value: Option<&String>) -> Vec<String> {
    value
        .map(|v| {
            v.split([',', ';', '\n', ' ', '\t'])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;

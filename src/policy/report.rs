//! Turning findings into what each mode shows: a denial that says how to fix every finding,
//! short warnings for kubectl, and audit annotations. Values never appear; names do.

use std::collections::BTreeMap;

use super::{detect, Finding, Level, Levels, Mode, Rule};
use crate::spec;

/// kubectl prints each warning on its own line; the apiserver truncates long ones.
pub const WARNING_MAX: usize = 120;
/// Findings listed in a denial, in warnings or in an audit annotation before "and N more":
/// a hostile object must not turn into a multi-megabyte message or audit entry.
const LIST_MAX: usize = 20;

/// What the policy decided for one object under one set of levels.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// The denial message, when enforce found something.
    pub denial: Option<String>,
    pub warnings: Vec<String>,
    /// Keys without prefix; the apiserver prefixes them with the webhook's name.
    pub audit: BTreeMap<String, String>,
}

impl Report {
    /// Builds the report for `object` (e.g. `Pod "shop/web"`) from the findings at the highest
    /// level in use; each mode keeps the findings its own level covers.
    pub fn new(object: &str, levels: Levels, findings: &[Finding], exempted: &[Finding]) -> Self {
        let at = |mode: Mode| -> Vec<&Finding> {
            let level = levels.get(mode);
            findings
                .iter()
                .filter(|f| level != Level::Off && f.rule.level() <= level)
                .collect()
        };
        let mut report = Report::default();
        let enforced = at(Mode::Enforce);
        if !enforced.is_empty() {
            report.denial = Some(denial(object, levels.enforce, &enforced));
        }
        let warned = at(Mode::Warn);
        report.warnings = warned.iter().take(LIST_MAX).map(|f| warning(f)).collect();
        if warned.len() > LIST_MAX {
            report.warnings.push(format!(
                "runsecrets: and {} more env findings",
                warned.len() - LIST_MAX
            ));
        }
        let audited = at(Mode::Audit);
        if !audited.is_empty() {
            report.audit.insert(
                "audit-violations".into(),
                format!("{}: {}", levels.audit, audit_list(&audited)),
            );
        }
        if !exempted.is_empty() && levels.max() != Level::Off {
            let exempted: Vec<&Finding> = exempted.iter().collect();
            report
                .audit
                .insert("exempted-env".into(), audit_list(&exempted));
        }
        report
    }
}

fn where_(f: &Finding) -> String {
    format!("{} {:?}", f.kind.as_str(), f.container)
}

/// A secret name suggested for a variable: its lowercase name, when that is a valid name.
pub fn suggested_name(variable: &str) -> String {
    let lower = variable.to_ascii_lowercase();
    if spec::check_name(&lower).is_ok() {
        lower
    } else {
        "NAME".into()
    }
}

/// The variable that should point at the file, and the secret name to suggest for it:
/// `X_FILE` and `x` for `X`, and for a variable already named `X_FILE` itself and `x`.
pub fn file_fix(variable: &str) -> (String, String) {
    match detect::without_file_suffix(variable) {
        Some(stem) => (variable.to_string(), suggested_name(stem)),
        None => (format!("{variable}_FILE"), suggested_name(variable)),
    }
}

fn denial(object: &str, level: Level, findings: &[&Finding]) -> String {
    let mut out = format!(
        "{object}: secrets in env are not allowed here (runsecrets policy {level}). Deliver each as a \
         file: declare it in the {} annotation and point the app at /run/secrets/<name>.",
        spec::SECRETS_ANNOTATION
    );
    for f in findings.iter().take(LIST_MAX) {
        out.push_str("\n- ");
        out.push_str(&where_(f));
        out.push_str(": ");
        let name = suggested_name(&f.variable);
        match &f.rule {
            Rule::Literal(reason) => {
                let (file_variable, name) = file_fix(&f.variable);
                out.push_str(&format!(
                    "env {} holds a literal credential ({}); fix: set {file_variable}=/run/secrets/{name} and add {name} to {}",
                    f.variable,
                    reason.describe(),
                    spec::SECRETS_ANNOTATION
                ))
            }
            Rule::SecretKeyRef { secret } => out.push_str(&format!(
                "env {} comes from Secret {secret:?} (secretKeyRef); fix: set {}_FILE=/run/secrets/{name} and add {name} to {}",
                f.variable,
                f.variable,
                spec::SECRETS_ANNOTATION
            )),
            Rule::EnvFromSecret { secret } => out.push_str(&format!(
                "envFrom takes every key of Secret {secret:?} into env; fix: declare the keys in {} and read them from /run/secrets",
                spec::SECRETS_ANNOTATION
            )),
        }
    }
    if findings.len() > LIST_MAX {
        out.push_str(&format!("\n- and {} more", findings.len() - LIST_MAX));
    }
    out
}

fn shorten(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}

fn warning(f: &Finding) -> String {
    let container = shorten(&f.container, 24);
    let variable = shorten(&f.variable, 32);
    let subject = format!("runsecrets: {} {container:?}", f.kind.as_str());
    let (what, fix) = match &f.rule {
        Rule::Literal(reason) => (
            format!("env {variable}: {}", reason.describe()),
            match detect::without_file_suffix(&f.variable) {
                Some(_) => "point it at /run/secrets".to_string(),
                None => format!("use {variable}_FILE"),
            },
        ),
        Rule::SecretKeyRef { secret } => (
            format!("env {variable} from Secret {:?}", shorten(secret, 24)),
            format!("use {variable}_FILE"),
        ),
        Rule::EnvFromSecret { secret } => (
            format!("envFrom Secret {:?}", shorten(secret, 24)),
            "use /run/secrets".into(),
        ),
    };
    let long = format!("{subject} {what}; {fix}");
    if long.chars().count() <= WARNING_MAX {
        long
    } else {
        shorten(&format!("{subject} {what}"), WARNING_MAX - 1)
    }
}

fn audit_list(findings: &[&Finding]) -> String {
    let mut items: Vec<String> = findings
        .iter()
        .take(LIST_MAX)
        .map(|f| {
            format!(
                "{} {} env {} ({})",
                f.kind.as_str(),
                f.container,
                f.variable,
                f.rule.id()
            )
        })
        .collect();
    if findings.len() > LIST_MAX {
        items.push(format!("and {} more", findings.len() - LIST_MAX));
    }
    items.join(", ")
}

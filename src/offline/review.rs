//! `runsecrets review`: the mutation and the enforce decision, applied to manifests.

use crate::admission::{mutate, Mutation};
use crate::policy::{self, Level, Levels, Mode, Report};
use crate::spec;

use super::{documents, Manifest};

/// The reviewed documents, or every denial.
pub enum ReviewOutput {
    /// The objects after mutation, as a YAML stream.
    Mutated(String),
    /// One line per refused document.
    Denied(Vec<String>),
}

/// Reviews the documents in `text` (from `path`) as the webhook would at `level` enforce.
/// Pod templates of workloads are mutated too, showing what their pods will look like.
pub fn review(path: &str, text: &str, level: Level) -> Result<ReviewOutput, super::InputError> {
    let mut yaml = String::new();
    let mut denied = Vec::new();
    for doc in documents(path, text)? {
        let at = format!("{path}: document {}", doc.index);
        let mut value = doc.value.clone();
        let manifest = match Manifest::read(doc.value) {
            Ok(m) => m,
            Err(e) => {
                denied.push(format!("{at}: {e}"));
                continue;
            }
        };
        if let Some((manifest, t)) = manifest
            .as_ref()
            .and_then(|m| Some((m, m.template.as_ref()?)))
        {
            match mutate(t.annotations.as_ref(), &t.spec, t.prefix) {
                Ok(Mutation::Patch(patch)) => {
                    let applied = patch
                        .to_json_patch()
                        .map_err(|e| e.to_string())
                        .and_then(|p| json_patch::patch(&mut value, &p).map_err(|e| e.to_string()));
                    if let Err(e) = applied {
                        denied.push(format!("{at}: patch does not apply: {e}"));
                    }
                }
                Ok(Mutation::NotRequested | Mutation::AlreadyInjected) => {}
                Err(denial) => {
                    denied.push(format!("{at}: {}: {}", manifest.describe(), denial.message))
                }
            }
            let allowed = policy::parse_allowed(
                t.annotations
                    .as_ref()
                    .and_then(|a| a.get(spec::ALLOW_ENV_ANNOTATION)),
            );
            let (found, exempted) = policy::check_spec(&t.spec, level, &allowed);
            let report = Report::new(
                &manifest.describe(),
                Levels::only(Mode::Enforce, level),
                &found,
                &exempted,
            );
            if let Some(message) = report.denial {
                denied.push(format!("{at}: {message}"));
            }
        }
        yaml.push_str("---\n");
        match serde_norway::to_string(&value) {
            Ok(text) => yaml.push_str(&text),
            Err(e) => denied.push(format!("{at}: cannot print as YAML: {e}")),
        }
    }
    Ok(if denied.is_empty() {
        ReviewOutput::Mutated(yaml)
    } else {
        ReviewOutput::Denied(denied)
    })
}

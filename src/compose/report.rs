//! What a conversion did and what the user has to know: sealed secrets, secrets that must
//! already exist, env credentials moved to files, owners taken from `user:`, and every key
//! that does not map (once each). Names and places only, never a value.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use super::yaml::Pos;

#[derive(Debug, Default)]
pub struct Report {
    pub project: String,
    pub files: Vec<String>,
    /// `namespace/name (from …)`.
    pub sealed: Vec<String>,
    /// `namespace/name`, with the services that use it.
    pub must_exist: BTreeMap<String, BTreeSet<String>>,
    pub env: Vec<String>,
    pub owners: Vec<String>,
    pub warnings: Vec<String>,
    /// Unmapped keys → where they were seen.
    pub unmapped: BTreeMap<String, Vec<Pos>>,
    pub objects: usize,
}

impl Report {
    pub fn warn(&mut self, pos: Option<&Pos>, message: impl AsRef<str>) {
        let line = match pos {
            Some(p) => format!("{p}: {}", message.as_ref()),
            None => message.as_ref().to_string(),
        };
        if !self.warnings.contains(&line) {
            self.warnings.push(line);
        }
    }

    pub fn owner(&mut self, line: String) {
        self.owners.push(line);
    }

    /// The report as text, one finding per line (printed on standard error).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let plural =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        let _ = writeln!(
            out,
            "converted Compose project {:?} ({}): {}, {}",
            self.project,
            self.files.join(", "),
            plural(self.objects, "object", "objects"),
            plural(self.sealed.len(), "sealed secret", "sealed secrets")
        );
        for s in &self.sealed {
            let _ = writeln!(out, "sealed: {s}");
        }
        for (name, services) in &self.must_exist {
            let (ns, secret) = name.split_once('/').unwrap_or(("", name));
            let _ = writeln!(
                out,
                "must exist: secret {name} (external; used by {}): create it with `runsecrets secret create -n {ns} {secret} FILE`",
                services.iter().cloned().collect::<Vec<_>>().join(", ")
            );
        }
        for e in &self.env {
            let _ = writeln!(out, "env: {e}");
        }
        for o in &self.owners {
            let _ = writeln!(out, "owner: {o}");
        }
        for w in &self.warnings {
            let _ = writeln!(out, "warning: {w}");
        }
        for (key, places) in &self.unmapped {
            let shown: Vec<String> = places.iter().take(5).map(ToString::to_string).collect();
            let more = places.len().saturating_sub(5);
            let _ = writeln!(
                out,
                "not converted: {key} ({}{}): no equivalent in the generated objects",
                shown.join(", "),
                if more > 0 {
                    format!(", and {more} more")
                } else {
                    String::new()
                }
            );
        }
        out
    }
}

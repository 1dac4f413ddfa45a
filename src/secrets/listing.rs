//! `secret ls`: Swarm's table, `-q`, `--filter` and `--format`.

use crate::store::{SecretRecord, Store, StoreError};

/// One `--filter`: `name=` (prefix, as Docker), `id=` (prefix) or `label=KEY[=VALUE]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    Name(String),
    Id(String),
    Label(String, Option<String>),
}

impl std::str::FromStr for Filter {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('=') {
            Some(("name", v)) => Ok(Filter::Name(v.to_string())),
            Some(("id", v)) => Ok(Filter::Id(v.to_string())),
            Some(("label", v)) => Ok(match v.split_once('=') {
                Some((k, val)) => Filter::Label(k.to_string(), Some(val.to_string())),
                None => Filter::Label(v.to_string(), None),
            }),
            _ => Err(format!("invalid filter {s:?}: use name=, id= or label=")),
        }
    }
}

impl Filter {
    fn matches(&self, r: &SecretRecord) -> bool {
        match self {
            Filter::Name(n) => r.name.starts_with(n.as_str()),
            Filter::Id(i) => r.id.starts_with(i.as_str()),
            Filter::Label(k, v) => match (r.labels.get(k), v) {
                (Some(_), None) => true,
                (Some(have), Some(want)) => have == want,
                (None, _) => false,
            },
        }
    }
}

/// How `ls` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LsFormat {
    Table,
    Quiet,
    Json,
    /// A Go-template-like line with `{{.ID}}`, `{{.Name}}`, `{{.Namespace}}`, `{{.CreatedAt}}`,
    /// `{{.UpdatedAt}}`, `{{.Size}}`, `{{.Labels}}`.
    Template(String),
}

fn render(template: &str, r: &SecretRecord) -> String {
    let labels = r
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    template
        .replace("{{.ID}}", &r.id)
        .replace("{{.Name}}", &r.name)
        .replace("{{.Namespace}}", &r.namespace)
        .replace("{{.CreatedAt}}", &r.created)
        .replace("{{.UpdatedAt}}", &r.updated)
        .replace("{{.Size}}", &r.spec.size.to_string())
        .replace("{{.Labels}}", &labels)
        .replace("\\t", "\t")
}

/// `secret ls`: all filters must match (Docker's rule for different keys).
pub fn ls(
    store: &dyn Store,
    namespace: &str,
    filters: &[Filter],
    format: &LsFormat,
) -> Result<String, StoreError> {
    let records: Vec<SecretRecord> = store
        .list(Some(namespace))?
        .into_iter()
        .filter(|r| filters.iter().all(|f| f.matches(r)))
        .collect();
    let mut out = String::new();
    match format {
        LsFormat::Quiet => records.iter().for_each(|r| {
            out.push_str(&r.id);
            out.push('\n');
        }),
        LsFormat::Json => {
            for r in &records {
                let line = serde_json::json!({
                    "ID": r.id, "Name": r.name, "Namespace": r.namespace, "CreatedAt": r.created,
                    "UpdatedAt": r.updated, "Size": r.spec.size, "Labels": r.labels,
                });
                out.push_str(&line.to_string());
                out.push('\n');
            }
        }
        LsFormat::Template(t) => records.iter().for_each(|r| {
            out.push_str(&render(t, r));
            out.push('\n');
        }),
        LsFormat::Table => {
            let width = records
                .iter()
                .map(|r| r.name.len())
                .max()
                .unwrap_or(4)
                .max(4);
            out.push_str(&format!(
                "{:<25}   {:<width$}   {:<20}   {}\n",
                "ID", "NAME", "CREATED", "UPDATED"
            ));
            for r in &records {
                out.push_str(&format!(
                    "{:<25}   {:<width$}   {:<20}   {}\n",
                    r.id,
                    r.name,
                    short_time(&r.created),
                    short_time(&r.updated)
                ));
            }
        }
    }
    Ok(out)
}

/// `2026-11-26T20:44:44.334Z` → `2026-11-26 20:44:44`.
fn short_time(rfc3339: &str) -> String {
    rfc3339.get(..19).unwrap_or(rfc3339).replace('T', " ")
}

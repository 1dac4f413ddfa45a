//! `.env` and `env_file:` files, in the format compose-go reads: `KEY=VALUE` or `KEY: VALUE`,
//! an optional `export ` prefix, `#` comments (inline ones after a space in unquoted values),
//! single quotes literal, double quotes with backslash escapes and multi-line values, `${VAR}`
//! expanded in unquoted and double-quoted values (from the lines above, then the lookup), and
//! a bare `KEY` taking its value from the lookup. Errors name the line, never the content.
//!
//! Written by hand: the dotenv crates differ from compose-go on `:` separators, inline
//! comments and expansion.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::error::ComposeError;
use super::interpolate::{expand, TemplateError};
use super::load::file_pos;
use super::yaml::Pos;
use super::Environment;

/// Where a value's `${VAR}` gets its value.
#[derive(Debug, Clone, Copy)]
pub enum Lookup<'a> {
    /// The lines above, then these variables (the shell wins): what the container gets.
    Vars(&'a Environment),
    /// Nowhere: values stay as written, `from_vars` set where one holds a `$`. `scan` reads
    /// a project without its shell, so `${VAR:?message}` must not stop it.
    AsWritten,
}

/// One variable of the file, with the line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub value: String,
    pub line: usize,
    /// The value holds text taken from the lookup (the shell or `.env`).
    pub from_vars: bool,
}

/// Why a line was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DotenvError {
    pub line: usize,
    pub problem: String,
}

/// Reads one `env_file:` entry (`convert` and `scan` both read them here): `None` when the
/// file is missing and not required. `name` is the file as messages show it, `pos` the entry
/// that names it.
pub fn read_file(
    path: &Path,
    required: bool,
    name: &str,
    pos: &Pos,
    lookup: Lookup<'_>,
) -> Result<Option<Vec<Entry>>, ComposeError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(None),
        Err(source) => {
            return Err(ComposeError::ReadAt {
                pos: pos.clone(),
                what: format!(
                    "env_file {name} cannot be read (create it, or mark it required: false)"
                ),
                source,
            })
        }
    };
    parse(&text, lookup)
        .map(Some)
        .map_err(|e| ComposeError::at(&file_pos(name, e.line), e.problem))
}

/// Parses `text`; `lookup` supplies `${VAR}` values not defined earlier in the file and the
/// values of bare `KEY` lines.
pub fn parse(text: &str, lookup: Lookup<'_>) -> Result<Vec<Entry>, DotenvError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut entries: Vec<Entry> = Vec::new();
    let mut line = 1usize;
    let mut rest = text;
    loop {
        // Skip blank space and comment lines.
        let trimmed = rest.trim_start_matches(|c: char| {
            if c == '\n' {
                line += 1;
            }
            c.is_whitespace()
        });
        rest = trimmed;
        if rest.is_empty() {
            break;
        }
        if rest.starts_with('#') {
            match rest.find('\n') {
                Some(i) => rest = &rest[i..],
                None => break,
            }
            continue;
        }
        let start = line;
        if let Some(after) = rest.strip_prefix("export") {
            if after.starts_with([' ', '\t']) {
                rest = after.trim_start_matches([' ', '\t']);
            }
        }
        let key_end = rest.find(['=', ':', '\n']).unwrap_or(rest.len());
        let key = rest[..key_end].trim_end();
        let bad_char = key
            .chars()
            .find(|c| !(c.is_alphanumeric() || "_.-[]".contains(*c)));
        if key.is_empty() || bad_char.is_some() {
            return Err(DotenvError {
                line: start,
                problem: "expected KEY=VALUE (a key of letters, digits, _ . - [ ])".into(),
            });
        }
        let key = key.to_string();
        let sep = rest[key_end..].chars().next();
        if sep != Some('=') && sep != Some(':') {
            // A bare KEY: inherited from the environment, if set there.
            rest = &rest[key_end..];
            if let Some(value) = vars(lookup).and_then(|vars| vars.get(&key)) {
                set(&mut entries, key, value.to_string(), start, true);
            }
            continue;
        }
        rest = rest[key_end + 1..].trim_start_matches([' ', '\t']);
        let (value, from_vars, after) = match rest.chars().next() {
            Some(q @ ('\'' | '"')) => {
                let (raw, after, lines) = quoted(&rest[1..], q).ok_or_else(|| DotenvError {
                    line: start,
                    problem: "unterminated quoted value".into(),
                })?;
                line += lines;
                if q == '\'' {
                    (raw, false, after)
                } else {
                    let (value, from_vars) = value(&unescape(&raw), &entries, lookup, start)?;
                    (value, from_vars, after)
                }
            }
            _ => {
                let end = rest.find('\n').unwrap_or(rest.len());
                let mut raw = &rest[..end];
                if let Some(i) = raw.find(" #") {
                    raw = &raw[..i];
                }
                let (value, from_vars) = value(raw.trim_end(), &entries, lookup, start)?;
                (value, from_vars, &rest[end..])
            }
        };
        set(&mut entries, key, value, start, from_vars);
        rest = after;
    }
    Ok(entries)
}

fn vars(lookup: Lookup<'_>) -> Option<&Environment> {
    match lookup {
        Lookup::Vars(env) => Some(env),
        Lookup::AsWritten => None,
    }
}

/// An unquoted or double-quoted value (escapes already resolved), expanded per `lookup`, and
/// whether a variable contributed to it.
fn value(
    raw: &str,
    entries: &[Entry],
    lookup: Lookup<'_>,
    line: usize,
) -> Result<(String, bool), DotenvError> {
    let Some(env) = vars(lookup) else {
        return Ok((raw.to_string(), raw.contains('$')));
    };
    let e = expand(raw, &scoped(entries, env), &mut BTreeSet::new())
        .map_err(|e| template_error(line, e))?;
    Ok((e.text, e.from_vars))
}

fn template_error(line: usize, e: TemplateError) -> DotenvError {
    DotenvError {
        line,
        problem: match e {
            TemplateError::Invalid => "invalid ${...} expression; write $$ for a literal $".into(),
            TemplateError::Required { name, message } => {
                format!("required variable {name} is missing a value: {message}")
            }
        },
    }
}

fn set(entries: &mut Vec<Entry>, name: String, value: String, line: usize, from_vars: bool) {
    entries.retain(|e| e.name != name);
    entries.push(Entry {
        name,
        value,
        line,
        from_vars,
    });
}

/// The lookup seen by a line: the lookup first (the shell wins over the file, as in
/// compose-go), then the lines above.
fn scoped(entries: &[Entry], lookup: &Environment) -> Environment {
    let mut vars: BTreeMap<String, String> = entries
        .iter()
        .map(|e| (e.name.clone(), e.value.clone()))
        .collect();
    for (k, v) in lookup.iter() {
        vars.insert(k.to_string(), v.to_string());
    }
    Environment::from_map(vars)
}

/// The text up to the closing quote (backslash escapes kept for [`unescape`]), what follows
/// the value's line, and how many newlines the value spans.
fn quoted(s: &str, quote: char) -> Option<(String, &str, usize)> {
    let mut out = String::new();
    let mut escaped = false;
    let mut lines = 0;
    for (i, c) in s.char_indices() {
        if c == '\n' {
            lines += 1;
        }
        if escaped {
            escaped = false;
            if c != quote {
                out.push('\\');
            }
            out.push(c);
            continue;
        }
        if c == '\\' && quote == '"' {
            escaped = true;
            continue;
        }
        if c == quote {
            let after = &s[i + c.len_utf8()..];
            let end = after.find('\n').unwrap_or(after.len());
            return Some((out, &after[end..], lines));
        }
        out.push(c);
    }
    None
}

/// Double-quoted escapes: `\n`, `\t`, `\r`, `\\`, `\"`, `\$` (a literal `$`), and the rest kept.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('a') => out.push('\u{7}'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('v') => out.push('\u{b}'),
            Some('\\') => out.push('\\'),
            Some('"') => out.push('"'),
            Some('$') => out.push_str("$$"),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

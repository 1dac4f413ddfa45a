//! `.env` and `env_file:` files, in the format compose-go reads: `KEY=VALUE` or `KEY: VALUE`,
//! an optional `export ` prefix, `#` comments (inline ones after a space in unquoted values),
//! single quotes literal, double quotes with backslash escapes and multi-line values, `${VAR}`
//! expanded in unquoted and double-quoted values (from the lines above, then the lookup), and
//! a bare `KEY` taking its value from the lookup. Errors name the line, never the content.
//!
//! Written by hand: the dotenv crates differ from compose-go on `:` separators, inline
//! comments and expansion.

use std::collections::{BTreeMap, BTreeSet};

use super::interpolate::{expand, TemplateError};
use super::Environment;

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

/// Parses `text`; `lookup` supplies `${VAR}` values not defined earlier in the file and the
/// values of bare `KEY` lines.
pub fn parse(text: &str, lookup: &Environment) -> Result<Vec<Entry>, DotenvError> {
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
            if let Some(value) = lookup.get(&key) {
                set(&mut entries, key, value.to_string(), start, true);
            }
            continue;
        }
        rest = rest[key_end + 1..].trim_start_matches([' ', '\t']);
        let scope = scoped(&entries, lookup);
        let mut unset = BTreeSet::new();
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
                    let e = expand(&unescape(&raw), &scope, &mut unset)
                        .map_err(|e| template_error(start, e))?;
                    (e.text, e.from_vars, after)
                }
            }
            _ => {
                let end = rest.find('\n').unwrap_or(rest.len());
                let mut raw = &rest[..end];
                if let Some(i) = raw.find(" #") {
                    raw = &raw[..i];
                }
                let e = expand(raw.trim_end(), &scope, &mut unset)
                    .map_err(|e| template_error(start, e))?;
                (e.text, e.from_vars, &rest[end..])
            }
        };
        set(&mut entries, key, value, start, from_vars);
        rest = after;
    }
    Ok(entries)
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

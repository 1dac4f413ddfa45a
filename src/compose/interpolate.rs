//! Compose's variable interpolation (the Compose specification, "Interpolation"; compose-go's
//! `template` package where the specification is silent): `$VAR`, `${VAR}`, `${VAR:-default}`,
//! `${VAR-default}`, `${VAR:?error}`, `${VAR?error}`, `${VAR:+replacement}`,
//! `${VAR+replacement}`, nesting inside the default/replacement/error, and `$$` for a literal
//! `$`. A `$` not followed by a name or `{` stays as it is, as in Compose.
//!
//! Written by hand: compose-go's is a regular expression plus brace counting, and no crate
//! implements Compose's exact rules (envsubst-style crates differ on `:+`, `?` and nesting).

use std::collections::BTreeSet;

use super::yaml::{Kind, Node};
use super::Environment;

/// Why a template could not be expanded. Carries names, never values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateError {
    /// `${` without a valid name, operator or closing brace.
    Invalid,
    /// `${VAR:?message}` or `${VAR?message}` with VAR missing (or empty, for `:?`).
    Required { name: String, message: String },
}

/// What expanding one string used.
#[derive(Debug, Default)]
pub struct Expansion {
    pub text: String,
    /// A variable that is set contributed to the text.
    pub from_vars: bool,
}

/// Expands `template` with `env`; names of unset variables that defaulted to "" are added
/// to `unset`.
pub fn expand(
    template: &str,
    env: &Environment,
    unset: &mut BTreeSet<String>,
) -> Result<Expansion, TemplateError> {
    let mut out = Expansion::default();
    expand_into(template, env, unset, &mut out, 0)?;
    Ok(out)
}

/// How deep `${A:-${B:-…}}` may nest: far beyond what a Compose file needs, and a bound on
/// the recursion a hostile file (or .env) can cause.
const MAX_NESTING: usize = 32;

fn is_name_start(c: u8) -> bool {
    c == b'_' || c.is_ascii_alphabetic()
}

fn is_name_char(c: u8) -> bool {
    c == b'_' || c.is_ascii_alphanumeric()
}

fn name_len(s: &str) -> usize {
    let b = s.as_bytes();
    if b.first().is_some_and(|&c| is_name_start(c)) {
        b.iter().take_while(|&&c| is_name_char(c)).count()
    } else {
        0
    }
}

fn expand_into(
    template: &str,
    env: &Environment,
    unset: &mut BTreeSet<String>,
    out: &mut Expansion,
    depth: usize,
) -> Result<(), TemplateError> {
    if depth > MAX_NESTING {
        return Err(TemplateError::Invalid);
    }
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        out.text.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        match rest.as_bytes().first() {
            Some(b'$') => {
                out.text.push('$');
                rest = &rest[1..];
            }
            Some(b'{') => {
                let body_and_rest = &rest[1..];
                let close = closing_brace(body_and_rest).ok_or(TemplateError::Invalid)?;
                braced(&body_and_rest[..close], env, unset, out, depth)?;
                rest = &body_and_rest[close + 1..];
            }
            Some(_) if name_len(rest) > 0 => {
                let n = name_len(rest);
                lookup(&rest[..n], env, unset, out);
                rest = &rest[n..];
            }
            _ => out.text.push('$'),
        }
    }
    out.text.push_str(rest);
    Ok(())
}

/// Index of the `}` closing a `${`, counting nested braces.
fn closing_brace(s: &str) -> Option<usize> {
    let mut depth = 1usize;
    for (i, c) in s.bytes().enumerate() {
        match c {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

fn lookup(name: &str, env: &Environment, unset: &mut BTreeSet<String>, out: &mut Expansion) {
    match env.get(name) {
        Some(value) => {
            out.text.push_str(value);
            out.from_vars |= !value.is_empty();
        }
        None => {
            unset.insert(name.to_string());
        }
    }
}

fn braced(
    body: &str,
    env: &Environment,
    unset: &mut BTreeSet<String>,
    out: &mut Expansion,
    depth: usize,
) -> Result<(), TemplateError> {
    let n = name_len(body);
    if n == 0 {
        return Err(TemplateError::Invalid);
    }
    let (name, op) = body.split_at(n);
    if op.is_empty() {
        lookup(name, env, unset, out);
        return Ok(());
    }
    let value = env.get(name);
    let set = value.is_some();
    let nonempty = value.is_some_and(|v| !v.is_empty());
    // The longest operator first: `:-` before `-`.
    let (operator, word) = [":-", ":?", ":+", "-", "?", "+"]
        .iter()
        .find_map(|o| op.strip_prefix(o).map(|w| (*o, w)))
        .ok_or(TemplateError::Invalid)?;
    let use_word = match operator {
        ":-" => !nonempty,
        "-" => !set,
        ":+" => nonempty,
        "+" => set,
        ":?" => !nonempty,
        _ => !set,
    };
    if operator.ends_with('?') {
        if use_word {
            // As written: expanding it could put another variable's value (a password) into
            // an error message.
            return Err(TemplateError::Required {
                name: name.to_string(),
                message: word.to_string(),
            });
        }
        lookup(name, env, unset, out);
        return Ok(());
    }
    if use_word {
        expand_into(word, env, unset, out, depth + 1)
    } else if operator.ends_with('+') {
        // `:+`/`+` with the condition false: empty, whatever the variable holds.
        Ok(())
    } else {
        lookup(name, env, unset, out);
        Ok(())
    }
}

/// An interpolation failure at a node, with the path to it.
#[derive(Debug)]
pub struct NodeError {
    pub node_pos: super::yaml::Pos,
    pub path: String,
    pub error: TemplateError,
}

/// Interpolates every scalar value (not keys) of a tree in place.
pub fn interpolate_tree(
    node: &mut Node,
    path: &mut Vec<String>,
    env: &Environment,
    unset: &mut BTreeSet<String>,
) -> Result<(), NodeError> {
    match &mut node.kind {
        Kind::Scalar(s) => {
            if !s.text.contains('$') {
                return Ok(());
            }
            let expanded = expand(&s.text, env, unset).map_err(|error| NodeError {
                node_pos: node.pos.clone(),
                path: path.join("."),
                error,
            })?;
            s.text = expanded.text;
            s.from_vars |= expanded.from_vars;
            // A scalar holding `$` was a string for the YAML parser, so it stays one (never
            // null or a number) whatever it expands to, as in compose-go.
            s.plain = false;
            Ok(())
        }
        Kind::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(format!("[{i}]"));
                let r = interpolate_tree(item, path, env, unset);
                path.pop();
                r?;
            }
            Ok(())
        }
        Kind::Map(entries) => {
            for (k, v) in entries.iter_mut() {
                path.push(super::yaml::shorten(&k.name));
                let r = interpolate_tree(v, path, env, unset);
                path.pop();
                r?;
            }
            Ok(())
        }
    }
}

//! Credentials in Dockerfiles: `ENV` and `ARG` instructions, in every stage and under
//! `ONBUILD`, whose name or value is a credential. Such a value is baked into the image (ENV)
//! or its build history and provenance (ARG); BuildKit's secret mounts are the fix.
//!
//! The file is read as BuildKit reads it (see `lines` and `words`), so continuations, heredoc
//! bodies and the escape directive do not hide or invent instructions. Judging is the
//! webhook's own detector (`crate::policy::detect`), by name and by value.

mod lines;
mod words;

#[cfg(test)]
mod tests;

use crate::policy::detect::{self, Reason};

pub use words::Word;

/// A stage: its index among the FROM instructions, and its `AS` name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub index: usize,
    pub name: Option<String>,
}

impl Stage {
    /// The name a `COPY --from` or `--target` would use: the `AS` name, else the index.
    pub fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.index.to_string())
    }
}

/// One `NAME[=value]` of an ENV or ARG instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    pub name: String,
    /// None for `ARG NAME`, whose value comes from `--build-arg`.
    pub value: Option<Word>,
}

/// An ENV or ARG instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declaration {
    /// Where the instruction starts (1-based).
    pub line: usize,
    /// None before the first FROM (global build arguments).
    pub stage: Option<Stage>,
    /// `ENV`, `ARG`, `ONBUILD ENV` or `ONBUILD ARG`.
    pub instruction: String,
    pub variables: Vec<Variable>,
}

/// A declaration whose variable holds a credential. Names, never the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub line: usize,
    pub stage: Option<Stage>,
    pub instruction: String,
    pub variable: String,
    pub reason: Reason,
}

/// Every ENV and ARG instruction of the file, in order.
pub fn declarations(text: &str) -> Vec<Declaration> {
    let lines = lines::read(text);
    let escape = lines.escape;
    let mut stage: Option<Stage> = None;
    let mut out = Vec::new();
    for logical in lines.instructions {
        let (keyword, rest) = split_command(&logical.text);
        if keyword.eq_ignore_ascii_case("from") {
            let index = stage.as_ref().map_or(0, |s| s.index + 1);
            stage = Some(Stage {
                index,
                name: stage_name(rest),
            });
            continue;
        }
        let (prefix, keyword, rest) = if keyword.eq_ignore_ascii_case("onbuild") {
            let (inner, rest) = split_command(rest);
            ("ONBUILD ", inner, rest)
        } else {
            ("", keyword, rest)
        };
        let variables = if keyword.eq_ignore_ascii_case("env") {
            env_variables(rest, escape)
        } else if keyword.eq_ignore_ascii_case("arg") {
            arg_variables(rest, escape)
        } else {
            continue;
        };
        out.push(Declaration {
            line: logical.line,
            stage: stage.clone(),
            instruction: format!("{prefix}{}", keyword.to_ascii_uppercase()),
            variables,
        });
    }
    out
}

/// The credentials declared in a Dockerfile.
pub fn findings(text: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    for d in declarations(text) {
        let arg = d.instruction.ends_with("ARG");
        for v in d.variables {
            if let Some(reason) = judge(arg, &v) {
                out.push(Finding {
                    line: d.line,
                    stage: d.stage.clone(),
                    instruction: d.instruction.clone(),
                    variable: v.name,
                    reason,
                });
            }
        }
    }
    out
}

/// A value with text of its own is judged by value and name, as the webhook judges env
/// values. Without one, only the name can tell: `ARG TOKEN` and `ENV TOKEN=$TOKEN` carry a
/// build argument into the image. An ENV set to nothing holds nothing.
fn judge(arg: bool, v: &Variable) -> Option<Reason> {
    match &v.value {
        Some(w) if w.literal => detect::literal_credential(&v.name, &w.text),
        Some(w) if w.text.is_empty() && !arg => None,
        _ => detect::credential_name(&v.name),
    }
}

/// BuildKit's `[\t\v\f\r ]`: what separates the instruction from its arguments.
fn is_separator(c: char) -> bool {
    matches!(c, '\t' | '\x0b' | '\x0c' | '\r' | ' ')
}

/// The keyword and the arguments after any leading `--flag` words.
fn split_command(line: &str) -> (&str, &str) {
    let line = line.trim();
    let (keyword, rest) = match line.find(is_separator) {
        Some(i) => (&line[..i], line[i..].trim_start_matches(is_separator)),
        None => (line, ""),
    };
    (keyword, skip_flags(rest).trim())
}

/// Skips `--name[=value]` words (quotes allowed in them) and a lone `--`.
fn skip_flags(mut rest: &str) -> &str {
    loop {
        rest = rest.trim_start();
        if !rest.starts_with("--") {
            return rest;
        }
        let mut quote = None;
        let mut end = rest.len();
        let mut chars = rest.char_indices();
        while let Some((i, c)) = chars.next() {
            match quote {
                None if c.is_whitespace() => {
                    end = i;
                    break;
                }
                None if c == '"' || c == '\'' => quote = Some(c),
                Some(q) if c == q => quote = None,
                _ if c == '\\' => {
                    chars.next();
                }
                _ => {}
            }
        }
        let word = &rest[..end];
        rest = &rest[end..];
        if word == "--" {
            return rest.trim_start();
        }
    }
}

/// Exec form: `["a", "b"]`, a JSON array of strings.
fn is_json_form(args: &str) -> bool {
    args.starts_with('[') && serde_json::from_str::<Vec<String>>(args).is_ok()
}

/// `FROM [--platform=…] IMAGE [AS NAME]`.
fn stage_name(args: &str) -> Option<String> {
    let mut words = args.split_whitespace();
    let (_, as_, name) = (words.next(), words.next()?, words.next()?);
    as_.eq_ignore_ascii_case("as").then(|| name.to_string())
}

/// `ENV NAME=value …`, or the legacy `ENV NAME value with spaces` when the first word has no
/// `=`. A word without `=` in the first form fails the build; it is skipped here.
fn env_variables(args: &str, escape: char) -> Vec<Variable> {
    let words = words::split(args, escape);
    let Some(first) = words.first() else {
        return Vec::new();
    };
    if !first.contains('=') {
        let Some(i) = args.find(is_separator) else {
            return Vec::new();
        };
        let value = args[i..].trim_start_matches(is_separator);
        return variable(&args[..i], Some(value), escape)
            .into_iter()
            .collect();
    }
    words
        .iter()
        .filter_map(|w| w.split_once('='))
        .filter_map(|(name, value)| variable(name, Some(value), escape))
        .collect()
}

/// `ARG NAME[=default] …`.
fn arg_variables(args: &str, escape: char) -> Vec<Variable> {
    words::split(args, escape)
        .iter()
        .filter_map(|w| match w.split_once('=') {
            Some((name, value)) => variable(name, Some(value), escape),
            None => variable(w, None, escape),
        })
        .collect()
}

fn variable(name: &str, value: Option<&str>, escape: char) -> Option<Variable> {
    let name = words::shell_word(name, escape).text;
    (!name.is_empty()).then(|| Variable {
        name,
        value: value.map(|v| words::shell_word(v, escape)),
    })
}

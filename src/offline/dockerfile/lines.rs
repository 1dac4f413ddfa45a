//! From text to instructions, as BuildKit's parser reads lines: parser directives at the top
//! (`# escape=`), comment lines, line continuations (which skip comment and blank lines), and
//! heredoc bodies after RUN, COPY and ADD, which are content and never instructions.

use super::words;

/// One instruction as written: its lines joined, with the line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logical {
    /// 1-based.
    pub line: usize,
    pub text: String,
}

/// The instructions of a Dockerfile and the escape token its directive chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lines {
    pub escape: char,
    pub instructions: Vec<Logical>,
}

/// Parser directives are only read before the first line that is not one.
struct Directives {
    done: bool,
    escape: char,
    seen: Vec<String>,
}

impl Directives {
    /// `# name=value` (BuildKit's `^#[ \t]*([a-zA-Z][a-zA-Z0-9]*)[ \t]*=[ \t]*(.+?)[ \t]*$`);
    /// an unknown name, any other line, or a blank one ends the directives.
    fn read(&mut self, line: &str) {
        if self.done {
            return;
        }
        let Some((name, value)) = directive(line) else {
            self.done = true;
            return;
        };
        let name = name.to_ascii_lowercase();
        if !matches!(name.as_str(), "syntax" | "escape" | "check") {
            self.done = true;
            return;
        }
        // A repeated directive is an error in BuildKit; the first one stands here.
        if self.seen.contains(&name) {
            return;
        }
        if name == "escape" {
            // Anything but ` or \ fails the build; the default stays.
            match value {
                "`" => self.escape = '`',
                "\\" => self.escape = '\\',
                _ => {}
            }
        }
        self.seen.push(name);
    }
}

fn directive(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix('#')?.trim_start_matches([' ', '\t']);
    let name_len = rest
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map_or(rest.len(), |(i, _)| i);
    let (name, rest) = rest.split_at(name_len);
    let value = rest
        .trim_start_matches([' ', '\t'])
        .strip_prefix('=')?
        .trim_matches([' ', '\t']);
    (!name.is_empty() && !value.is_empty()).then_some((name, value))
}

fn is_comment(line: &str) -> bool {
    line.trim_end_matches(['\r', '\n'])
        .trim_start()
        .starts_with('#')
}

/// Removes a trailing escape token (followed only by spaces or tabs) and says whether the
/// instruction goes on. The spaces after it stay, as in BuildKit.
fn continuation(line: &str, escape: char) -> (&str, Option<&str>) {
    let trimmed = line.trim_end_matches([' ', '\t']);
    match trimmed.strip_suffix(escape) {
        Some(head) => (head, Some(&line[trimmed.len()..])),
        None => (line, None),
    }
}

/// Reads `text` into instructions.
pub fn read(text: &str) -> Lines {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut directives = Directives {
        done: false,
        escape: '\\',
        seen: Vec::new(),
    };
    let mut instructions = Vec::new();
    let mut lines = text
        .split('\n')
        .map(|l| l.trim_end_matches(['\r', '\n']))
        .enumerate();
    while let Some((index, raw)) = lines.next() {
        let token = raw.trim_start();
        directives.read(token);
        if is_comment(token) {
            continue;
        }
        let escape = directives.escape;
        let (head, mut more) = continuation(token, escape);
        if more.is_none() && head.is_empty() {
            continue;
        }
        let mut logical = head.to_string();
        while let Some(kept) = more.take() {
            logical.push_str(kept);
            let Some((_, raw)) = lines.next() else { break };
            directives.read(raw);
            if is_comment(raw) || raw.trim_start().is_empty() {
                more = Some("");
                continue;
            }
            let (head, next) = continuation(raw, escape);
            logical.push_str(head);
            more = next;
        }
        for doc in heredocs(&logical) {
            for (_, raw) in lines.by_ref() {
                let candidate = if doc.chomp {
                    raw.trim_start_matches('\t')
                } else {
                    raw
                };
                if candidate == doc.name {
                    break;
                }
            }
        }
        instructions.push(Logical {
            line: index + 1,
            text: logical,
        });
    }
    Lines {
        escape: directives.escape,
        instructions,
    }
}

/// A heredoc the instruction opens: its delimiter, and whether leading tabs are stripped
/// before comparing (`<<-`).
struct Heredoc {
    name: String,
    chomp: bool,
}

/// The heredocs of RUN, COPY and ADD (also under ONBUILD), in order: every word of the form
/// `[fd]<<[-]DELIM` with a one-word delimiter, quotes removed. Exec (JSON) form has none.
fn heredocs(line: &str) -> Vec<Heredoc> {
    if !line.contains("<<") {
        return Vec::new();
    }
    let (keyword, rest) = super::split_command(line);
    let (keyword, rest) = if keyword.eq_ignore_ascii_case("onbuild") {
        super::split_command(rest)
    } else {
        (keyword, rest)
    };
    let heredoc_keyword = ["run", "copy", "add"]
        .iter()
        .any(|k| keyword.eq_ignore_ascii_case(k));
    if !heredoc_keyword || super::is_json_form(rest) {
        return Vec::new();
    }
    words::split(line, '\\')
        .iter()
        .filter_map(|word| {
            let rest = word.trim_start_matches(|c: char| c.is_ascii_digit());
            let rest = rest.strip_prefix("<<")?;
            let (chomp, rest) = match rest.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, rest),
            };
            if rest.is_empty() || rest.contains('<') {
                return None;
            }
            Some(Heredoc {
                name: words::plain_word(rest)?,
                chomp,
            })
        })
        .collect()
}

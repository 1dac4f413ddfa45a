//! How BuildKit reads the words of an instruction: the parser's split into words (quotes and
//! escapes kept), and the shell lexer that later removes them and expands `$` references. A
//! value is judged as the image will hold it, so `ENV K="v 2"` is the value `v 2`.
//!
//! Written by hand: no crate implements BuildKit's lexer, and its quirks (an escape token that
//! a parser directive can change to a backtick, `$` rules that differ from POSIX sh) decide
//! what a value is.

/// Most `${…}` levels followed; deeper text is kept literally, so hostile input cannot
/// exhaust the stack.
const MAX_DEPTH: usize = 32;

/// Splits on unquoted whitespace, keeping quotes and escapes in the words (BuildKit's
/// `parseWords`): `a="b c" d` is `a="b c"` and `d`.
pub fn split(text: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut blank_ok = false;
    let mut quote: Option<char> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match quote {
            None if c.is_whitespace() => {
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                blank_ok = false;
            }
            None => {
                if c == '\'' || c == '"' {
                    quote = Some(c);
                    blank_ok = true;
                }
                if c == escape {
                    // An escape at the very end is dropped; otherwise it and the next
                    // character stay, even when that is a quote.
                    let Some(next) = chars.next() else { break };
                    word.push(c);
                    word.push(next);
                    continue;
                }
                word.push(c);
            }
            Some(q) => {
                if c == q {
                    quote = None;
                } else if c == escape && q != '\'' {
                    let Some(next) = chars.next() else { break };
                    word.push(c);
                    word.push(next);
                    continue;
                }
                word.push(c);
            }
        }
    }
    if blank_ok || !word.is_empty() {
        words.push(word);
    }
    words
}

/// A word after the shell lexer: quotes and escapes removed, and every reference to a
/// variable written as `$(NAME)`, the form the credential detector knows as a reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    pub text: String,
    /// Whether any character came from the Dockerfile itself rather than from a reference;
    /// `${TOKEN}` alone has none, `Bearer ${TOKEN}` and `${TOKEN:-dev}` do.
    pub literal: bool,
}

/// Reads `src` as BuildKit's shell lexer does for ENV and ARG values. A `${NAME:-word}` or
/// `${NAME:+word}` reads as its word (what the image holds when no build argument is given);
/// syntax errors, which fail the build, are read leniently as literal text.
pub fn shell_word(src: &str, escape: char) -> Word {
    let mut lexer = Lexer {
        chars: src.chars().collect(),
        pos: 0,
        escape,
        literal: false,
        depth: 0,
    };
    let text = lexer.until(None);
    Word {
        text,
        literal: lexer.literal,
    }
}

/// Removes quotes and escapes without expanding anything: the name of a heredoc delimiter
/// (BuildKit lexes these with `\` whatever the escape directive says). `None` unless `src` is
/// exactly one word.
pub fn plain_word(src: &str) -> Option<String> {
    let mut words: Vec<String> = Vec::new();
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    let mut chars = src.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => words.extend(word.take()),
            (None, '\'' | '"') => {
                quote = Some(c);
                word.get_or_insert_with(String::new);
            }
            (None, '\\') => {
                if let Some(next) = chars.next() {
                    word.get_or_insert_with(String::new).push(next);
                }
            }
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') => match chars.next() {
                Some(next @ ('"' | '$' | '\\')) => word.get_or_insert_with(String::new).push(next),
                Some(next) => word.get_or_insert_with(String::new).extend(['\\', next]),
                None => {}
            },
            (_, c) => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    match <[String; 1]>::try_from(words) {
        Ok([name]) => Some(name),
        Err(_) => None,
    }
}

struct Lexer {
    chars: Vec<char>,
    pos: usize,
    escape: char,
    literal: bool,
    depth: usize,
}

impl Lexer {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    fn lit(&mut self, out: &mut String, c: char) {
        self.literal = true;
        out.push(c);
    }

    /// Unquoted text up to `stop` (consumed) or the end.
    fn until(&mut self, stop: Option<char>) -> String {
        let mut out = String::new();
        while let Some(c) = self.next() {
            match c {
                c if Some(c) == stop => break,
                '\'' => self.single(&mut out),
                '"' => self.double(&mut out),
                '$' => self.dollar(&mut out),
                c if c == self.escape => match self.next() {
                    Some(next) => self.lit(&mut out, next),
                    None => break,
                },
                c => self.lit(&mut out, c),
            }
        }
        out
    }

    /// Text up to `}` whose value is not kept (a pattern or an error message): it neither
    /// counts as literal nor appears in the word.
    fn skip_until_brace(&mut self) {
        let literal = self.literal;
        self.until(Some('}'));
        self.literal = literal;
    }

    fn single(&mut self, out: &mut String) {
        while let Some(c) = self.next() {
            if c == '\'' {
                return;
            }
            self.lit(out, c);
        }
    }

    fn double(&mut self, out: &mut String) {
        while let Some(c) = self.next() {
            match c {
                '"' => return,
                '$' => self.dollar(out),
                c if c == self.escape => match self.peek() {
                    None => return,
                    Some(next) if next == '"' || next == '$' || next == self.escape => {
                        self.pos += 1;
                        self.lit(out, next);
                    }
                    Some(_) => self.lit(out, c),
                },
                c => self.lit(out, c),
            }
        }
    }

    /// After a `$`: a name, `${…}`, or a literal `$`.
    fn dollar(&mut self, out: &mut String) {
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                self.lit(out, '$');
            } else {
                reference(out, &name);
            }
            return;
        }
        if self.depth >= MAX_DEPTH
            || matches!(self.chars.get(self.pos + 1), None | Some('{' | '}' | ':'))
        {
            // `${` at the end, `${}`, `${{…` and `${:…`: BuildKit refuses these; keep the text.
            self.lit(out, '$');
            return;
        }
        self.pos += 1;
        self.depth += 1;
        let name = self.name();
        match self.next() {
            Some(':') => {
                let modifier = self.next();
                if matches!(modifier, Some('-' | '+')) {
                    let word = self.until(Some('}'));
                    out.push_str(&word);
                } else {
                    self.skip_until_brace();
                    reference(out, &name);
                }
            }
            Some('-' | '+') => {
                let word = self.until(Some('}'));
                out.push_str(&word);
            }
            Some('}') | None => reference(out, &name),
            Some(_) => {
                // `?`, `#`, `%`, `/` and anything else: the value is still the variable's.
                self.skip_until_brace();
                reference(out, &name);
            }
        }
        self.depth -= 1;
    }

    /// A variable name: letters, digits and `_`; a run of digits; or one special parameter.
    fn name(&mut self) -> String {
        let mut name = String::new();
        match self.peek() {
            Some(c) if c.is_ascii_digit() => {
                while let Some(c) = self.peek().filter(char::is_ascii_digit) {
                    name.push(c);
                    self.pos += 1;
                }
            }
            Some(c @ ('@' | '*' | '#' | '?' | '-' | '$' | '!')) => {
                name.push(c);
                self.pos += 1;
            }
            _ => {
                while let Some(c) = self.peek().filter(|c| c.is_alphanumeric() || *c == '_') {
                    name.push(c);
                    self.pos += 1;
                }
            }
        }
        name
    }
}

/// `$(NAME)`: Kubernetes' reference syntax, which the credential detector treats as a
/// reference and never as a value.
fn reference(out: &mut String, name: &str) {
    out.push_str("$(");
    out.push_str(name);
    out.push(')');
}

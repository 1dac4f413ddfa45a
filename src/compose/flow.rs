//! go-yaml's leniency on flow collections, which Compose files rely on.
//!
//! Docker Compose reads YAML with go-yaml (a port of libyaml), which does not check the
//! indentation of the lines inside a flow collection. Compose files use that freely:
//!
//! ```yaml
//!     healthcheck:
//!       test: [
//!         "CMD", "curl", "-f", "http://localhost"
//!       ]
//! ```
//!
//! YAML 1.2 wants every line of the collection indented past the block it sits in (the `]`
//! above is not), and saphyr-parser follows the specification. So before parsing, each line
//! that lies inside a flow collection opened in block context is indented to one column past
//! the block node that opened it. Inside a flow collection line breaks fold and leading spaces
//! are dropped, so no value changes; no line moves, so every position stays right.
//!
//! Written here because no YAML crate offers libyaml's leniency without libyaml's C code (or
//! `unsafe`): the scan below only tracks what decides whether a line is inside a flow
//! collection (quotes, comments, block scalars and where a node may start) and changes
//! nothing else.

use std::borrow::Cow;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Quote {
    None,
    Single,
    Double,
}

/// Where the scan is between lines.
struct State {
    /// Open flow collections.
    depth: usize,
    /// The column lines inside the outermost open flow collection must start past.
    base: usize,
    quote: Quote,
    /// Inside a block scalar whose header was on a line of this indentation.
    block_scalar: Option<usize>,
    /// In a flow collection, whether the next token may start a node (quotes, brackets).
    flow_node_start: bool,
}

/// The text with every line inside a block-context flow collection indented past the node
/// that opened it; borrowed unchanged when no line needs it.
pub fn indent_flow_lines(text: &str) -> Cow<'_, str> {
    let mut state = State {
        depth: 0,
        base: 0,
        quote: Quote::None,
        block_scalar: None,
        flow_node_start: false,
    };
    let mut out: Option<String> = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let indent = line.bytes().take_while(|&b| b == b' ').count();
        let blank = line.trim().is_empty();
        let mut pad = 0;
        match state.block_scalar {
            Some(parent) if blank || indent > parent => {}
            _ => {
                state.block_scalar = None;
                if state.depth > 0 && !blank && indent <= state.base {
                    pad = state.base + 1 - indent;
                }
                scan_line(&mut state, line, indent);
            }
        }
        if pad > 0 {
            let buf = out.get_or_insert_with(|| text[..offset].to_string());
            buf.extend(std::iter::repeat_n(' ', pad));
            buf.push_str(line);
        } else if let Some(buf) = out.as_mut() {
            buf.push_str(line);
        }
        offset += line.len();
    }
    match out {
        Some(text) => Cow::Owned(text),
        None => Cow::Borrowed(text),
    }
}

/// Updates `state` with one line (`indent` leading spaces).
fn scan_line(state: &mut State, line: &str, indent: usize) {
    let chars: Vec<char> = line.trim_end_matches(['\n', '\r']).chars().collect();
    let mut i = indent;
    // Block context: whether a node may start here, and the column of the block node the line
    // holds (past any `- ` and `? ` indicators).
    let mut node_start = state.depth == 0 && state.quote == Quote::None;
    let mut node_col = indent;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let spaced = next.is_none_or(|n| n == ' ' || n == '\t');
        match state.quote {
            Quote::Single => {
                if c == '\'' {
                    if next == Some('\'') {
                        i += 1;
                    } else {
                        state.quote = Quote::None;
                        state.flow_node_start = false;
                    }
                }
                i += 1;
                continue;
            }
            Quote::Double => {
                if c == '\\' {
                    i += 1;
                } else if c == '"' {
                    state.quote = Quote::None;
                    state.flow_node_start = false;
                }
                i += 1;
                continue;
            }
            Quote::None => {}
        }
        let after_space = i == 0 || matches!(chars[i - 1], ' ' | '\t');
        if c == '#' && after_space {
            return;
        }
        if c == ' ' || c == '\t' {
            i += 1;
            continue;
        }
        if state.depth > 0 {
            match c {
                '[' | '{' => {
                    state.depth += 1;
                    state.flow_node_start = true;
                }
                ']' | '}' => {
                    state.depth -= 1;
                    state.flow_node_start = false;
                    if state.depth == 0 {
                        // Back in block context: what follows is not a node start.
                        node_start = false;
                    }
                }
                ',' => state.flow_node_start = true,
                ':' | '?' if spaced => state.flow_node_start = true,
                '\'' if state.flow_node_start => state.quote = Quote::Single,
                '"' if state.flow_node_start => state.quote = Quote::Double,
                _ => state.flow_node_start = false,
            }
            i += 1;
            continue;
        }
        match c {
            '[' | '{' if node_start => {
                state.depth = 1;
                state.base = node_col;
                state.flow_node_start = true;
            }
            '\'' if node_start => state.quote = Quote::Single,
            '"' if node_start => state.quote = Quote::Double,
            '-' | '?' if node_start && spaced => {
                node_col = i + 2;
            }
            ':' if spaced => node_start = true,
            '&' | '!' if node_start => {
                // An anchor or a tag: the node starts after it.
                while i + 1 < chars.len() && !matches!(chars[i + 1], ' ' | '\t') {
                    i += 1;
                }
            }
            '|' | '>' if node_start => {
                let header_rest: String = chars[i + 1..].iter().collect();
                let header = header_rest.split(" #").next().unwrap_or_default().trim();
                if header
                    .chars()
                    .all(|h| h.is_ascii_digit() || h == '+' || h == '-')
                {
                    state.block_scalar = Some(indent);
                    return;
                }
                node_start = false;
            }
            _ => node_start = false,
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::indent_flow_lines;

    #[test]
    fn a_closing_bracket_at_the_keys_column_is_indented_past_it() {
        let text = "x:\n  test: [\n    \"CMD\",\n    # a comment [\n    \"true\"\n  ]\n  y: 1\n";
        assert_eq!(
            indent_flow_lines(text),
            "x:\n  test: [\n    \"CMD\",\n    # a comment [\n    \"true\"\n   ]\n  y: 1\n"
        );
    }

    #[test]
    fn lines_under_a_sequence_entry_are_indented_past_its_node() {
        let text = "s:\n  - cmd: {\n  a: 1\n  }\n";
        assert_eq!(
            indent_flow_lines(text),
            "s:\n  - cmd: {\n     a: 1\n     }\n"
        );
    }

    #[test]
    fn well_indented_and_block_only_text_is_left_alone() {
        for text in [
            "a:\n  b: [1, 2]\n  c: {d: [e]}\n",
            "a: [\n    1,\n    2]\n",
            // Brackets in plain scalars, quotes, comments and block scalars open nothing.
            "a: echo [x\nb: 'it''s [' # [\nc: \"[\\\"\"\nd: |\n  [ -f x\ne: 1\n",
            "run: >-\n  {\nnext: 1\n",
            "cmd: sh -c 'a - [b'\nx:\n- 1\n",
        ] {
            assert!(
                matches!(indent_flow_lines(text), std::borrow::Cow::Borrowed(_)),
                "{text:?} changed to {:?}",
                indent_flow_lines(text)
            );
        }
    }

    #[test]
    fn a_misindented_block_line_is_not_hidden() {
        // Not inside a flow collection: left for the parser to refuse.
        let text = "a:\n  b: 1\n c: 2\n";
        assert_eq!(indent_flow_lines(text), text);
    }
}

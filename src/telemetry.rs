//! Logging setup. Lines carry uids, names and decisions; never a pod spec or a value.
//!
//! Many fields hold what a caller wrote (a pod name from a delivery request, a review's uid, a
//! volume id from kubelet), so every field of every text line is escaped here, in one place:
//! one event is always one line, and no value can forge another field. The JSON format
//! escapes through serde already.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::EnvFilter;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the global subscriber; `RUST_LOG` overrides the default `info` filter.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Text => builder.fmt_fields(EscapedFields).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Text fields as `message key=value key="quoted value"`: a value is quoted (logfmt's rule)
/// when it is empty or holds a space, `"`, `=` or `\`, and every character that could end or
/// rearrange a line (control characters, Unicode line separators, bidirectional overrides)
/// is written as an escape, in the message too.
pub struct EscapedFields;

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = EscapingVisitor {
            writer,
            result: Ok(()),
            first: true,
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct EscapingVisitor<'writer> {
    writer: Writer<'writer>,
    result: fmt::Result,
    first: bool,
}

impl EscapingVisitor<'_> {
    fn write(&mut self, field: &Field, value: &str) {
        if self.result.is_err() {
            return;
        }
        let separator = if self.first { "" } else { " " };
        self.first = false;
        self.result = if field.name() == "message" {
            self.writer
                .write_str(separator)
                .and_then(|()| escape(&mut self.writer, value, false))
        } else if needs_quotes(value) {
            write!(self.writer, "{separator}{}=\"", field.name())
                .and_then(|()| escape(&mut self.writer, value, true))
                .and_then(|()| self.writer.write_char('"'))
        } else {
            write!(self.writer, "{separator}{}={value}", field.name())
        };
    }
}

impl Visit for EscapingVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.write(field, value);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.write(field, &crate::error::Chain(value).to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.write(field, &format!("{value:?}"));
    }
}

/// Characters written as escapes wherever they appear.
fn escaped(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn needs_quotes(value: &str) -> bool {
    value.is_empty()
        || value
            .chars()
            .any(|c| c.is_whitespace() || escaped(c) || matches!(c, '"' | '=' | '\\'))
}

/// Writes `text` with `\n`, `\r`, `\t`, `\\`, `\u{…}` escapes, and `\"` inside quotes.
fn escape(out: &mut impl fmt::Write, text: &str, quoted: bool) -> fmt::Result {
    for c in text.chars() {
        match c {
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            '\\' => out.write_str("\\\\")?,
            '"' if quoted => out.write_str("\\\"")?,
            c if escaped(c) => write!(out, "{}", c.escape_unicode())?,
            c => out.write_char(c)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_quoted_and_escaped_only_when_needed() {
        let mut out = String::new();
        escape(&mut out, "a\nb\u{1b}[31m\"c\\\u{2028}", true).unwrap();
        assert_eq!(out, "a\\nb\\u{1b}[31m\\\"c\\\\\\u{2028}");
        assert!(!needs_quotes("shop/web-0"));
        for value in ["", "a b", "a=b", "a\"b", "a\nb", "a\\b", "a\u{2029}b"] {
            assert!(needs_quotes(value), "{value:?}");
        }
    }
}

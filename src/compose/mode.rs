//! `mode:` of a secret or config, read as Docker Compose reads it.
//!
//! compose-go parses the file with go-yaml v3, which resolves a plain scalar with Go's
//! `strconv.ParseInt(s, 0, 64)` after dropping `_`: `0440` and `0o440` are octal (288),
//! `0x1a0` is hex, `440` is decimal (0o670). A quoted value is a string, which compose-go's
//! `FileMode` decoder parses as octal: `"440"` and `"0440"` are both 0o440 (`"0o440"` is an
//! error in Compose; it is accepted here since it cannot mean anything else). YAML 1.2's core
//! schema would read `0440` as decimal; Compose does not, and neither do we. Writable bits are
//! dropped afterwards (the specification says they are ignored).

/// A mode as Compose reads it, before writable bits are dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode {
    pub bits: u32,
    /// A plain decimal number whose digits are all octal: probably meant as octal.
    pub suspicious_decimal: bool,
}

/// Why a mode was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModeError {
    NotANumber,
    OutOfRange(i64),
}

impl std::fmt::Display for ModeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModeError::NotANumber => f.write_str(
                "mode is not a number: write it in octal, e.g. 0440 or \"0440\"",
            ),
            ModeError::OutOfRange(v) => write!(
                f,
                "mode {v:#o} is out of range: it must be between 0 and 0777 (write it in octal, e.g. 0440)"
            ),
        }
    }
}

/// Go's `ParseInt(s, 0, 64)`: optional sign, then `0x`, `0o`, `0b`, a leading `0` (octal) or
/// decimal; `_` allowed between digits.
fn go_parse_int(s: &str) -> Option<i64> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    let digits: String = digits.chars().filter(|&c| c != '_').collect();
    if digits.is_empty() {
        return None;
    }
    let v = i64::from_str_radix(&digits, radix).ok()?;
    Some(if neg { -v } else { v })
}

/// Reads a mode written as `text`; `plain` is whether it was an unquoted scalar.
pub fn parse(text: &str, plain: bool) -> Result<Mode, ModeError> {
    let text = text.trim();
    let (value, suspicious) = if plain {
        let v = go_parse_int(&text.replace('_', "")).ok_or(ModeError::NotANumber)?;
        let decimal = !text.starts_with('0') && text.bytes().all(|b| b.is_ascii_digit());
        let octal_looking = text.len() >= 3 && text.bytes().all(|b| (b'0'..=b'7').contains(&b));
        (v, decimal && octal_looking)
    } else {
        let digits = text.strip_prefix("0o").unwrap_or(text);
        if digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            return Err(ModeError::NotANumber);
        }
        (
            i64::from_str_radix(digits, 8).map_err(|_| ModeError::NotANumber)?,
            false,
        )
    };
    match u32::try_from(value) {
        Ok(bits) if bits <= 0o777 => Ok(Mode {
            bits,
            suspicious_decimal: suspicious,
        }),
        _ => Err(ModeError::OutOfRange(value)),
    }
}

/// The mode a read-only secret file gets: writable bits cleared.
pub fn effective(bits: u32) -> u32 {
    bits & !0o222
}

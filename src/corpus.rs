//! The fuzz corpus shared by the parsers' fuzz tests (`*/fuzz.rs`): the real apiserver and
//! kubelet fixtures, mutations of them, and the runner that counts executions.
//!
//! cargo-fuzz needs a nightly toolchain; these are proptest properties instead, run with a
//! small case count in CI and for as long as wanted with `RUNSECRETS_FUZZ_CASES=N`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::Value;

/// Marks a pasted secret in generated input. Messages may show at most the first 8
/// characters of a caller's word (the bounded prefix rule), so the part that must never
/// appear starts after them.
pub const CANARY: &str = "hunter2-pasted!Zq9Canary-value";
/// What no answer, error or message may contain.
pub const CANARY_TAIL: &str = "Zq9Canary";

// The captured apiserver and kubelet bodies, through the loader the integration tests and
// benches use (one loader for every crate that reads them).
#[path = "../tests/common/fixtures.rs"]
mod fixtures;
pub use fixtures::{fixture_bytes, review_fixtures};

/// Cases per property: `RUNSECRETS_FUZZ_CASES` when set, else `default` (CI-sized).
pub fn config(default: u32) -> Config {
    let cases = std::env::var("RUNSECRETS_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    Config {
        cases,
        // Long runs shrink a failure for at most a minute instead of for ever.
        max_shrink_time: 60_000,
        ..Config::default()
    }
}

/// Runs `test` over `strategy` and prints how many parser executions it made (each case
/// returns its own count), so long runs can be reported. A failure panics with the
/// shrunk input, as `proptest!` does.
pub fn run<S: Strategy>(
    name: &str,
    default_cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<u64, TestCaseError>,
) {
    let executions = AtomicU64::new(0);
    let started = Instant::now();
    // The failing input is in the panic message; there is no source file to persist it to.
    let config = Config {
        failure_persistence: None,
        ..config(default_cases)
    };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&strategy, |value| {
        let n = test(value)?;
        executions.fetch_add(n, Ordering::Relaxed);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
    eprintln!(
        "fuzz {name}: {} cases, {} executions, {:.1} s, none panicked",
        runner.config().cases,
        executions.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
}

/// Strings that break parsers: odd unicode, control characters, huge numbers, structure.
pub const ODD: &[&str] = &[
    "",
    "\0",
    "\u{1}",
    "\u{1b}[31m",
    "\n",
    "\r\n",
    "\t",
    "\u{7f}",
    "\u{85}",
    "\u{a0}",
    "\u{200b}",
    "\u{202e}",
    "\u{2028}",
    "\u{feff}",
    "\u{fffd}",
    "\u{10ffff}",
    "é",
    "𝕏",
    "ﷺ",
    "\\",
    "\"",
    "'",
    ",",
    ";",
    "=",
    "/",
    "..",
    "../../etc/passwd",
    "/run/secrets",
    "/var/run/secrets/kubernetes.io/serviceaccount",
    "source=",
    "target=",
    "mode=07777",
    "uid=99999999999",
    "-1",
    "0",
    "1e999999",
    "-1e-999999",
    "18446744073709551616",
    "-9223372036854775809",
    "123456789012345678901234567890123456789",
    "0.00000000000000000000000000000000000001",
    "NaN",
    "null",
    "true",
    "{}",
    "[]",
    "\\u0000",
    "\\ud800",
    "\\udfff\\ud800",
    CANARY,
];

/// One of [`ODD`], or a long run of one character.
pub fn odd_string() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::sample::select(ODD).prop_map(str::to_string),
        1 => (prop::sample::select(&["A", "é", "\\", "\"", "[", "{", "\n"][..]), 1usize..70_000)
            .prop_map(|(s, n)| s.repeat(n)),
        2 => "\\PC{0,24}",
    ]
}

/// A JSON value that breaks typed readers: wrong types, huge numbers, deep nesting.
pub fn odd_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => odd_string().prop_map(Value::from),
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::from),
        1 => prop::sample::select(&[i64::MIN, -1, 0, 1, i64::MAX][..]).prop_map(Value::from),
        1 => Just(Value::from(u64::MAX)),
        1 => Just(Value::from(f64::MAX)),
        1 => Just(Value::from(-0.0)),
        1 => Just(Value::Array(Vec::new())),
        1 => Just(Value::Object(serde_json::Map::new())),
        1 => (1usize..300).prop_map(|depth| {
            (0..depth).fold(Value::from(CANARY), |v, i| {
                if i % 2 == 0 { Value::Array(vec![v]) } else { serde_json::json!({ "k": v }) }
            })
        }),
    ]
}

/// Byte sequences that are not UTF-8: a lone 0xff, a bad continuation, an encoded surrogate,
/// a code point past U+10FFFF, a truncated sequence.
const INVALID_UTF8: &[&[u8]] = &[
    &[0xff],
    &[0xc3, 0x28],
    &[0xed, 0xa0, 0x80],
    &[0xf4, 0x90, 0x80, 0x80],
    &[0xe2, 0x82],
];

/// A change to bytes.
#[derive(Debug, Clone)]
pub enum ByteEdit {
    Flip(Index, u8),
    Set(Index, u8),
    Truncate(Index),
    Delete(Index, u16),
    Insert(Index, Vec<u8>),
    Duplicate(Index, u16),
    /// A piece of another seed.
    Splice(Index, Index, Index, u16),
}

fn byte_edit() -> impl Strategy<Value = ByteEdit> {
    let interesting = prop_oneof![
        4 => odd_string().prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 1..8),
        1 => prop::sample::select(INVALID_UTF8).prop_map(<[u8]>::to_vec),
        1 => (1usize..200, prop::sample::select(&["[", "{\"a\":", "\"", "\\"][..]))
            .prop_map(|(n, s)| s.repeat(n).into_bytes()),
    ];
    prop_oneof![
        3 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| ByteEdit::Flip(i, b)),
        2 => (any::<Index>(), prop::sample::select(&b"\0\"\\{}[],:\n\x7f\x80\xff0-9eE.-"[..])).prop_map(|(i, b)| ByteEdit::Set(i, b)),
        1 => any::<Index>().prop_map(ByteEdit::Truncate),
        2 => (any::<Index>(), 1u16..64).prop_map(|(i, n)| ByteEdit::Delete(i, n)),
        4 => (any::<Index>(), interesting).prop_map(|(i, b)| ByteEdit::Insert(i, b)),
        1 => (any::<Index>(), 1u16..256).prop_map(|(i, n)| ByteEdit::Duplicate(i, n)),
        2 => (any::<Index>(), any::<Index>(), any::<Index>(), 1u16..512)
            .prop_map(|(at, seed, from, n)| ByteEdit::Splice(at, seed, from, n)),
    ]
}

/// Applies byte edits to a copy of `seeds[seed]`.
pub fn apply_bytes(seeds: &[Vec<u8>], seed: &Index, edits: &[ByteEdit]) -> Vec<u8> {
    let mut out = seeds[seed.index(seeds.len())].clone();
    let at = |i: &Index, len: usize| if len == 0 { 0 } else { i.index(len + 1) };
    for edit in edits {
        let len = out.len();
        match edit {
            ByteEdit::Flip(i, bit) if len > 0 => out[i.index(len)] ^= 1 << bit,
            ByteEdit::Set(i, b) if len > 0 => out[i.index(len)] = *b,
            ByteEdit::Truncate(i) => out.truncate(at(i, len)),
            ByteEdit::Delete(i, n) => {
                let start = at(i, len);
                let end = (start + usize::from(*n)).min(len);
                out.drain(start..end);
            }
            ByteEdit::Insert(i, bytes) => {
                let start = at(i, len);
                out.splice(start..start, bytes.iter().copied());
            }
            ByteEdit::Duplicate(i, n) => {
                let start = at(i, len);
                let end = (start + usize::from(*n)).min(len);
                let piece = out[start..end].to_vec();
                out.splice(end..end, piece);
            }
            ByteEdit::Splice(i, other, from, n) => {
                let other = &seeds[other.index(seeds.len())];
                let start = at(from, other.len());
                let end = (start + usize::from(*n)).min(other.len());
                let target = at(i, len);
                out.splice(target..target, other[start..end].iter().copied());
            }
            _ => {}
        }
    }
    out
}

/// Byte mutations of one of `seeds`: flips, truncations, deletions, odd insertions,
/// duplications and splices from other seeds, 1 to 8 at once.
pub fn mutated_bytes(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (any::<Index>(), prop::collection::vec(byte_edit(), 1..8))
        .prop_map(move |(seed, edits)| apply_bytes(&seeds, &seed, &edits))
}

/// A change to a JSON document, at a node chosen among all of its nodes.
#[derive(Debug, Clone)]
pub enum JsonEdit {
    Replace(Index, Value),
    Remove(Index),
    /// Wrap the node in this many arrays.
    Nest(Index, u16),
    /// Put a node of another seed here.
    Splice(Index, Index, Index),
    /// Insert a string into a string node at a position.
    InsertText(Index, Index, String),
}

fn json_edit() -> impl Strategy<Value = JsonEdit> {
    prop_oneof![
        4 => (any::<Index>(), odd_value()).prop_map(|(i, v)| JsonEdit::Replace(i, v)),
        2 => any::<Index>().prop_map(JsonEdit::Remove),
        1 => (any::<Index>(), 1u16..200).prop_map(|(i, n)| JsonEdit::Nest(i, n)),
        2 => (any::<Index>(), any::<Index>(), any::<Index>()).prop_map(|(i, s, n)| JsonEdit::Splice(i, s, n)),
        4 => (any::<Index>(), any::<Index>(), odd_string()).prop_map(|(i, p, s)| JsonEdit::InsertText(i, p, s)),
    ]
}

/// Every node's JSON pointer, the root first.
pub fn pointers(value: &Value) -> Vec<String> {
    fn walk(v: &Value, at: String, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    let key = k.replace('~', "~0").replace('/', "~1");
                    walk(child, format!("{at}/{key}"), out);
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    walk(child, format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
        out.push(at);
    }
    let mut out = Vec::new();
    walk(value, String::new(), &mut out);
    out.reverse();
    out
}

/// Applies JSON edits to a copy of `seeds[seed]`.
pub fn apply_json(seeds: &[Value], seed: &Index, edits: &[JsonEdit]) -> Value {
    let mut doc = seeds[seed.index(seeds.len())].clone();
    for edit in edits {
        let all = pointers(&doc);
        let pick = |i: &Index| all[i.index(all.len())].clone();
        match edit {
            JsonEdit::Replace(i, v) => {
                if let Some(node) = doc.pointer_mut(&pick(i)) {
                    *node = v.clone();
                }
            }
            JsonEdit::Remove(i) => {
                let at = pick(i);
                if let Some((parent, key)) = at.rsplit_once('/') {
                    match doc.pointer_mut(parent) {
                        Some(Value::Object(map)) => {
                            map.remove(&key.replace("~1", "/").replace("~0", "~"));
                        }
                        Some(Value::Array(items)) => {
                            if let Some(n) = key.parse::<usize>().ok().filter(|&n| n < items.len())
                            {
                                items.remove(n);
                            }
                        }
                        _ => {}
                    }
                }
            }
            JsonEdit::Nest(i, depth) => {
                if let Some(node) = doc.pointer_mut(&pick(i)) {
                    let inner = node.take();
                    *node = (0..*depth).fold(inner, |v, _| Value::Array(vec![v]));
                }
            }
            JsonEdit::Splice(i, other, n) => {
                let other = &seeds[other.index(seeds.len())];
                let theirs = pointers(other);
                let piece = other.pointer(&theirs[n.index(theirs.len())]).cloned();
                if let (Some(node), Some(piece)) = (doc.pointer_mut(&pick(i)), piece) {
                    *node = piece;
                }
            }
            JsonEdit::InsertText(i, at, text) => {
                if let Some(Value::String(s)) = doc.pointer_mut(&pick(i)) {
                    let bounds: Vec<usize> =
                        s.char_indices().map(|(b, _)| b).chain([s.len()]).collect();
                    s.insert_str(bounds[at.index(bounds.len())], text);
                }
            }
        }
    }
    doc
}

/// JSON-level mutations of one of `seeds` (1 to 6 at once), so the input gets past the JSON
/// parser and into the typed readers and the decisions behind them.
pub fn mutated_json(seeds: Vec<Value>) -> impl Strategy<Value = Value> {
    (any::<Index>(), prop::collection::vec(json_edit(), 1..6))
        .prop_map(move |(seed, edits)| apply_json(&seeds, &seed, &edits))
}

/// Arbitrary bytes, biased to short.
pub fn arbitrary_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 0..256),
        1 => prop::collection::vec(any::<u8>(), 0..8192),
    ]
}

/// Whether `text` shows the canary (raw, or escaped as `{:?}` would).
pub fn shows_canary(text: &str) -> bool {
    text.contains(CANARY_TAIL)
}

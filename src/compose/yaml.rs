//! A YAML tree that remembers where every node came from, so each error names FILE:LINE.
//!
//! Built from saphyr-parser's events (serde_norway gives no positions on values and drops
//! tags). Compose is read the way compose-go's go-yaml v3 reads it: anchors and aliases are
//! expanded, `<<` merge keys fold the merged mappings in (explicit keys win, earlier sources
//! win over later ones), `!reset` and `!override` are kept for the merge step, keys are
//! strings, duplicate keys are an error, and a file may hold several documents (later ones
//! override earlier ones). Scalars stay text with their quoting style: what a scalar means
//! (a number, a mode, a boolean) depends on the field, and Compose reads quoted and plain
//! values differently (`mode: 0440` against `mode: "440"`).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// Deepest nesting accepted; deeper input is refused instead of exhausting the stack later.
const MAX_DEPTH: usize = 128;
/// Most nodes that alias expansion may create in one file ("billion laughs" stops here).
const MAX_EXPANDED_NODES: usize = 1_000_000;

/// Where a node starts: file, 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pos {
    pub file: Arc<str>,
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

impl Pos {
    pub fn new(file: &Arc<str>, span: &Span) -> Self {
        Self {
            file: Arc::clone(file),
            line: span.start.line(),
            col: span.start.col() + 1,
        }
    }
}

/// The Compose merge tags; `Str` is `!!str`, which makes a plain scalar a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tag {
    #[default]
    None,
    Reset,
    Override,
    Str,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub pos: Pos,
    pub tag: Tag,
    pub kind: Kind,
}

#[derive(Debug, Clone)]
pub enum Kind {
    Scalar(Scalar),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

#[derive(Debug, Clone)]
pub struct Scalar {
    pub text: String,
    /// Written without quotes (and untagged): only such scalars are numbers, booleans or null.
    pub plain: bool,
    /// Part of the text came from an interpolated variable (the shell or `.env`).
    pub from_vars: bool,
}

#[derive(Debug, Clone)]
pub struct Key {
    pub name: String,
    pub pos: Pos,
}

/// A document that is not YAML; the message never quotes the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pos}: not valid YAML: {reason}")]
pub struct YamlError {
    pub pos: Pos,
    pub reason: String,
}

impl Node {
    pub fn scalar(pos: Pos, text: impl Into<String>) -> Self {
        Node {
            pos,
            tag: Tag::None,
            kind: Kind::Scalar(Scalar {
                text: text.into(),
                plain: false,
                from_vars: false,
            }),
        }
    }

    pub fn map(pos: Pos, entries: Vec<(Key, Node)>) -> Self {
        Node {
            pos,
            tag: Tag::None,
            kind: Kind::Map(entries),
        }
    }

    /// A plain `null`, `~` or empty scalar.
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar(s) if s.plain && matches!(s.text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    pub fn as_scalar(&self) -> Option<&Scalar> {
        match &self.kind {
            Kind::Scalar(s) if !self.is_null() => Some(s),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        self.as_scalar().map(|s| s.text.as_str())
    }

    pub fn as_map(&self) -> Option<&[(Key, Node)]> {
        match &self.kind {
            Kind::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_map_mut(&mut self) -> Option<&mut Vec<(Key, Node)>> {
        match &mut self.kind {
            Kind::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.kind {
            Kind::Seq(s) => Some(s),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        self.as_map_mut()?
            .iter_mut()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v)
    }

    /// What the node is, for messages: never its content.
    pub fn describe(&self) -> &'static str {
        match &self.kind {
            _ if self.is_null() => "null",
            Kind::Scalar(_) => "a scalar",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }

    /// Number of nodes in this subtree (for the alias expansion budget).
    fn size(&self) -> usize {
        match &self.kind {
            Kind::Scalar(_) => 1,
            Kind::Seq(items) => 1 + items.iter().map(Node::size).sum::<usize>(),
            Kind::Map(entries) => 1 + entries.iter().map(|(_, v)| v.size()).sum::<usize>(),
        }
    }
}

/// A collection being built.
enum Frame {
    Seq {
        node: Node,
        anchor: usize,
    },
    Map {
        node: Node,
        anchor: usize,
        key: Option<Key>,
        /// The next value is a `<<` merge source (the key's position).
        merging: Option<Pos>,
        merges: Vec<(Pos, Node)>,
    },
}

fn tag_of(tag: Option<&saphyr_parser::Tag>) -> Tag {
    match tag {
        Some(t) if t.handle == "!" && t.suffix == "reset" => Tag::Reset,
        Some(t) if t.handle == "!" && t.suffix == "override" => Tag::Override,
        Some(t) if t.is_yaml_core_schema() && t.suffix == "str" => Tag::Str,
        _ => Tag::None,
    }
}

/// Parses every document of `text`; empty documents are skipped.
pub fn parse(file: &Arc<str>, text: &str) -> Result<Vec<Node>, YamlError> {
    let text = super::flow::indent_flow_lines(text);
    let mut parser = Parser::new_from_str(&text);
    let mut docs = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut budget = MAX_EXPANDED_NODES;
    let mut last = Pos {
        file: Arc::clone(file),
        line: 1,
        col: 1,
    };
    while let Some(event) = parser.next_event() {
        let (event, span) = event.map_err(|e| {
            let m = e.marker();
            YamlError {
                pos: Pos {
                    file: Arc::clone(file),
                    line: m.line(),
                    col: m.col() + 1,
                },
                // saphyr's one message that quotes input is about a single character.
                reason: if e.info().starts_with("unexpected character") {
                    "unexpected character".into()
                } else {
                    e.info().to_string()
                },
            }
        })?;
        let pos = Pos::new(file, &span);
        last = pos.clone();
        let err = |reason: &str| YamlError {
            pos: pos.clone(),
            reason: reason.to_string(),
        };
        let (done, anchor) = match event {
            Event::StreamStart | Event::StreamEnd | Event::Nothing => continue,
            Event::DocumentStart(_) => {
                anchors.clear();
                continue;
            }
            Event::DocumentEnd => continue,
            Event::SequenceStart(anchor, tag) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(err("nested too deeply"));
                }
                let mut node = Node {
                    pos,
                    tag: tag_of(tag.as_deref()),
                    kind: Kind::Seq(Vec::new()),
                };
                node.tag = if node.tag == Tag::Str {
                    Tag::None
                } else {
                    node.tag
                };
                stack.push(Frame::Seq { node, anchor });
                continue;
            }
            Event::MappingStart(anchor, tag) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(err("nested too deeply"));
                }
                let t = tag_of(tag.as_deref());
                let node = Node {
                    pos,
                    tag: if t == Tag::Str { Tag::None } else { t },
                    kind: Kind::Map(Vec::new()),
                };
                stack.push(Frame::Map {
                    node,
                    anchor,
                    key: None,
                    merging: None,
                    merges: Vec::new(),
                });
                continue;
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq { node, anchor }) => (node, anchor),
                _ => return Err(err("unbalanced sequence")),
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map {
                    mut node,
                    anchor,
                    merges,
                    ..
                }) => {
                    fold_merges(&mut node, merges)?;
                    (node, anchor)
                }
                _ => return Err(err("unbalanced mapping")),
            },
            Event::Scalar(text, style, anchor, tag) => {
                let tag = tag_of(tag.as_deref());
                let plain = style == ScalarStyle::Plain && tag == Tag::None;
                let node = Node {
                    pos,
                    tag: if tag == Tag::Str { Tag::None } else { tag },
                    kind: Kind::Scalar(Scalar {
                        text: text.into_owned(),
                        plain,
                        from_vars: false,
                    }),
                };
                (node, anchor)
            }
            Event::Alias(id) => {
                let Some(target) = anchors.get(&id) else {
                    return Err(err("alias to an unknown anchor"));
                };
                let size = target.size();
                budget = budget
                    .checked_sub(size)
                    .ok_or_else(|| err("aliases expand to too many nodes"))?;
                (target.clone(), 0)
            }
        };
        if anchor > 0 {
            anchors.insert(anchor, done.clone());
        }
        match stack.last_mut() {
            None => {
                if !done.is_null() {
                    docs.push(done);
                }
            }
            Some(Frame::Seq { node, .. }) => {
                if let Kind::Seq(items) = &mut node.kind {
                    items.push(done);
                }
            }
            Some(Frame::Map {
                node,
                key,
                merging,
                merges,
                ..
            }) => match key.take() {
                None if merging.is_some() => {
                    if let Some(at) = merging.take() {
                        merges.push((at, done));
                    }
                }
                None => {
                    let Kind::Scalar(s) = &done.kind else {
                        return Err(YamlError {
                            pos: done.pos,
                            reason: "mapping keys must be strings".into(),
                        });
                    };
                    if s.plain && s.text == "<<" {
                        *merging = Some(done.pos.clone());
                    } else {
                        *key = Some(Key {
                            name: s.text.clone(),
                            pos: done.pos,
                        });
                    }
                }
                Some(k) => {
                    if let Kind::Map(entries) = &mut node.kind {
                        if entries.iter().any(|(e, _)| e.name == k.name) {
                            return Err(YamlError {
                                pos: k.pos,
                                reason: format!("key {:?} is defined twice", shorten(&k.name)),
                            });
                        }
                        entries.push((k, done));
                    }
                }
            },
        }
    }
    if !stack.is_empty() {
        return Err(YamlError {
            pos: last,
            reason: "unexpected end of input".into(),
        });
    }
    Ok(docs)
}

/// Applies `<<` merge sources to a finished mapping: keys already present win, and among the
/// sources the first one to define a key wins (go-yaml's rule).
fn fold_merges(node: &mut Node, merges: Vec<(Pos, Node)>) -> Result<(), YamlError> {
    let Kind::Map(entries) = &mut node.kind else {
        return Ok(());
    };
    for (at, source) in merges {
        let maps: Vec<Node> = match source.kind {
            Kind::Map(_) => vec![source],
            Kind::Seq(items) => items,
            _ => {
                return Err(YamlError {
                    pos: at,
                    reason: "a << merge key needs a mapping or a list of mappings".into(),
                })
            }
        };
        for map in maps {
            let Kind::Map(from) = map.kind else {
                return Err(YamlError {
                    pos: at,
                    reason: "a << merge key needs a mapping or a list of mappings".into(),
                });
            };
            for (k, v) in from {
                if !entries.iter().any(|(e, _)| e.name == k.name) {
                    entries.push((k, v));
                }
            }
        }
    }
    Ok(())
}

/// A key for a message: short, and only when it is a plain identifier.
pub fn shorten(key: &str) -> String {
    if key.len() <= 64
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        key.to_string()
    } else {
        "(unprintable key)".into()
    }
}

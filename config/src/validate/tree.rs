//! The YAML document as a tree of located nodes, read from the parser's
//! events without recursion.
//!
//! Nesting is bounded by [`MAX_DEPTH`], the values (aliases expanded) by
//! [`MAX_NODES`], and the text that aliases repeat by [`MAX_ALIAS_BYTES`],
//! so no input can exhaust the stack or the memory.

use std::collections::HashMap;
use std::rc::Rc;

use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::Location;
use crate::location::{MAX_DEPTH, MAX_NODES};

/// Most bytes of scalar text (keys included) that aliases may repeat. Each
/// alias is a copy of its anchor's text, for every pass that follows, so
/// without this a few hundred kilobytes (a long scalar and thousands of
/// aliases of it) would take gigabytes; a weir.yaml that shares blocks
/// through anchors repeats far less.
pub(super) const MAX_ALIAS_BYTES: usize = 4 << 20;

/// A node and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Node {
    /// Where the node starts.
    pub(super) at: Location,
    /// What it holds.
    pub(super) value: Value,
    /// Nodes in this subtree, itself included.
    size: usize,
    /// Bytes of scalar text in this subtree, keys included.
    bytes: usize,
}

/// A node's content.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Value {
    /// A scalar as written.
    Scalar(Scalar),
    /// A sequence. Shared by the node's copies (kept for an anchor, made for
    /// an alias): anchors nested 64 deep would otherwise hold 64 copies.
    Seq(Rc<[Node]>),
    /// A mapping, entries in file order (duplicates kept, for the checks);
    /// shared as a sequence is.
    Map(Rc<[Entry]>),
}

/// A scalar's text and how it was written.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Scalar {
    /// The text, after YAML unescaping.
    pub(super) text: String,
    /// Plain (unquoted, untagged): its type follows from its text.
    pub(super) plain: bool,
}

/// A mapping entry.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Entry {
    /// The key's text; `?` for a key that is not a scalar.
    pub(super) key: String,
    /// Where the key is written.
    pub(super) key_at: Location,
    /// False when the key is a sequence or mapping.
    pub(super) key_is_scalar: bool,
    /// The value.
    pub(super) value: Node,
}

/// Why the document cannot be read as a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TreeError {
    /// Where.
    pub(super) at: Location,
    /// The key path open there (`routes[0].stable.revision`).
    pub(super) path: String,
    /// What is wrong.
    pub(super) message: String,
}

/// A sequence or mapping being read.
struct Open {
    at: Location,
    anchor: usize,
    is_map: bool,
    items: Vec<Node>,
    entries: Vec<Entry>,
    /// A mapping's key read, waiting for its value.
    key: Option<(String, Location, bool)>,
    size: usize,
    bytes: usize,
}

/// Reads the first document of `text`; `Ok(None)` when there is none.
///
/// # Errors
/// A YAML syntax error, nesting deeper than [`MAX_DEPTH`], aliases that
/// expand beyond [`MAX_NODES`], a tag, or a second document.
pub(super) fn read(text: &str) -> Result<Option<Node>, TreeError> {
    let mut stack: Vec<Open> = Vec::new();
    read_into(text, &mut stack).map_err(|mut error| {
        error.path = open_path(&stack);
        error
    })
}

/// The key path of the value being read, from the open sequences and
/// mappings: up to the last mapping waiting for a key.
fn open_path(stack: &[Open]) -> String {
    let mut path = String::new();
    for open in stack {
        if !open.is_map {
            path.push_str(&format!("[{}]", open.items.len()));
            continue;
        }
        let Some((key, _, _)) = &open.key else { break };
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key);
    }
    path
}

/// [`read`], with the open sequences and mappings in `stack`.
fn read_into(text: &str, stack: &mut Vec<Open>) -> Result<Option<Node>, TreeError> {
    let mut parser = Parser::new_from_str(text);
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    // Each node counts once, when it starts; an alias counts the nodes it
    // stands for.
    let mut total = 0usize;
    let mut aliased = false;
    let mut repeated = 0usize;
    let mut root: Option<Node> = None;
    let mut documents = 0usize;
    loop {
        let (event, mark) = parser.next_token().map_err(|error| TreeError {
            path: String::new(),
            at: location(*error.marker()),
            message: format!("invalid YAML: {}", error.info()),
        })?;
        let at = location(mark);
        let (node, anchor) = match event {
            Event::StreamEnd => return Ok(root),
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    return Err(TreeError {
                        path: String::new(),
                        at,
                        message: "the file holds more than one YAML document (a `---` line after the first, or content after a `...` line); weir reads one: remove the others".to_owned(),
                    });
                }
                continue;
            }
            Event::Nothing | Event::StreamStart | Event::DocumentEnd => continue,
            Event::SequenceStart(anchor, ref tag) | Event::MappingStart(anchor, ref tag) => {
                refuse_tag(tag.as_ref(), at)?;
                if stack.len() >= MAX_DEPTH {
                    return Err(too_deep(at));
                }
                total += 1;
                if total > MAX_NODES {
                    return Err(too_many(at, aliased));
                }
                stack.push(Open {
                    at,
                    anchor,
                    is_map: matches!(event, Event::MappingStart(..)),
                    items: Vec::new(),
                    entries: Vec::new(),
                    key: None,
                    size: 1,
                    bytes: 0,
                });
                continue;
            }
            // Counted when it started.
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(open) => open.close(),
                None => continue,
            },
            Event::Scalar(text, style, anchor, tag) => {
                let plain = match &tag {
                    None => matches!(style, TScalarStyle::Plain),
                    Some(tag) if tag.suffix == "str" => false,
                    Some(_) => return Err(refused_tag(tag.as_ref(), at)),
                };
                let node = Node {
                    at,
                    bytes: text.len(),
                    value: Value::Scalar(Scalar { text, plain }),
                    size: 1,
                };
                total += 1;
                if total > MAX_NODES {
                    return Err(too_many(at, aliased));
                }
                (node, anchor)
            }
            Event::Alias(id) => {
                let Some(node) = anchors.get(&id) else {
                    return Err(TreeError {
                        path: String::new(),
                        at,
                        message: "an alias names an anchor that is not defined before it"
                            .to_owned(),
                    });
                };
                aliased = true;
                total = total.saturating_add(node.size);
                if total > MAX_NODES {
                    return Err(too_many(at, aliased));
                }
                repeated = repeated.saturating_add(node.bytes);
                if repeated > MAX_ALIAS_BYTES {
                    return Err(TreeError {
                        path: String::new(),
                        at,
                        message: format!(
                            "the aliases repeat more than {} MiB of text; write the file out more simply",
                            MAX_ALIAS_BYTES >> 20
                        ),
                    });
                }
                let mut node = node.clone();
                node.at = at;
                (node, 0)
            }
        };
        if anchor != 0 {
            // Shares the node's items and entries: no copy of them.
            anchors.insert(anchor, node.clone());
        }
        match stack.last_mut() {
            None => {
                if root.is_none() {
                    root = Some(node);
                }
            }
            Some(open) => open.attach(node),
        }
    }
}

/// The tree of a JSON value (a CanaryRoute's `spec` as the API server
/// returns it), every node at `at`: JSON strings are quoted scalars, numbers,
/// booleans and null plain ones, so they are typed as in a YAML file.
///
/// # Errors
/// Nesting deeper than [`MAX_DEPTH`].
pub(super) fn from_json(value: &serde_json::Value, at: Location) -> Result<Node, TreeError> {
    from_json_at(value, at, 0)
}

fn from_json_at(value: &serde_json::Value, at: Location, depth: usize) -> Result<Node, TreeError> {
    use serde_json::Value as Json;
    let scalar = |text: String, plain: bool| Node {
        at,
        bytes: text.len(),
        value: Value::Scalar(Scalar { text, plain }),
        size: 1,
    };
    let node = match value {
        Json::Null => scalar("null".to_owned(), true),
        Json::Bool(b) => scalar(b.to_string(), true),
        Json::Number(n) => scalar(n.to_string(), true),
        Json::String(text) => scalar(text.clone(), false),
        Json::Array(_) | Json::Object(_) if depth >= MAX_DEPTH => return Err(too_deep(at)),
        Json::Array(items) => {
            let items = items
                .iter()
                .map(|item| from_json_at(item, at, depth + 1))
                .collect::<Result<Vec<Node>, TreeError>>()?;
            let size = 1 + items.iter().map(|n| n.size).sum::<usize>();
            let bytes = items.iter().map(|n| n.bytes).sum();
            Node {
                at,
                value: Value::Seq(items.into()),
                size,
                bytes,
            }
        }
        Json::Object(map) => {
            let entries = map
                .iter()
                .map(|(key, value)| {
                    Ok(Entry {
                        key: key.clone(),
                        key_at: at,
                        key_is_scalar: true,
                        value: from_json_at(value, at, depth + 1)?,
                    })
                })
                .collect::<Result<Vec<Entry>, TreeError>>()?;
            let size = 1 + entries.iter().map(|e| e.value.size).sum::<usize>();
            let bytes = entries.iter().map(|e| e.key.len() + e.value.bytes).sum();
            Node {
                at,
                value: Value::Map(entries.into()),
                size,
                bytes,
            }
        }
    };
    Ok(node)
}

// === impl Open ===

impl Open {
    /// The finished node and its anchor id (0 for none).
    fn close(self) -> (Node, usize) {
        let value = if self.is_map {
            Value::Map(self.entries.into())
        } else {
            Value::Seq(self.items.into())
        };
        let node = Node {
            at: self.at,
            value,
            size: self.size,
            bytes: self.bytes,
        };
        (node, self.anchor)
    }

    fn attach(&mut self, node: Node) {
        self.size = self.size.saturating_add(node.size);
        self.bytes = self.bytes.saturating_add(node.bytes);
        if !self.is_map {
            self.items.push(node);
            return;
        }
        match self.key.take() {
            None => {
                self.key = Some(match node.value {
                    Value::Scalar(scalar) => (scalar.text, node.at, true),
                    Value::Seq(_) | Value::Map(_) => ("?".to_owned(), node.at, false),
                });
            }
            Some((key, key_at, key_is_scalar)) => {
                let mut value = node;
                // A key with nothing after it: the parser places the empty
                // value at the next token, lines further on (past blank
                // lines and comments, or at the file's end); it is said
                // where the key is.
                if matches!(&value.value, Value::Scalar(s) if s.plain && s.text.is_empty())
                    && value.at.line > key_at.line
                {
                    value.at = key_at;
                }
                self.entries.push(Entry {
                    key,
                    key_at,
                    key_is_scalar,
                    value,
                });
            }
        }
    }
}

fn refuse_tag(tag: Option<&Tag>, at: Location) -> Result<(), TreeError> {
    match tag {
        None => Ok(()),
        Some(_) => Err(refused_tag(tag, at)),
    }
}

fn refused_tag(tag: Option<&Tag>, at: Location) -> TreeError {
    let shown = tag.map_or_else(String::new, |t| {
        let handle = if t.handle == "tag:yaml.org,2002:" {
            "!!"
        } else {
            &t.handle
        };
        format!("{handle}{}", t.suffix)
    });
    TreeError {
        path: String::new(),
        at,
        message: format!(
            "YAML tag `{shown}` is not supported; remove it (quote a value to make it a string)"
        ),
    }
}

/// More than [`MAX_NODES`] values, counting what aliases stand for when
/// `aliased`.
fn too_many(at: Location, aliased: bool) -> TreeError {
    let message = if aliased {
        format!(
            "the document holds more than {MAX_NODES} values once aliases are expanded; write it out more simply"
        )
    } else {
        format!(
            "the document holds more than {MAX_NODES} values (keys, values and list items), more than weir reads; a weir.yaml of a thousand routes holds fewer"
        )
    };
    TreeError {
        at,
        path: String::new(),
        message,
    }
}

fn too_deep(at: Location) -> TreeError {
    TreeError {
        path: String::new(),
        at,
        message: format!(
            "the YAML nests deeper than {MAX_DEPTH} levels; a weir.yaml needs fewer than 10"
        ),
    }
}

fn location(mark: Marker) -> Location {
    // yaml-rust2 counts lines from 1 but columns from 0.
    Location {
        line: mark.line(),
        column: mark.col() + 1,
    }
}

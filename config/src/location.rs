//! Maps key paths such as `routes[0].strategy.steps[2].setWeight` to the
//! line and column where they are written.
//!
//! A mapping entry is located at its key, a sequence item at the start of the
//! item. Paths use `.key` for mapping entries and `[n]` for sequence items;
//! the root is the empty path.

use std::collections::HashMap;
use std::fmt;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Deepest nesting of sequences and mappings read; deeper input is refused
/// before it can exhaust the stack of anything that walks it.
pub(crate) const MAX_DEPTH: usize = 64;

/// A 1-based line and column in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
}

/// Locations of every key and sequence item in a YAML document, by key path.
#[derive(Debug, Clone, Default)]
pub struct LocationIndex {
    by_path: HashMap<String, Location>,
    root: Option<RootKind>,
    syntax_error: Option<SyntaxError>,
}

/// Where and why the YAML parser gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    /// Where the parser stopped.
    pub(crate) location: Location,
    /// The innermost key path open at that point.
    pub(crate) path: String,
    /// The parser's message.
    pub(crate) message: String,
}

/// What the top of the document is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RootKind {
    /// No node at all, or a null scalar (`~`, `null`, nothing after `---`).
    Empty,
    /// A mapping, as a config file should be.
    Mapping,
    /// A sequence.
    Sequence,
    /// A non-null scalar, or an alias.
    Scalar,
}

/// The state of a mapping being walked: which half of an entry comes next.
#[derive(Debug)]
enum MapState {
    /// The next node is a key.
    Key,
    /// A key that is itself a sequence or mapping is open.
    ComplexKey,
    /// The next node is the value of this key.
    Value(String),
}

/// An open sequence or mapping.
#[derive(Debug)]
enum Frame {
    Map {
        path: String,
        state: MapState,
        /// A sequence item whose location may be replaced by that of its
        /// first key (a block mapping's start mark lies after its first key).
        item: Option<String>,
    },
    Seq {
        path: String,
        next: usize,
    },
}

/// Receives the parser's events and records locations.
#[derive(Debug, Default)]
struct Builder {
    frames: Vec<Frame>,
    index: LocationIndex,
    done: bool,
}

/// The path of entry `key` of the mapping at `parent`.
pub(crate) fn child_key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// The path one segment up from `path`: `a.b[2]` → `a.b` → `a` → `` (root);
/// `None` for the root itself.
pub(crate) fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    match path.rfind(['.', '[']) {
        Some(at) => Some(&path[..at]),
        None => Some(""),
    }
}

// === impl Location ===

impl Location {
    fn from_marker(mark: Marker) -> Location {
        // yaml-rust2 counts lines from 1 but columns from 0.
        Location {
            line: mark.line(),
            column: mark.col() + 1,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

// === impl LocationIndex ===

impl LocationIndex {
    /// Indexes the first document of `text`. A document with a syntax error
    /// is indexed up to the error.
    pub fn build(text: &str) -> LocationIndex {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(text);
        // Events are pulled one by one rather than with `Parser::load`, which
        // recurses once per nesting level.
        while !builder.done {
            match parser.next_token() {
                Ok((event, mark)) => {
                    let end = matches!(event, Event::StreamEnd);
                    builder.on_event(event, mark);
                    if builder.frames.len() > MAX_DEPTH {
                        builder.index.syntax_error = Some(SyntaxError {
                            location: Location::from_marker(mark),
                            path: builder.current_path(),
                            message: format!("the YAML nests deeper than {MAX_DEPTH} levels"),
                        });
                        break;
                    }
                    if end {
                        break;
                    }
                }
                Err(error) => {
                    // The scanner's own bound on flow nesting (`[[[...`) can
                    // be reached while it looks ahead, before ours.
                    let message = if error.info() == "recursion limit exceeded" {
                        format!("the YAML nests deeper than {MAX_DEPTH} levels")
                    } else {
                        error.info().to_owned()
                    };
                    builder.index.syntax_error = Some(SyntaxError {
                        location: Location::from_marker(*error.marker()),
                        path: builder.current_path(),
                        message,
                    });
                    break;
                }
            }
        }
        builder.index
    }

    /// The location of `path`, or of its nearest indexed ancestor.
    pub fn find(&self, path: &str) -> Option<Location> {
        let mut at = Some(path);
        while let Some(p) = at {
            if let Some(location) = self.by_path.get(p) {
                return Some(*location);
            }
            at = parent(p);
        }
        None
    }

    /// The location of `path` itself, if it is written in the file.
    pub fn get(&self, path: &str) -> Option<Location> {
        self.by_path.get(path).copied()
    }

    /// True when nothing is indexed (an empty or unparsable document).
    pub fn is_empty(&self) -> bool {
        self.by_path.is_empty()
    }

    /// What the top of the document is; `None` when the YAML does not parse
    /// up to the root node.
    pub(crate) fn root(&self) -> Option<&RootKind> {
        self.root.as_ref()
    }

    /// Where and why the YAML parser gave up, if it did.
    pub(crate) fn syntax_error(&self) -> Option<&SyntaxError> {
        self.syntax_error.as_ref()
    }
}

// === impl Builder ===

impl Builder {
    /// The path of the innermost open node.
    fn current_path(&self) -> String {
        match self.frames.last() {
            None => String::new(),
            Some(Frame::Map {
                path,
                state: MapState::Value(key),
                ..
            }) => child_key(path, key),
            Some(Frame::Map { path, .. } | Frame::Seq { path, .. }) => path.clone(),
        }
    }

    fn record(&mut self, path: &str, at: Location) {
        // With a duplicate key, the first one stays: serde reports the duplicate.
        self.index.by_path.entry(path.to_owned()).or_insert(at);
    }

    /// Handles the start of a node (scalar, alias, sequence or mapping).
    /// Returns the node's path when it is a value or item, `None` for a key.
    fn node_path(
        &mut self,
        at: Location,
        scalar: Option<&str>,
        is_container: bool,
    ) -> Option<String> {
        let Some(frame) = self.frames.last_mut() else {
            return Some(String::new());
        };
        match frame {
            Frame::Seq { path, next } => {
                let item = format!("{path}[{next}]");
                *next += 1;
                self.record(&item, at);
                Some(item)
            }
            Frame::Map { path, state, item } => match state {
                MapState::Key => {
                    let key = scalar.unwrap_or("?").to_owned();
                    let entry = child_key(path, &key);
                    let fix = item.take();
                    *state = if is_container {
                        MapState::ComplexKey
                    } else {
                        MapState::Value(key)
                    };
                    if let Some(fix) = fix {
                        if let Some(old) = self.index.by_path.get_mut(&fix) {
                            *old = (*old).min(at);
                        }
                    }
                    if !is_container {
                        self.record(&entry, at);
                    }
                    None
                }
                MapState::ComplexKey => None,
                MapState::Value(key) => {
                    let entry = child_key(path, key);
                    *state = MapState::Key;
                    Some(entry)
                }
            },
        }
    }

    /// Handles the end of a sequence or mapping.
    fn close(&mut self) {
        self.frames.pop();
        if let Some(Frame::Map { state, .. }) = self.frames.last_mut() {
            if let MapState::ComplexKey = state {
                *state = MapState::Value("?".to_owned());
            }
        }
    }

    fn open(&mut self, path: Option<String>, is_map: bool, at_root: bool) {
        // A container inside a complex key is walked under a placeholder path.
        let (path, keyed) = match path {
            Some(p) => (p, true),
            None => ("?".to_owned(), false),
        };
        let item = if keyed && (at_root || path.ends_with(']')) {
            Some(path.clone())
        } else {
            None
        };
        self.frames.push(if is_map {
            Frame::Map {
                path,
                state: MapState::Key,
                item,
            }
        } else {
            Frame::Seq { path, next: 0 }
        });
    }

    fn set_root(&mut self, kind: RootKind, at: Location) {
        self.index.root = Some(kind);
        self.record("", at);
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        if self.done {
            return;
        }
        let at = Location::from_marker(mark);
        let at_root = self.frames.is_empty();
        match event {
            Event::Scalar(value, style, _, _) => {
                if at_root {
                    let null = matches!(style, TScalarStyle::Plain)
                        && matches!(value.as_str(), "" | "~" | "null" | "Null" | "NULL");
                    let kind = if null {
                        RootKind::Empty
                    } else {
                        RootKind::Scalar
                    };
                    self.set_root(kind, at);
                } else {
                    self.node_path(at, Some(&value), false);
                }
            }
            Event::Alias(_) => {
                if at_root {
                    self.set_root(RootKind::Scalar, at);
                } else {
                    self.node_path(at, None, false);
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let is_map = matches!(event, Event::MappingStart(..));
                if at_root {
                    let kind = if is_map {
                        RootKind::Mapping
                    } else {
                        RootKind::Sequence
                    };
                    self.set_root(kind, at);
                }
                let path = self.node_path(at, None, true);
                self.open(path, is_map, at_root);
            }
            Event::MappingEnd | Event::SequenceEnd => self.close(),
            Event::DocumentEnd => self.done = true,
            Event::StreamEnd => {
                if self.index.root.is_none() {
                    self.index.root = Some(RootKind::Empty);
                }
                self.done = true;
            }
            Event::Nothing | Event::StreamStart | Event::DocumentStart => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: usize, column: usize) -> Option<Location> {
        Some(Location { line, column })
    }

    #[test]
    fn indexes_keys_and_items() {
        let text = "\
listeners:
  - name: public
    address: 0.0.0.0:8080
routes:
  - name: checkout
    timeouts: { connect: 1s }
    stable:
      endpoints: [a:1, b:2]
    strategy:
      steps:
        - setWeight: 5
        - pause: {}
        -   pause:
              duration: 1h
";
        let index = LocationIndex::build(text);
        let cases = [
            ("listeners", at(1, 1)),
            ("listeners[0]", at(2, 5)),
            ("listeners[0].name", at(2, 5)),
            ("listeners[0].address", at(3, 5)),
            ("routes", at(4, 1)),
            ("routes[0].timeouts", at(6, 5)),
            ("routes[0].timeouts.connect", at(6, 17)),
            ("routes[0].stable.endpoints[0]", at(8, 19)),
            ("routes[0].stable.endpoints[1]", at(8, 24)),
            ("routes[0].strategy.steps[0].setWeight", at(11, 11)),
            ("routes[0].strategy.steps[1]", at(12, 11)),
            ("routes[0].strategy.steps[2]", at(13, 13)),
            ("routes[0].strategy.steps[2].pause.duration", at(14, 15)),
            // Absent paths fall back to their nearest indexed ancestor.
            ("routes[0].strategy.steps[1].pause.duration", at(12, 11)),
            ("routes[0].canary.weight", at(5, 5)),
            ("routes[7].name", at(4, 1)),
            ("nothing", at(1, 1)),
        ];
        for (path, want) in cases {
            assert_eq!(index.find(path), want, "{path}");
        }
        assert_eq!(index.get("routes[0].canary"), None);
        assert_eq!(index.root(), Some(&RootKind::Mapping));
        assert_eq!(index.syntax_error(), None);
    }

    #[test]
    fn flow_mapping_items_are_located_at_their_brace() {
        let index = LocationIndex::build("steps: [{setWeight: 5}, {pause: {}}]\n");
        assert_eq!(index.find("steps[0]"), at(1, 9));
        assert_eq!(index.find("steps[0].setWeight"), at(1, 10));
        assert_eq!(index.find("steps[1].pause"), at(1, 26));
    }

    #[test]
    fn classifies_the_root() {
        let cases = [
            ("", RootKind::Empty),
            ("# only a comment\n", RootKind::Empty),
            ("---\n", RootKind::Empty),
            ("~\n", RootKind::Empty),
            ("- a\n", RootKind::Sequence),
            ("hello\n", RootKind::Scalar),
            ("a: 1\n", RootKind::Mapping),
        ];
        for (text, want) in cases {
            assert_eq!(LocationIndex::build(text).root(), Some(&want), "{text:?}");
        }
    }

    #[test]
    fn keeps_what_precedes_a_syntax_error() {
        let index = LocationIndex::build("listeners:\n  - name: a\nroutes: [a, b\n");
        assert_eq!(index.find("listeners[0].name"), at(2, 5));
        let error = index.syntax_error().cloned();
        assert_eq!(error.as_ref().map(|e| e.path.as_str()), Some("routes"));
        assert_eq!(error.map(|e| e.location.line), Some(4));
    }

    #[test]
    fn parent_strips_one_segment() {
        assert_eq!(parent("a.b[2].c"), Some("a.b[2]"));
        assert_eq!(parent("a.b[2]"), Some("a.b"));
        assert_eq!(parent("a"), Some(""));
        assert_eq!(parent(""), None);
    }
}

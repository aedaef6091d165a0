//! Maps key paths such as `routes[0].strategy.steps[2].setWeight` to the
//! line and column where they are written.
//!
//! A mapping entry is located at its key, a sequence item at the start of the
//! item. Paths use `.key` for mapping entries and `[n]` for sequence items;
//! the root is the empty path.
//!
//! Each key and item is kept once, as its parent and its own segment, and
//! looked up by a hash of its path checked segment by segment: the index
//! takes memory in proportion to the file however long or deep its keys
//! (a path held whole per node would repeat a long key once per node below
//! it), and stops growing past twice as many nodes as a valid file holds.

use std::fmt;
use std::fmt::Write as _;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Deepest nesting of sequences and mappings read; deeper input is refused
/// before it can exhaust the stack of anything that walks it.
pub(crate) const MAX_DEPTH: usize = 64;

/// Most values (keys, scalars, sequences and mappings) a document may hold
/// once aliases are expanded; more is refused by the validation.
pub(crate) const MAX_NODES: usize = 100_000;

/// Most keys and items indexed. Each is at least one value of the document,
/// so a document with more is refused anyway: the index stops there rather
/// than grow with a file that cannot be valid.
const MAX_INDEXED: usize = 2 * MAX_NODES;

/// FNV-1a, which can be continued from a prefix's hash: a child's path hash
/// is its parent's continued with the child's segment.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

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
    /// Every key and item (and the root), in the order read.
    nodes: Vec<Indexed>,
    /// The nodes written in the file as (hash of the path, node), sorted:
    /// of two nodes with one path, the first read is found.
    by_hash: Vec<(u64, usize)>,
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

/// A key, item or path start, with where it is written.
#[derive(Debug, Clone)]
struct Indexed {
    segment: Segment,
    at: Location,
    /// The length of its path in bytes.
    len: usize,
    /// The FNV-1a hash of its path.
    hash: u64,
}

/// The last segment of a node's path.
#[derive(Debug, Clone)]
enum Segment {
    /// A path that starts here: the root (``), or `?` for the insides of a
    /// key that is a sequence or mapping.
    Start(&'static str),
    /// Entry `key` of the mapping at `parent`: `.key`, or `key` when the
    /// parent's path is empty.
    Key { parent: usize, key: Box<str> },
    /// Item `n` of the sequence at `parent`: `[n]`.
    Item { parent: usize, n: usize },
}

/// The state of a mapping being walked: which half of an entry comes next.
#[derive(Debug)]
enum MapState {
    /// The next node is a key.
    Key,
    /// A key that is itself a sequence or mapping is open.
    ComplexKey,
    /// The next node is the value of this entry (its node).
    Value(usize),
}

/// An open sequence or mapping, and the node of its path.
#[derive(Debug)]
enum Frame {
    Map {
        node: usize,
        state: MapState,
        /// A sequence item whose location may be replaced by that of its
        /// first key (a block mapping's start mark lies after its first key).
        item: Option<usize>,
    },
    Seq {
        node: usize,
        next: usize,
    },
}

/// Receives the parser's events and records locations.
#[derive(Debug, Default)]
struct Builder {
    frames: Vec<Frame>,
    index: LocationIndex,
    /// The node `?`, under which the insides of complex keys are indexed.
    placeholder: Option<usize>,
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

/// `hash` continued with `bytes`.
fn fnv(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(FNV_PRIME)
    })
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
                    // The validation refuses such a document; where its
                    // nodes are is not needed.
                    if end || builder.index.nodes.len() > MAX_INDEXED {
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
        let mut index = builder.index;
        index.by_hash.sort_unstable();
        index
    }

    /// The location of `path`, or of its nearest indexed ancestor.
    pub fn find(&self, path: &str) -> Option<Location> {
        let mut at = Some(path);
        while let Some(p) = at {
            if let Some(location) = self.get(p) {
                return Some(location);
            }
            at = parent(p);
        }
        None
    }

    /// The location of `path` itself, if it is written in the file.
    pub fn get(&self, path: &str) -> Option<Location> {
        let hash = fnv(FNV_OFFSET, path.as_bytes());
        let from = self.by_hash.partition_point(|&(h, _)| h < hash);
        self.by_hash[from..]
            .iter()
            .take_while(|&&(h, _)| h == hash)
            .find(|&&(_, node)| self.is_path(node, path))
            .map(|&(_, node)| self.nodes[node].at)
    }

    /// True when nothing is indexed (an empty or unparsable document).
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
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

    /// The path of `node`, written out.
    fn path_of(&self, node: usize) -> String {
        let mut chain = vec![node];
        let mut at = node;
        while let Segment::Key { parent, .. } | Segment::Item { parent, .. } =
            self.nodes[at].segment
        {
            chain.push(parent);
            at = parent;
        }
        let mut path = String::with_capacity(self.nodes[node].len);
        for &n in chain.iter().rev() {
            match &self.nodes[n].segment {
                Segment::Start(start) => path.push_str(start),
                Segment::Key { key, .. } => {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(key);
                }
                Segment::Item { n, .. } => {
                    let _ = write!(path, "[{n}]");
                }
            }
        }
        path
    }

    /// Whether the path of `node` is `path`, compared from its last segment.
    fn is_path(&self, node: usize, path: &str) -> bool {
        let mut rest = path;
        let mut at = node;
        loop {
            let node = &self.nodes[at];
            if node.len != rest.len() {
                return false;
            }
            let (parent, up) = match &node.segment {
                Segment::Start(start) => return rest == *start,
                Segment::Key { parent, key } => {
                    let up = rest.strip_suffix(&**key).and_then(|up| {
                        if self.nodes[*parent].len == 0 {
                            Some(up)
                        } else {
                            up.strip_suffix('.')
                        }
                    });
                    (*parent, up)
                }
                Segment::Item { parent, n } => (*parent, rest.strip_suffix(&format!("[{n}]"))),
            };
            match up {
                Some(up) => rest = up,
                None => return false,
            }
            at = parent;
        }
    }

    /// The bytes held on the heap, for the tests that bound them.
    #[cfg(test)]
    fn heap_bytes(&self) -> usize {
        let keys: usize = self
            .nodes
            .iter()
            .map(|n| match &n.segment {
                Segment::Key { key, .. } => key.len(),
                Segment::Start(_) | Segment::Item { .. } => 0,
            })
            .sum();
        self.nodes.capacity() * std::mem::size_of::<Indexed>()
            + self.by_hash.capacity() * std::mem::size_of::<(u64, usize)>()
            + keys
    }
}

// === impl Builder ===

impl Builder {
    /// The path of the innermost open node.
    fn current_path(&self) -> String {
        match self.frames.last() {
            None => String::new(),
            Some(Frame::Map {
                state: MapState::Value(entry),
                ..
            }) => self.index.path_of(*entry),
            Some(Frame::Map { node, .. } | Frame::Seq { node, .. }) => self.index.path_of(*node),
        }
    }

    /// Adds a node; `written` nodes can be looked up (the others are only
    /// the parents of written ones).
    fn push(&mut self, segment: Segment, at: Location, written: bool) -> usize {
        let nodes = &self.index.nodes;
        let (len, hash) = match &segment {
            Segment::Start(start) => (start.len(), fnv(FNV_OFFSET, start.as_bytes())),
            Segment::Key { parent, key } => {
                let parent = &nodes[*parent];
                let (len, hash) = if parent.len == 0 {
                    (0, parent.hash)
                } else {
                    (parent.len + 1, fnv(parent.hash, b"."))
                };
                (len.saturating_add(key.len()), fnv(hash, key.as_bytes()))
            }
            Segment::Item { parent, n } => {
                let parent = &nodes[*parent];
                let item = format!("[{n}]");
                (
                    parent.len.saturating_add(item.len()),
                    fnv(parent.hash, item.as_bytes()),
                )
            }
        };
        let node = nodes.len();
        self.index.nodes.push(Indexed {
            segment,
            at,
            len,
            hash,
        });
        if written {
            self.index.by_hash.push((hash, node));
        }
        node
    }

    /// Sets the state of the innermost mapping.
    fn set_state(&mut self, next: MapState) {
        if let Some(Frame::Map { state, .. }) = self.frames.last_mut() {
            *state = next;
        }
    }

    /// Handles the start of a node (scalar, alias, sequence or mapping) below
    /// the root. Returns the node of its path when it is a value or item,
    /// `None` for a key.
    fn node_path(
        &mut self,
        at: Location,
        scalar: Option<&str>,
        is_container: bool,
    ) -> Option<usize> {
        match self.frames.last_mut()? {
            Frame::Seq { node, next } => {
                let segment = Segment::Item {
                    parent: *node,
                    n: *next,
                };
                *next += 1;
                Some(self.push(segment, at, true))
            }
            Frame::Map { node, state, item } => match state {
                MapState::Key => {
                    let parent = *node;
                    if let Some(fix) = item.take() {
                        let old = &mut self.index.nodes[fix].at;
                        *old = (*old).min(at);
                    }
                    if is_container {
                        self.set_state(MapState::ComplexKey);
                    } else {
                        let key = scalar.unwrap_or("?").into();
                        let entry = self.push(Segment::Key { parent, key }, at, true);
                        self.set_state(MapState::Value(entry));
                    }
                    None
                }
                MapState::ComplexKey => None,
                MapState::Value(entry) => {
                    let entry = *entry;
                    *state = MapState::Key;
                    Some(entry)
                }
            },
        }
    }

    /// Handles the end of a sequence or mapping.
    fn close(&mut self, at: Location) {
        self.frames.pop();
        if let Some(Frame::Map {
            node,
            state: MapState::ComplexKey,
            ..
        }) = self.frames.last()
        {
            // The value of a complex key has the path `parent.?`.
            let parent = *node;
            let key = "?".into();
            let entry = self.push(Segment::Key { parent, key }, at, false);
            self.set_state(MapState::Value(entry));
        }
    }

    fn open(&mut self, node: Option<usize>, is_map: bool, at: Location) {
        let (node, item) = match node {
            Some(node) => {
                let is_item = matches!(
                    self.index.nodes[node].segment,
                    Segment::Start(_) | Segment::Item { .. }
                );
                (node, is_item.then_some(node))
            }
            // A container inside a complex key is walked under a placeholder path.
            None => (self.placeholder(at), None),
        };
        self.frames.push(if is_map {
            Frame::Map {
                node,
                state: MapState::Key,
                item,
            }
        } else {
            Frame::Seq { node, next: 0 }
        });
    }

    /// The node of the placeholder path `?`.
    fn placeholder(&mut self, at: Location) -> usize {
        match self.placeholder {
            Some(node) => node,
            None => {
                let node = self.push(Segment::Start("?"), at, false);
                self.placeholder = Some(node);
                node
            }
        }
    }

    fn set_root(&mut self, kind: RootKind, at: Location) -> usize {
        self.index.root = Some(kind);
        self.push(Segment::Start(""), at, true)
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
                let node = if at_root {
                    let kind = if is_map {
                        RootKind::Mapping
                    } else {
                        RootKind::Sequence
                    };
                    Some(self.set_root(kind, at))
                } else {
                    self.node_path(at, None, true)
                };
                self.open(node, is_map, at);
            }
            Event::MappingEnd | Event::SequenceEnd => self.close(at),
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
    fn a_long_key_is_kept_once_however_many_nodes_lie_below_it() {
        // A key of 20,000 bytes over 2,000 items: held whole in each item's
        // path, 40 MB for a 24 kB file.
        let key = "k".repeat(20_000);
        let text = format!("? {key}\n: [{}]\n", vec!["1"; 2_000].join(","));
        let index = LocationIndex::build(&text);
        assert!(
            index.heap_bytes() < 16 * text.len(),
            "{} bytes held for a file of {}",
            index.heap_bytes(),
            text.len()
        );
        assert_eq!(index.get(&format!("{key}[1999]")), at(2, 4 + 2 * 1_999));
        assert_eq!(index.find(&format!("{key}[7].name")), at(2, 4 + 2 * 7));
        assert_eq!(index.get(&format!("{key}[2000]")), None);
    }

    #[test]
    fn the_index_stops_growing_past_its_bound() {
        // Far more items than any valid file holds (each is a value).
        let text = format!("a: [{}]\n", vec!["1"; MAX_INDEXED + 1_000].join(","));
        let index = LocationIndex::build(&text);
        assert!(
            index.nodes.len() <= MAX_INDEXED + 1,
            "{}",
            index.nodes.len()
        );
        assert_eq!(index.get("a[0]"), at(1, 5));
    }

    #[test]
    fn keys_with_dots_and_brackets_are_found_by_their_written_path() {
        let text = "\
a.b: 1
a:
  b: 2
  'c[0]': 3
  c: [x]
? [k, l]
: {m: 4}
";
        let index = LocationIndex::build(text);
        // Of two nodes with one path, the first written is found.
        assert_eq!(index.get("a.b"), at(1, 1));
        assert_eq!(index.get("a"), at(2, 1));
        assert_eq!(index.get("a.c[0]"), at(4, 3));
        assert_eq!(index.get("a.c"), at(5, 3));
        assert_eq!(index.get("?.m"), at(7, 4));
        assert_eq!(index.get("?[1]"), at(6, 7));
        assert_eq!(index.get("a.b.c"), None);
        assert_eq!(index.find("a.b.c"), at(1, 1));
    }

    #[test]
    fn parent_strips_one_segment() {
        assert_eq!(parent("a.b[2].c"), Some("a.b[2]"));
        assert_eq!(parent("a.b[2]"), Some("a.b"));
        assert_eq!(parent("a"), Some(""));
        assert_eq!(parent(""), None);
    }
}

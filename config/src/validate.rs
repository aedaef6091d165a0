//! Parsing and validation of `weir.yaml`: every error at once, each with
//! `FILE:LINE:COLUMN` and the key path.
//!
//! Three passes: serde reads the structure into the [`crate::schema`] types
//! (the first structural error stops it), `${VAR}` references are replaced,
//! and the semantic checks convert into [`crate::model`] types, recording
//! every problem. Locations come from a [`LocationIndex`] of the same text.

use std::fmt;
use std::path::Path;

use crate::location::{RootKind, parent};
use crate::schema::ConfigSpec;
use crate::{Config, Location, LocationIndex};

mod check;
mod env;
mod syntax;
#[cfg(test)]
mod tests;

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
///
/// A structural problem (YAML syntax, an unknown key, a wrong type, a missing
/// key) stops at the first one, as the rest of the file cannot be read
/// reliably; all other problems are reported together, in file order.
pub fn parse(
    text: &str,
    file: &str,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Document, Diagnostics> {
    let index = LocationIndex::build(text);
    let whole = |message: &str| {
        Diagnostics(vec![Diagnostic {
            file: file.to_owned(),
            location: Some(Location { line: 1, column: 1 }),
            path: String::new(),
            message: message.to_owned(),
        }])
    };
    match index.root() {
        Some(RootKind::Empty) => {
            return Err(whole(
                "the file has no settings; it needs at least `listeners` and `routes` (see examples/weir.yaml)",
            ));
        }
        Some(RootKind::Sequence) => {
            return Err(whole(
                "the top level is a list; it must be a mapping with the keys `listeners` and `routes`, and optionally `admin` and `stateDir`",
            ));
        }
        Some(RootKind::Scalar) => {
            return Err(whole(
                "the top level is a single value; it must be a mapping with the keys `listeners` and `routes`, and optionally `admin` and `stateDir`",
            ));
        }
        Some(RootKind::Mapping) | None => {}
    }
    let mut spec = deserialize(text, file, &index).map_err(|d| Diagnostics(vec![d]))?;
    let reported = env::substitute(&mut spec, env);
    let mut checker = check::Checker::new(file, &index, base_dir, reported);
    let config = checker.config(&spec);
    let mut diagnostics = checker.into_diagnostics();
    match config {
        Some(config) if diagnostics.is_empty() => Ok(Document {
            config,
            file: file.to_owned(),
            index,
        }),
        _ => {
            if diagnostics.is_empty() {
                return Err(whole(
                    "the file is invalid, but no check says why (a bug in weir)",
                ));
            }
            // In file order; problems found in one walk keep their order.
            diagnostics.sort_by_key(|d| (d.location.is_none(), d.location));
            Err(Diagnostics(diagnostics))
        }
    }
}

/// Reads the file's structure into the schema types.
fn deserialize(text: &str, file: &str, index: &LocationIndex) -> Result<ConfigSpec, Diagnostic> {
    let deserializer = serde_yaml_ng::Deserializer::from_str(text);
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = key_path(error.path());
        let inner = error.into_inner();
        let location = inner
            .location()
            .map(|at| Location {
                line: at.line(),
                column: at.column(),
            })
            .or_else(|| index.find(&path));
        // serde reads events as it goes and may stop at a wrong key before it
        // reaches a syntax error further down; the syntax error comes first.
        if let Some(syntax) = index.syntax_error() {
            return Diagnostic {
                file: file.to_owned(),
                location: Some(syntax.location),
                path: syntax.path.clone(),
                message: format!("invalid YAML: {}", syntax.message),
            };
        }
        let message = serde_message(&inner, &path);
        Diagnostic {
            file: file.to_owned(),
            location,
            path,
            message,
        }
    })
}

/// A `serde_path_to_error` path in our syntax: `routes[0].canary.weight`.
fn key_path(path: &serde_path_to_error::Path) -> String {
    let mut out = String::new();
    for segment in path {
        match segment {
            serde_path_to_error::Segment::Seq { index } => {
                out.push_str(&format!("[{index}]"));
            }
            serde_path_to_error::Segment::Map { key }
            | serde_path_to_error::Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            serde_path_to_error::Segment::Unknown => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push('?');
            }
        }
    }
    out
}

/// serde's message without the location and path it repeats, with Rust type
/// names replaced by what a YAML author writes, and a suggestion for a
/// misspelt key.
fn serde_message(error: &serde_yaml_ng::Error, path: &str) -> String {
    let mut message = error.to_string();
    if let Some(at) = error.location() {
        let suffix = format!(" at line {} column {}", at.line(), at.column());
        message = message.replacen(&suffix, "", 1);
    }
    for prefix in [Some(path), parent(path)].into_iter().flatten() {
        if prefix.is_empty() {
            continue;
        }
        if let Some(rest) = message.strip_prefix(&format!("{prefix}: ")) {
            message = rest.to_owned();
            break;
        }
    }
    if message.starts_with("deserializing from YAML containing more than one document") {
        message = "the file holds more than one YAML document (a `---` line after the first); weir reads one: remove the others".to_owned();
    }
    message = friendly_types(&message);
    if let Some(suggestion) = suggest_key(&message) {
        message.push_str(&format!("; did you mean `{suggestion}`?"));
    }
    message
}

/// Replaces Rust type names in "expected ..." with YAML words.
fn friendly_types(message: &str) -> String {
    let mut out = message
        .replace("expected f64", "expected a number")
        .replace("expected u64", "expected a whole number")
        .replace("expected u32", "expected a whole number")
        .replace("unit value", "nothing (null)");
    if let Some(at) = out.find("expected struct ") {
        let name_start = at + "expected struct ".len();
        let name_end = out[name_start..]
            .find(|c: char| !c.is_alphanumeric())
            .map_or(out.len(), |n| name_start + n);
        out.replace_range(at..name_end, "expected a mapping");
    }
    out
}

/// For "unknown field `x`, expected ...", the expected key closest to `x`,
/// when it is close enough to be a typo.
fn suggest_key(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (unknown, expected) = rest.split_once('`')?;
    let expected = expected.split_once("expected")?.1;
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|candidate| (edit_distance(unknown, candidate), candidate))
        .filter(|(distance, candidate)| {
            *distance > 0 && *distance <= 2 && *distance < candidate.len()
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate.to_owned())
}

/// Levenshtein distance over chars, case-insensitive.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitute.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
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

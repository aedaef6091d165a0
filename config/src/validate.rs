//! Parsing and validation of `weir.yaml`: every error at once, each with
//! `FILE:LINE:COLUMN` and the key path.
//!
//! Three passes: the YAML is read into a tree (iteratively, with bounded
//! nesting and alias expansion); the tree is checked against the shape of the
//! file, with `${VAR}` replaced in each value before it is typed, recording
//! every unknown key, wrong type and missing key; then the [`crate::schema`]
//! types are read from what could be typed and the semantic checks convert
//! them into [`crate::model`] types, recording every problem that is not an
//! artefact of what the structural pass left out (see `holes`). Locations
//! come from a [`LocationIndex`] of the same text.

use std::fmt;
use std::path::Path;

use crate::location::RootKind;
use crate::schema::ConfigSpec;
use crate::{Config, Location, LocationIndex};

mod analysis_templates;
mod canary_route;
mod check;
mod env;
mod holes;
mod machine;
mod structure;
mod syntax;
#[cfg(test)]
mod tests;
mod tree;
mod webhooks;

pub use canary_route::{
    ClusterRouteSpec, NamespaceTemplates, SpecProblem, validate_analysis_template,
    validate_canary_route, validate_canary_route_in,
};
pub use check::is_token_byte;
pub use machine::{MachineCheck, machine_checks};

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
/// A YAML syntax error is reported alone, as the parser stops there.
/// Otherwise every structural problem (an unknown key, a wrong type, a
/// missing key) is reported together with every semantic problem of the
/// parts that could be typed: an unknown key is left out, and a value that
/// cannot be typed leaves out its list element (or, outside lists, its
/// optional key), without the semantic problems that could come from
/// leaving it out. Only when a required top-level key is missing or cannot
/// be typed are the semantic checks skipped. Always in file order.
pub fn parse(
    text: &str,
    file: &str,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Document, Diagnostics> {
    parse_with(text, file, base_dir, env, false)
}

/// As [`parse`], for `weir run --kubernetes`: a file without a
/// `kubernetes` block gets the block with its defaults (so `routes` may be
/// empty or absent); a block in the file is read as written.
///
/// # Errors
/// As [`parse`].
pub fn parse_with_kubernetes(
    text: &str,
    file: &str,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Document, Diagnostics> {
    parse_with(text, file, base_dir, env, true)
}

/// [`parse`], with the `kubernetes` block assumed when `kubernetes`.
fn parse_with(
    text: &str,
    file: &str,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    kubernetes: bool,
) -> Result<Document, Diagnostics> {
    // A byte order mark before the stream, as some editors write: YAML
    // allows it, and it is no part of the first key.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // YAML allows no NUL character, and the parser would stop at the first
    // one, silently reading only the part of the file before it (a file a
    // crash left with NUL bytes at its end would lose its last routes).
    if let Some(at) = text.find('\0') {
        let before = &text[..at];
        let line = before.matches('\n').count() + 1;
        let column = before[before.rfind('\n').map_or(0, |n| n + 1)..]
            .chars()
            .count()
            + 1;
        return Err(Diagnostics(vec![Diagnostic {
            file: file.to_owned(),
            location: Some(Location { line, column }),
            path: String::new(),
            message: "a NUL byte (0x00), which YAML does not allow: the file may be damaged \
                      (a crash or a full disk can leave NUL bytes in it); nothing of it is used"
                .to_owned(),
        }]));
    }
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
    let Typed {
        spec,
        structural,
        environment,
        holes,
    } = structure(text, file, &index, env, kubernetes)?;
    let Some(spec) = spec else {
        let mut diagnostics = structural;
        diagnostics.extend(environment.into_iter().map(|(path, message)| Diagnostic {
            file: file.to_owned(),
            location: index.find(&path),
            path,
            message,
        }));
        diagnostics.sort_by_key(|d| (d.location.is_none(), d.location));
        return Err(Diagnostics(diagnostics));
    };
    let mut checker = check::Checker::new(file, &index, base_dir, environment);
    checker.assume_kubernetes(kubernetes);
    checker.left_out(holes);
    let config = checker.config(&spec);
    let mut diagnostics = structural;
    diagnostics.extend(checker.into_diagnostics());
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

/// What the structural pass makes of a file.
struct Typed {
    /// The schema types of what could be typed; `None` when a required
    /// top-level key is missing or cannot be typed.
    spec: Option<ConfigSpec>,
    /// Every structural problem.
    structural: Vec<Diagnostic>,
    /// `(path, message)` of every `${VAR}` problem.
    environment: Vec<(String, String)>,
    /// What `spec` leaves out.
    holes: holes::Holes,
}

/// Reads the file's structure into the schema types, with `${VAR}`
/// replaced, leaving out what cannot be typed.
///
/// # Errors
/// A YAML syntax error alone (the parser stops there), a document that is
/// not read as a tree (nested too deep, too many values, a tag ...) or no
/// document at all, or a typed value that the schema types refuse (a bug).
fn structure(
    text: &str,
    file: &str,
    index: &LocationIndex,
    env: &dyn Fn(&str) -> Option<String>,
    kubernetes: bool,
) -> Result<Typed, Diagnostics> {
    let single = |location: Location, path: String, message: String| {
        Diagnostics(vec![Diagnostic {
            file: file.to_owned(),
            location: Some(location),
            path,
            message,
        }])
    };
    if let Some(syntax) = index.syntax_error() {
        // The scanner names the tab where its look-ahead stopped (the end
        // of the line before): the tab itself is easier to find.
        if syntax.message.contains("found a tab")
            && let Some(tab) = tab_in_indentation(text, syntax.location.line)
        {
            return Err(single(
                tab,
                String::new(),
                "invalid YAML: a tab in the indentation; YAML indents with spaces only".to_owned(),
            ));
        }
        return Err(single(
            syntax.location,
            syntax.path.clone(),
            format!("invalid YAML: {}", syntax.message),
        ));
    }
    let root = match tree::read(text) {
        Ok(Some(root)) => root,
        Ok(None) => {
            return Err(single(
                Location { line: 1, column: 1 },
                String::new(),
                "the file has no settings; it needs at least `listeners` and `routes`".to_owned(),
            ));
        }
        Err(error) => return Err(single(error.at, error.path, error.message)),
    };
    let (typed, problems) = structure::check(&root, file, index, env, kubernetes);
    let structure::Problems {
        structural,
        environment,
        holes,
    } = problems;
    let Some(typed) = typed else {
        return Ok(Typed {
            spec: None,
            structural,
            environment,
            holes,
        });
    };
    // The structural pass checked every key and type, so this only fails
    // when the schema types and that pass disagree: a bug, reported as such.
    match serde_path_to_error::deserialize(typed) {
        Ok(spec) => Ok(Typed {
            spec: Some(spec),
            structural,
            environment,
            holes,
        }),
        Err(error) => {
            let path = key_path(error.path());
            Err(Diagnostics(vec![Diagnostic {
                file: file.to_owned(),
                location: index.find(&path),
                message: format!(
                    "{} (the structural check missed this: a bug in weir)",
                    error.into_inner()
                ),
                path,
            }]))
        }
    }
}

/// Most names a message lists; past them it says how many more there are.
/// A message is built for each problem, so a message listing every route
/// or template of a file with thousands of them, repeated for thousands of
/// problems, would come to gigabytes.
const LISTED: usize = 10;

/// `names` joined with `, `: the first [`LISTED`], then how many more.
fn listed<S: AsRef<str>>(names: &[S]) -> String {
    let shown: Vec<&str> = names.iter().take(LISTED).map(AsRef::as_ref).collect();
    let mut out = shown.join(", ");
    if names.len() > LISTED {
        out.push_str(&format!(" and {} more", names.len() - LISTED));
    }
    out
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
        if !path.is_empty() {
            write!(f, ": {}", Visible(path))?;
        }
        write!(f, ": {}", Visible(message))
    }
}

/// The first tab in the indentation of a line from `from_line` (1-based)
/// on, within the next few lines.
fn tab_in_indentation(text: &str, from_line: usize) -> Option<Location> {
    text.lines()
        .enumerate()
        .skip(from_line.saturating_sub(1))
        .take(3)
        .find_map(|(index, line)| {
            let indent = line.len() - line.trim_start_matches([' ', '\t']).len();
            let column = line[..indent].find('\t')?;
            Some(Location {
                line: index + 1,
                column: column + 1,
            })
        })
}

/// Text shown with its control characters escaped (`\u{1}`, `\t`): a key
/// or value quoted from a damaged file cannot garble the terminal or split
/// a diagnostic over lines.
struct Visible<'a>(&'a str);

/// The most characters of a diagnostic's text shown whole; a longer one
/// (a multi-megabyte value quoted) keeps its start and its end, where the
/// advice is.
const SHOWN_CHARS: usize = 1024;

impl fmt::Display for Visible<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |f: &mut fmt::Formatter<'_>, text: &str| -> fmt::Result {
            for c in text.chars() {
                if c.is_control() {
                    write!(f, "{}", c.escape_debug())?;
                } else {
                    fmt::Write::write_char(f, c)?;
                }
            }
            Ok(())
        };
        let count = self.0.chars().count();
        if count <= SHOWN_CHARS {
            return show(f, self.0);
        }
        let (head, tail) = (SHOWN_CHARS / 2, SHOWN_CHARS / 4);
        let head_end = self
            .0
            .char_indices()
            .nth(head)
            .map_or(self.0.len(), |(i, _)| i);
        let tail_start = self
            .0
            .char_indices()
            .nth(count - tail)
            .map_or(self.0.len(), |(i, _)| i);
        show(f, &self.0[..head_end])?;
        write!(f, "[... {} characters left out ...]", count - head - tail)?;
        show(f, &self.0[tail_start..])
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

//! What a file names that only the machine can check (files to read, the
//! state directory, host names to resolve), found in the YAML as written, so that a file that
//! does not validate still gets those checked: `weir validate` reports
//! every error in one run, not the file's own first and the machine's once
//! they are fixed.
//!
//! Pure: the tree is read with the same bounds as for validation, and a
//! value that cannot be taken as written (not a string, a `${VAR}`, an
//! endpoint that does not parse) is left to the validation's own errors.

use std::path::{Path, PathBuf};

use super::syntax;
use super::tree::{self, Entry, Node, Value};
use crate::{EndpointAddr, Location};

/// One thing a file names that only the machine can check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MachineCheck {
    /// A file to read: a listener's certificate or key, a role's CA file.
    File {
        /// The key path (`listeners[0].tls.certFile`).
        path: String,
        /// Where the value is written.
        at: Location,
        /// The file, relative to the config's directory when written so.
        file: PathBuf,
    },
    /// The `stateDir` written, which must be a directory or not exist.
    StateDir {
        /// Where the value is written.
        at: Location,
        /// The directory, relative to the config's directory when written so.
        dir: PathBuf,
    },
    /// A role's endpoint, whose host must resolve.
    Endpoint {
        /// The key path (`routes[1].canary.endpoints[0]`).
        path: String,
        /// Where the value is written.
        at: Location,
        /// The endpoint.
        endpoint: EndpointAddr,
    },
}

/// The files and endpoints `text` names, in file order; relative files
/// are taken from `base_dir`. Nothing when the text is not YAML.
pub fn machine_checks(text: &str, base_dir: &Path) -> Vec<MachineCheck> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let Ok(Some(root)) = tree::read(text) else {
        return Vec::new();
    };
    let mut checks = Vec::new();
    if let Some(entry) = entry(&root, "stateDir")
        && let Some(dir) = written(&entry.value)
    {
        checks.push(MachineCheck::StateDir {
            at: entry.key_at,
            dir: base_dir.join(dir),
        });
    }
    for (i, listener) in items(get(Some(&root), "listeners")) {
        let tls = get(Some(listener), "tls");
        for key in ["certFile", "keyFile"] {
            file(
                &mut checks,
                &format!("listeners[{i}].tls.{key}"),
                tls.and_then(|tls| entry(tls, key)),
                base_dir,
            );
        }
    }
    for (r, route) in items(get(Some(&root), "routes")) {
        for role in ["stable", "canary"] {
            let upstream = get(Some(route), role);
            for (e, node) in items(get(upstream, "endpoints")) {
                let Some(text) = written(node) else { continue };
                if let Ok(endpoint) = syntax::endpoint(text) {
                    checks.push(MachineCheck::Endpoint {
                        path: format!("routes[{r}].{role}.endpoints[{e}]"),
                        at: node.at,
                        endpoint,
                    });
                }
            }
            let tls = get(upstream, "tls");
            file(
                &mut checks,
                &format!("routes[{r}].{role}.tls.caFile"),
                tls.and_then(|tls| entry(tls, "caFile")),
                base_dir,
            );
        }
    }
    checks
}

/// Adds the file the mapping entry names at `path`, if it is written as
/// one; placed at its key, as the validation's problems of a key are.
fn file(checks: &mut Vec<MachineCheck>, path: &str, entry: Option<&Entry>, base_dir: &Path) {
    let Some(entry) = entry else { return };
    let Some(text) = written(&entry.value) else {
        return;
    };
    checks.push(MachineCheck::File {
        path: path.to_owned(),
        at: entry.key_at,
        file: base_dir.join(text),
    });
}

/// The text of a scalar that names something as written: not empty, no
/// `${VAR}` (its value is the validation's to check).
fn written(node: &Node) -> Option<&str> {
    match &node.value {
        Value::Scalar(scalar) => {
            let text = scalar.text.trim();
            (!text.is_empty() && !text.contains("${")).then_some(text)
        }
        _ => None,
    }
}

/// The entry of `key` in the mapping `node`, if any (the first when the
/// key is written twice).
fn entry<'n>(node: &'n Node, key: &str) -> Option<&'n Entry> {
    match &node.value {
        Value::Map(entries) => entries.iter().find(|e| e.key == key),
        _ => None,
    }
}

/// The value of `key` in the mapping `node`, if any.
fn get<'n>(node: Option<&'n Node>, key: &str) -> Option<&'n Node> {
    entry(node?, key).map(|e| &e.value)
}

/// The items of the sequence `node`, with their indexes.
fn items(node: Option<&Node>) -> impl Iterator<Item = (usize, &Node)> {
    let items: &[Node] = match node.map(|n| &n.value) {
        Some(Value::Seq(items)) => items,
        _ => &[],
    };
    items.iter().enumerate()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_files_state_dir_and_endpoints_of_a_file_that_does_not_validate_are_found() {
        let text = "stateDir: state\nlisteners:\n  - name: public\n    address: nope\n    tls:\n      certFile: a.crt\n      keyFile: ${KEY}\nroutes:\n  - name: r\n    pathPrefix: nope\n    stable: { revision: v1, endpoints: [db.invalid:80, 'bad', 10.0.0.1:80] }\n    canary:\n      revision: v2\n      endpoints: [c:1]\n      tls: {caFile: /etc/ca.pem}\n";
        let checks = machine_checks(text, Path::new("/srv"));
        let found: Vec<String> = checks
            .iter()
            .map(|c| match c {
                MachineCheck::File { path, at, file } => {
                    format!("{path} {}:{} {}", at.line, at.column, file.display())
                }
                MachineCheck::StateDir { at, dir } => {
                    format!("stateDir {}:{} {}", at.line, at.column, dir.display())
                }
                MachineCheck::Endpoint { path, at, endpoint } => {
                    format!("{path} {}:{} {endpoint}", at.line, at.column)
                }
            })
            .collect();
        assert_eq!(
            found,
            [
                "stateDir 1:1 /srv/state",
                "listeners[0].tls.certFile 6:7 /srv/a.crt",
                "routes[0].stable.endpoints[0] 11:41 db.invalid:80",
                "routes[0].stable.endpoints[2] 11:63 10.0.0.1:80",
                "routes[0].canary.endpoints[0] 14:19 c:1",
                "routes[0].canary.tls.caFile 15:13 /etc/ca.pem",
            ]
        );
        assert!(machine_checks("a: [", Path::new(".")).is_empty());
    }
}

//! What the structural pass leaves out of the typed tree, so that the
//! semantic checks run on the rest of a file that has structural problems,
//! and which of their diagnostics could be artefacts of what was left out.
//!
//! The rule, for `weir.yaml`:
//!
//! - An unknown, repeated or non-scalar key is reported and left out; the
//!   mapping that held it is *loose*. A check that would report a key of a
//!   loose mapping as missing, or that relies on the default of an absent
//!   key (a step with no kind, a strategy without `canary`, `readerToken`
//!   without `writerToken`, a reference without templates or arguments, a
//!   metric without provider ...), stays quiet: the key may be there,
//!   misspelled.
//! - An optional key whose value cannot be typed (the wrong type, out of
//!   range) is left out, and its mapping is loose: the rest of the mapping,
//!   and of the route or step that holds it, is still checked.
//! - A required text key missing from a mapping (a `name` excepted) is
//!   left out as an optional key is, typed as empty text: the mapping's
//!   other keys are still checked.
//! - A required key whose value cannot be typed, or a mapping without
//!   another required key, leaves out the innermost list element containing it (a
//!   step, a route, a listener, an endpoint, a template ...). The element is
//!   replaced by a *stand-in* of its kind, so that every other element keeps
//!   its index in paths and messages; the checks skip stand-ins, and a
//!   value inside one counts as already reported. Outside any list element,
//!   it leaves nothing to check (the semantic checks are skipped).
//! - A semantic diagnostic is dropped when its path is within a stand-in or
//!   a left-out key, or within a list that lost an element but not within
//!   one of that list's surviving elements: with `routes[0]` left out,
//!   `routes[1].canary.weight` is reported, `routes` and `routes[0].name`
//!   are not.
//! - A reference to a route or an analysis template by name is not
//!   reported as unknown when a left-out element bore that name, or when a
//!   left-out element's name could not be read.
//!
//! Every lookup is a hash of one path, so a hostile file with thousands of
//! holes is still checked in linear time.

use std::collections::{HashMap, HashSet};

use crate::location::parent;

/// The parts of a file that the structural pass could not type.
#[derive(Debug, Default)]
pub(super) struct Holes {
    /// Paths of the list elements replaced by stand-ins.
    stand_ins: HashSet<String>,
    /// Paths of the optional keys left out.
    keys: HashSet<String>,
    /// Lists that lost an element (or their whole value), by path.
    lists: HashMap<String, Lost>,
    /// Paths of the mappings with a key left out.
    loose: HashSet<String>,
}

/// What a list lost, as references by name see it.
#[derive(Debug, Default, Clone)]
pub(super) struct Lost {
    /// The `name` of each left-out element that has a readable one.
    names: HashSet<String>,
    /// A left-out element (or the list's whole value) has no readable name.
    unnamed: bool,
}

// === impl Holes ===

impl Holes {
    /// Records that the element at `path` of the list at `list`, named
    /// `name` when it has a readable `name`, was replaced by a stand-in.
    pub(super) fn stand_in(&mut self, list: &str, path: String, name: Option<String>) {
        let lost = self.lists.entry(list.to_owned()).or_default();
        match name {
            Some(name) => {
                lost.names.insert(name);
            }
            None => lost.unnamed = true,
        }
        self.stand_ins.insert(path);
    }

    /// Records that the optional key at `path` of the mapping at `mapping`
    /// was left out; `list` when its value should have been a list.
    pub(super) fn key(&mut self, mapping: &str, path: String, list: bool) {
        if list {
            self.lists.entry(path.clone()).or_default().unnamed = true;
        }
        self.loose(mapping);
        self.keys.insert(path);
    }

    /// Records that the mapping at `path` had a key left out.
    pub(super) fn loose(&mut self, path: &str) {
        if !self.loose.contains(path) {
            self.loose.insert(path.to_owned());
        }
    }

    /// True when the list element at `path` is a stand-in.
    pub(super) fn is_stand_in(&self, path: &str) -> bool {
        self.stand_ins.contains(path)
    }

    /// True when the optional key at `path` was left out.
    pub(super) fn is_left_out(&self, path: &str) -> bool {
        self.keys.contains(path)
    }

    /// True when the mapping at `path` had a key left out.
    pub(super) fn is_loose(&self, path: &str) -> bool {
        self.loose.contains(path)
    }

    /// What the list at `path` lost, if anything.
    pub(super) fn lost(&self, path: &str) -> Option<&Lost> {
        self.lists.get(path)
    }

    /// The paths of the stand-ins.
    pub(super) fn stand_in_paths(&self) -> impl Iterator<Item = &String> {
        self.stand_ins.iter()
    }

    /// True when a semantic diagnostic at `path` could be an artefact of a
    /// hole (see the module's rule).
    pub(super) fn hides(&self, path: &str) -> bool {
        if self.stand_ins.is_empty() && self.keys.is_empty() {
            return false;
        }
        let mut below: Option<&str> = None;
        let mut at = Some(path);
        while let Some(here) = at {
            if self.stand_ins.contains(here) || self.keys.contains(here) {
                return true;
            }
            if self.lists.contains_key(here) {
                // `below` is an element of this list, and not a stand-in
                // (checked one step down).
                let in_element = below.is_some_and(|b| b.as_bytes().get(here.len()) == Some(&b'['));
                if !in_element {
                    return true;
                }
            }
            below = Some(here);
            at = parent(here);
        }
        false
    }
}

// === impl Lost ===

impl Lost {
    /// True when a left-out element may have been named `name`.
    pub(super) fn may_name(&self, name: &str) -> bool {
        self.unnamed || self.names.contains(name)
    }
}

//! Replays the committed fuzz corpus (`config/fuzz/corpus/validate/`) and a
//! seeded mutation of it through the validator: every input must give a
//! config or located errors, never a panic or a hang.

#![allow(
    clippy::unwrap_used,
    reason = "in a test, a failed unwrap is a failed assertion"
)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use weir_config::{Diagnostics, Snapshot, parse};

/// Mutated inputs tried per run.
const MUTATIONS: usize = 4_000;

/// Fragments inserted by the mutator: YAML indicators, non-ASCII text,
/// `${VAR}` pieces, huge numbers.
const FRAGMENTS: &[&str] = &[
    "/",
    ":",
    ": ",
    "é",
    "日本",
    "{",
    "}",
    "[",
    "]",
    "*",
    "&",
    "&a ",
    "*a",
    "${",
    "${W}",
    "${EVIL}",
    "${UNSET}",
    "}",
    "-",
    "- ",
    "? ",
    "!",
    "!!str ",
    "|",
    ">",
    "#",
    "\"",
    "'",
    "\n",
    "\n  ",
    "\t",
    "\r\n",
    "~",
    "null",
    "true",
    ".nan",
    "-1",
    "1e400",
    "18446744073709551616",
    "0x",
    "---\n",
    "...\n",
    "<<: ",
    ",",
    "\u{feff}",
    "\u{0}",
];

/// A small deterministic generator (SplitMix64), so every run tries the
/// same inputs and a failure can be replayed.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        usize::try_from(self.next() % n as u64).unwrap()
    }
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/validate")
}

fn corpus() -> Vec<(String, String)> {
    let mut entries: Vec<(String, String)> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, String::from_utf8_lossy(&bytes).into_owned())
        })
        .collect();
    entries.sort();
    entries
}

/// The environment the corpus may name: some numbers, a boolean, text that
/// looks like YAML structure, and an empty value; everything else unset.
fn env(name: &str) -> Option<String> {
    let value = match name {
        "W" => "10",
        "CONNECT" => "2",
        "IDLE" => "90s",
        "CMP" => "false",
        "MIN" => "5",
        "X" => "x",
        "HOST" => "app.internal",
        "KEY" => "name",
        "EVIL" => "a: b\n- c: [d, {e: *f}]\n${W}",
        "EMPTY" => "",
        "WEIR_READER_TOKEN" => "reader",
        "WEIR_WRITER_TOKEN" => "writer",
        _ => return None,
    };
    Some(value.to_owned())
}

/// Validates `text`; `Err` with a description when it panics or gives an
/// error that is not located or says nothing.
fn check(text: &str) -> Result<(), String> {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let result = parse(text, "fuzz.yaml", Path::new("/etc/weir"), &env);
        if let Ok(document) = &result {
            // A valid config must also compile into a snapshot.
            let _ = Snapshot::compile(&document.config, &|_| None, &|_| Vec::new());
        }
        result
    }));
    match outcome {
        Err(_) => Err("panicked".to_owned()),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(Diagnostics(errors))) => {
            if errors.is_empty() {
                return Err("invalid with no error".to_owned());
            }
            match errors
                .iter()
                .find(|d| d.location.is_none() || d.message.trim().is_empty())
            {
                Some(d) => Err(format!("an error without place or message: {d}")),
                None => Ok(()),
            }
        }
    }
}

fn mutate(rng: &mut SplitMix, text: &str, corpus: &[(String, String)]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for _ in 0..=rng.below(3) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(7) {
            // Flip a bit.
            0 if !bytes.is_empty() => {
                let i = at.min(bytes.len() - 1);
                bytes[i] ^= 1 << rng.below(8);
            }
            // Insert a fragment.
            1 | 2 => {
                let fragment = FRAGMENTS[rng.below(FRAGMENTS.len())].as_bytes();
                bytes.splice(at..at, fragment.iter().copied());
            }
            // Truncate.
            3 => bytes.truncate(at),
            // Duplicate a line (a duplicated key, or an extra list item).
            4 => {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let lines: Vec<&str> = text.lines().collect();
                if !lines.is_empty() {
                    let i = rng.below(lines.len());
                    let mut out: Vec<&str> = lines.clone();
                    out.insert(i, lines[i]);
                    bytes = (out.join("\n") + "\n").into_bytes();
                }
            }
            // Delete a range.
            5 if !bytes.is_empty() => {
                let end = (at + rng.below(16)).min(bytes.len());
                bytes.drain(at.min(end)..end);
            }
            // Splice in a piece of another corpus entry.
            _ => {
                let other = corpus[rng.below(corpus.len())].1.as_bytes();
                let start = rng.below(other.len() + 1);
                let end = (start + rng.below(80)).min(other.len());
                bytes.splice(at..at, other[start..end].iter().copied());
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn corpus_has_dozens_of_entries_of_every_kind() {
    let names: Vec<String> = corpus().into_iter().map(|(name, _)| name).collect();
    assert!(names.len() >= 40, "{names:?}");
    for kind in [
        "valid-", "err-", "crash-", "unicode-", "deep-", "huge-", "anchors-", "env-",
    ] {
        assert!(
            names.iter().any(|n| n.starts_with(kind)),
            "no {kind}* entry in {names:?}"
        );
    }
}

#[test]
fn every_corpus_entry_validates_without_panicking() {
    let failures: Vec<String> = corpus()
        .iter()
        .filter_map(|(name, text)| check(text).err().map(|why| format!("{name}: {why}")))
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn the_valid_corpus_entries_are_valid() {
    for (name, text) in corpus() {
        if name.starts_with("valid-") {
            let result = parse(&text, &name, Path::new("/etc/weir"), &env);
            assert!(result.is_ok(), "{name}: {}", result.err().unwrap());
        }
    }
}

#[test]
fn the_crash_inputs_name_the_route_name() {
    for (name, text) in corpus() {
        if name.starts_with("crash-route-name") {
            let Err(Diagnostics(errors)) = parse(&text, &name, Path::new("/etc/weir"), &env) else {
                panic!("{name} is valid");
            };
            assert_eq!(errors.len(), 1, "{name}: {errors:?}");
            assert_eq!(errors[0].path, "routes[0].name", "{name}");
        }
    }
}

#[test]
fn seeded_mutations_of_the_corpus_validate_without_panicking() {
    let corpus = corpus();
    let mut rng = SplitMix(0x5745_4952_2d63_6667);
    let mut failures = Vec::new();
    for round in 0..MUTATIONS {
        let (name, text) = &corpus[rng.below(corpus.len())];
        let mutated = mutate(&mut rng, text, &corpus);
        if let Err(why) = check(&mutated) {
            failures.push(format!("round {round}, from {name}: {why}\n{mutated:?}"));
            if failures.len() >= 5 {
                break;
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

//! What is read and how it is refused: files that are not regular, files
//! over the size cap, a `stateDir` in the way, and config bytes that are
//! not UTF-8, each with its place.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use super::*;

/// A config of one route; `stable` is added to its stable upstream and
/// `listener` to its listener (YAML flow mapping entries, or empty).
fn config(listener: &str, stable: &str) -> String {
    format!(
        "listeners:\n  - {{name: public, address: 127.0.0.1:0{listener}}}\nroutes:\n  - name: web\n    pathPrefix: /\n    stable: {{revision: v1, endpoints: [127.0.0.1:9001]{stable}}}\n"
    )
}

fn mkfifo(path: &Path) {
    let made = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo runs");
    assert!(made.success(), "mkfifo {}", path.display());
}

/// [`load`] of `path` on a thread of its own, so that a read that blocks
/// fails the test instead of hanging it.
fn load_within_seconds(path: &Path) -> Result<Loaded, Diagnostics> {
    let (tx, rx) = mpsc::channel();
    let path = path.to_owned();
    std::thread::spawn(move || {
        let _ = tx.send(load(&path));
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the load ends within 10 s instead of waiting on the file")
}

/// The diagnostics of a load that must fail.
fn refused(path: &Path) -> Vec<Diagnostic> {
    match load_within_seconds(path) {
        Ok(_) => panic!("{} loads", path.display()),
        Err(Diagnostics(all)) => all,
    }
}

#[test]
fn files_that_are_not_regular_are_refused_at_once_naming_the_field() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fifo = dir.path().join("ca.fifo");
    mkfifo(&fifo);
    let path = dir.path().join("weir.yaml");

    // A FIFO as a CA file, as a certificate, and a directory as a key.
    let cases = [
        (
            config("", ", tls: {caFile: ca.fifo}"),
            "routes[0].stable.tls.caFile",
            format!("{} is a FIFO, not a regular file", fifo.display()),
        ),
        (
            config(", tls: {certFile: ca.fifo, keyFile: /}", ""),
            "listeners[0].tls.certFile",
            format!("{} is a FIFO, not a regular file", fifo.display()),
        ),
        (
            config(", tls: {certFile: ca.fifo, keyFile: /}", ""),
            "listeners[0].tls.keyFile",
            "/ is a directory, not a regular file".to_owned(),
        ),
    ];
    for (text, field, message) in cases {
        std::fs::write(&path, &text).expect("write");
        let all = refused(&path);
        assert!(
            all.iter()
                .any(|d| d.path == field && d.message.contains(&message) && d.location.is_some()),
            "{field}: {message}: {all:#?}"
        );
    }

    // The config file itself.
    let all = refused(&fifo);
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0].file, fifo.display().to_string());
    assert!(
        all[0].message.contains("is a FIFO, not a regular file"),
        "{all:#?}"
    );
}

/// A certificate given as the key file is refused at `keyFile`, saying
/// that it holds no private key.
#[test]
fn a_key_file_without_a_key_is_refused_at_key_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cert = dir.path().join("tls.crt");
    std::fs::write(
        &cert,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    let path = dir.path().join("weir.yaml");
    std::fs::write(
        &path,
        config(", tls: {certFile: tls.crt, keyFile: tls.crt}", ""),
    )
    .expect("write");
    let all = refused(&path);
    assert!(
        all.iter().any(|d| d.path == "listeners[0].tls.keyFile"
            && d.message
                .contains(&format!("{}: no PEM private key found", cert.display()))),
        "{all:#?}"
    );
}

/// A `stateDir` that a file stands in the way of is reported with the
/// file's other problems, not only once they are fixed.
#[test]
fn a_state_dir_in_the_way_is_reported_with_other_problems() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("afile"), "").expect("write");
    let path = dir.path().join("weir.yaml");
    for name in ["web", "Web"] {
        let text = format!("stateDir: afile\n{}", config("", ""))
            .replace("name: web", &format!("name: {name}"));
        std::fs::write(&path, &text).expect("write");
        let all = refused(&path);
        assert!(
            all.iter().any(|d| d.path == "stateDir"
                && d.message.contains("exists and is not a directory")
                && d.location.is_some_and(|at| at.line == 1)),
            "{name}: {all:#?}"
        );
    }
}

#[test]
fn files_larger_than_the_cap_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("weir.yaml");
    let valid = config("", "");
    std::fs::write(&path, &valid).expect("write");
    assert!(load_within_seconds(&path).is_ok(), "the config is valid");

    // Valid still, but for its size: a comment makes it one byte too long.
    let cap = usize::try_from(MAX_FILE_BYTES).expect("the cap fits in memory");
    let comment = format!("# {}\n", "x".repeat(cap - valid.len() - 2));
    std::fs::write(&path, format!("{valid}{comment}")).expect("write");
    let all = refused(&path);
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(
        all[0].message,
        format!(
            "{} is larger than 16 MiB, more than weir reads; a config file or certificate is far smaller",
            path.display()
        )
    );

    // A CA file one byte too long.
    std::fs::write(dir.path().join("ca.pem"), "x".repeat(cap + 1)).expect("write");
    std::fs::write(&path, config("", ", tls: {caFile: ca.pem}")).expect("write");
    let all = refused(&path);
    assert!(
        all.iter().any(|d| d.path == "routes[0].stable.tls.caFile"
            && d.message.contains("is larger than 16 MiB")),
        "{all:#?}"
    );
}

#[test]
fn bytes_that_are_not_utf8_are_located() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("weir.yaml");
    let cases: [(&[u8], usize, usize, &str); 3] = [
        (
            b"listeners:\n  - name: pub\xfflic\n",
            2,
            14,
            "byte 0xFF here does not belong to a UTF-8 character",
        ),
        // Columns count characters: `é` is two bytes, one column.
        ("listeners:\n  - name: é".as_bytes(), 2, 12, ""),
        (b"listeners: \xc3", 1, 12, "it ends inside a character"),
    ];
    for (bytes, line, column, needle) in cases {
        let mut bytes = bytes.to_vec();
        if needle.is_empty() {
            // The second case: a bad byte after the `é`.
            bytes.push(0x80);
        }
        std::fs::write(&path, &bytes).expect("write");
        let all = refused(&path);
        assert_eq!(all.len(), 1, "{all:#?}");
        assert_eq!(all[0].location, Some(Location { line, column }), "{all:#?}");
        assert!(
            all[0].message.starts_with("the file is not UTF-8"),
            "{all:#?}"
        );
        assert!(all[0].message.contains(needle), "{all:#?}");
        assert_eq!(all[0].file, path.display().to_string());
    }
}

//! `weir validate FILE`: a one-line summary and exit 0 for the shipped
//! example; every error with FILE:LINE:COLUMN and its key path, and a
//! non-zero exit, for a bad file.

use std::process::Output;

use weir_e2e::{weir_command, workspace_root};

fn validate(file: &std::path::Path) -> Output {
    weir_command()
        .arg("validate")
        .arg(file)
        // The example may name these; validation fails on unset variables.
        .env("WEIR_READER_TOKEN", "e2e-reader")
        .env("WEIR_WRITER_TOKEN", "e2e-writer")
        .output()
        .expect("running weir validate")
}

#[test]
fn example_config_is_valid() {
    let example = workspace_root().join("examples/weir.yaml");
    assert!(example.is_file(), "{} is missing", example.display());
    let out = validate(&example);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "weir validate failed: {stdout}{stderr}"
    );
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "want a one-line summary, got: {stdout:?}");
}

#[test]
fn bad_config_reports_every_error_with_location_and_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    let text = r#"listeners:
  - name: public
    address: 127.0.0.1:18080
admin:
  address: 127.0.0.1:19900
routes:
  - name: web
    stable:
      revision: v1
      endpoints: [127.0.0.1:9001]
    canary:
      revision: v2
      endpoints: [127.0.0.1:9101]
      weight: 150
  - name: api
    pathPrefix: /api
    stable:
      revision: v1
      endpoints: [127.0.0.1:9002]
    canary:
      revision: v2
      endpoints: [127.0.0.1:9102]
    strategy:
      steps:
        - setWeight: 10
        - setWeight: 200
"#;
    std::fs::write(&file, text).unwrap();
    let line_of = |needle: &str| {
        text.lines()
            .position(|l| l.contains(needle))
            .map(|i| i + 1)
            .unwrap()
    };
    let expected = [
        (line_of("weight: 150"), "routes[0].canary.weight"),
        (
            line_of("setWeight: 200"),
            "routes[1].strategy.steps[1].setWeight",
        ),
    ];

    let out = validate(&file);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success(),
        "weir validate accepted a bad file: {all}"
    );
    for (line, path) in expected {
        let located = all.lines().any(|l| {
            l.split_once(&format!("bad.yaml:{line}:"))
                .is_some_and(|(_, rest)| {
                    rest.starts_with(|c: char| c.is_ascii_digit()) && l.contains(path)
                })
        });
        assert!(
            located,
            "no line with bad.yaml:{line}:COLUMN and {path} in:\n{all}"
        );
    }
}

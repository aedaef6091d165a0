//! Feeds arbitrary text to the config validator: it must return a config or
//! errors, never panic, overflow the stack or hang.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // A few variables are set, so `${VAR}` paths past the lookup are reached.
    let env = |name: &str| match name {
        "W" => Some("10".to_owned()),
        "EVIL" => Some("a: b\n- [c".to_owned()),
        "EMPTY" => Some(String::new()),
        _ => None,
    };
    if let Ok(document) = weir_config::parse(text, "fuzz.yaml", Path::new("/etc/weir"), &env) {
        let _ = weir_config::Snapshot::compile(&document.config, &|_| None, &|_| Vec::new());
    }
});

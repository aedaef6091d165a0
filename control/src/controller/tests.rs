//! The control state against an in-memory store: log lines carry their
//! route's span.

use std::io::Write;
use std::sync::{Arc, Mutex};

use super::ControlState;
use crate::fixtures::{self, START_MS};
use crate::persist::MemoryStore;
use crate::rollout::Command;

/// Log output collected in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut buffer) = self.0.lock() {
            buffer.extend_from_slice(bytes);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn transitions_are_logged_in_their_routes_span() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let routes = [
                fixtures::route("web", Some("[{setWeight: 20}, {pause: {}}]")),
                fixtures::route("api", Some("[{setWeight: 20}, {pause: {}}]")),
            ]
            .concat();
            let loaded = fixtures::loaded(&fixtures::config_text(None, &routes));
            let resolved = fixtures::resolved(&loaded).await;
            let store = Arc::new(MemoryStore::default());
            let mut control = ControlState::restore_with(loaded, resolved, store, START_MS)
                .unwrap_or_else(|d| panic!("restore: {d:?}"));
            control
                .command("api", Command::Abort, START_MS + 1_000)
                .await
                .expect("aborted");
        });
    });
    let text = String::from_utf8(captured.0.lock().expect("log").clone()).expect("UTF-8");
    let started: Vec<&str> = text.lines().filter(|l| l.contains("Started")).collect();
    assert!(
        started.iter().any(|l| l.contains("route{route=web}")),
        "{text}"
    );
    assert!(
        started.iter().any(|l| l.contains("route{route=api}")),
        "{text}"
    );
    let aborted: Vec<&str> = text.lines().filter(|l| l.contains("Aborted")).collect();
    assert!(
        !aborted.is_empty() && aborted.iter().all(|l| l.contains("route{route=api}")),
        "{text}"
    );
}

//! Log lines of this crate's tests, captured per test thread.
//!
//! One global subscriber, at DEBUG, serves every test of the binary. A
//! scoped one (`tracing::subscriber::set_default`) races with the other
//! tests over tracing's per-callsite interest cache: while it is the only
//! dispatcher registered, a callsite first reached on another thread is
//! cached as of no interest, and the test's own events are then dropped.
//! Each line goes to the capture of the thread that logged it, so a test on
//! a current-thread runtime sees its own lines and no other test's.

use std::cell::RefCell;
use std::io::Write;
use std::sync::{Arc, Mutex, Once};

/// The log lines captured on one test's thread.
#[derive(Clone, Default)]
pub(crate) struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Everything captured so far, as text.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("the capture")).into_owned()
    }
}

thread_local! {
    /// Where this thread's log lines go, if its test captures them.
    static CAPTURE: RefCell<Option<Captured>> = const { RefCell::new(None) };
}

/// A writer of one log line into the current thread's capture, if any.
struct ThreadCapture;

impl Write for ThreadCapture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with_borrow(|capture| {
            if let Some(Captured(buffer)) = capture {
                buffer.lock().expect("the capture").extend_from_slice(bytes);
            }
        });
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures the log lines of the current thread from now on (installing
/// the binary's subscriber on first use) and returns the capture.
pub(crate) fn capture_this_thread() -> Captured {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(|| ThreadCapture)
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global subscriber in this test binary");
        // A callsite first reached on another thread while the global was
        // being set may have been cached as of no interest.
        tracing::callsite::rebuild_interest_cache();
    });
    let captured = Captured::default();
    CAPTURE.set(Some(captured.clone()));
    captured
}

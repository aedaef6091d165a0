//! Blocking work (reading files, looking names up) done off the runtime's
//! threads, each call on a thread started for it.
//!
//! Not tokio's blocking pool: when that pool has no thread (none made yet,
//! or all ended after their keep-alive) and the system cannot start one
//! (`EAGAIN` from a pids limit a pod's containers share), tokio panics the
//! task that asked. Here that is an error of the one call, reported like
//! any other failure to read, write or look up, and the next poll tries
//! again. And a process on one CPU runs on one thread (see `run::main`)
//! only while no pool thread waits for work. The calls are rare (a read
//! of the config file when it may have changed and once a second, the
//! state directory's check once a second, name lookups). A thread for each
//! is not free: reading the config file every 250 ms this way cost an
//! idle weir about 0.3 of its 2.1 ms of CPU a second, one reason the file
//! is watched with inotify (`reload::file_watch`). At most
//! [`MAX_THREADS`] run at once for files and as many for name lookups (a
//! resolver that hangs must neither use up a pids limit nor hold up a
//! state write); further calls wait for one to end.

use std::future::Future;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::Name;
use tokio::sync::Semaphore;

/// The most threads of blocking work at once, of each kind (files,
/// name lookups).
pub const MAX_THREADS: usize = 64;

/// One permit per thread of blocking work on files running.
static FILE_THREADS: Semaphore = Semaphore::const_new(MAX_THREADS);

/// One permit per thread of name lookups running.
static LOOKUP_THREADS: Semaphore = Semaphore::const_new(MAX_THREADS);

/// Why work sent off the runtime gave no result.
#[derive(Debug)]
pub enum OffRuntimeError {
    /// No thread could be started for it.
    NoThread(io::Error),
    /// It panicked, with this message.
    Panicked(String),
}

impl std::fmt::Display for OffRuntimeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OffRuntimeError::NoThread(error) => {
                write!(f, "no thread could be started for it: {error}")
            }
            OffRuntimeError::Panicked(message) => write!(f, "it panicked: {message}"),
        }
    }
}

impl std::error::Error for OffRuntimeError {}

impl From<OffRuntimeError> for io::Error {
    fn from(error: OffRuntimeError) -> io::Error {
        // The kind stays; the message says it was no failure of the work.
        let kind = match &error {
            OffRuntimeError::NoThread(cause) => cause.kind(),
            OffRuntimeError::Panicked(_) => io::ErrorKind::Other,
        };
        io::Error::new(kind, error)
    }
}

/// Runs `work` on a thread started for it and waits for its result without
/// holding a runtime thread. Dropping the future leaves the work to finish
/// on its own.
pub async fn run<T, W>(work: W) -> Result<T, OffRuntimeError>
where
    T: Send + 'static,
    W: FnOnce() -> T + Send + 'static,
{
    run_counted(&FILE_THREADS, work).await
}

/// [`run`], with a permit of `threads` held while the thread runs.
async fn run_counted<T, W>(threads: &'static Semaphore, work: W) -> Result<T, OffRuntimeError>
where
    T: Send + 'static,
    W: FnOnce() -> T + Send + 'static,
{
    let permit = threads
        .acquire()
        .await
        .map_err(|closed| OffRuntimeError::NoThread(io::Error::other(closed)))?;
    let (result_tx, result_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("weir-blocking".to_owned())
        .spawn(move || {
            let _permit = permit;
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(work));
            // The caller may have gone; the result then has no one to read it.
            let _ = result_tx.send(outcome.map_err(|payload| panic_message(payload.as_ref())));
        })
        .map_err(OffRuntimeError::NoThread)?;
    match result_rx.await {
        Ok(outcome) => outcome.map_err(OffRuntimeError::Panicked),
        // The thread ended without sending: it cannot, but is no result.
        Err(_) => Err(OffRuntimeError::Panicked("no result".to_owned())),
    }
}

/// The message of a panic's payload (a `&str` or a `String`, as `panic!`
/// makes them).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a payload that is not text".to_owned())
}

/// The addresses of `host` (a name or an IP address), looked up off the
/// runtime; each with port `port`.
pub async fn look_up(host: String, port: u16) -> io::Result<Vec<SocketAddr>> {
    run_counted(&LOOKUP_THREADS, move || {
        (host.as_str(), port)
            .to_socket_addrs()
            .map(Iterator::collect)
    })
    .await?
}

/// The name resolver of weir's HTTP clients (webhooks, metric providers):
/// hyper's default looks names up on tokio's blocking pool.
#[derive(Clone, Copy, Debug, Default)]
pub struct Resolver;

impl tower::Service<Name> for Resolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let host = name.as_str().to_owned();
        // The connector sets the port of each address.
        Box::pin(async move { Ok(look_up(host, 0).await?.into_iter()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn work_runs_on_a_thread_of_its_own_and_its_result_comes_back() {
        let caller = std::thread::current().id();
        let (ran_on, sum) = run(|| (std::thread::current().id(), 2 + 2))
            .await
            .expect("a thread could be started");
        assert_ne!(ran_on, caller, "the work ran on the runtime's thread");
        assert_eq!(sum, 4);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_panic_in_the_work_is_an_error_not_a_panic_of_the_caller() {
        let outcome = run(|| -> u32 { panic!("a bug in the work") }).await;
        assert!(
            matches!(&outcome, Err(OffRuntimeError::Panicked(message)) if message == "a bug in the work"),
            "{outcome:?}"
        );
    }

    /// A runtime thread stays free while the work blocks: a task on the
    /// same single-threaded runtime runs meanwhile and is what unblocks it.
    #[tokio::test(flavor = "current_thread")]
    async fn blocking_work_leaves_the_runtime_thread_free() {
        let (unblock_tx, unblock_rx) = std::sync::mpsc::channel::<()>();
        let work = run(move || unblock_rx.recv_timeout(std::time::Duration::from_secs(10)));
        let unblocker = tokio::spawn(async move { unblock_tx.send(()) });
        assert!(work.await.expect("a thread").is_ok(), "the work timed out");
        unblocker.await.expect("the task ran").expect("sent");
    }

    /// Lookups that hang (every lookup thread taken) hold up no read or
    /// write of a file.
    #[tokio::test(flavor = "current_thread")]
    async fn file_work_runs_while_every_lookup_thread_is_taken() {
        let all = u32::try_from(MAX_THREADS).expect("a small count");
        let held = LOOKUP_THREADS.acquire_many(all).await.expect("the permits");
        let ran = tokio::time::timeout(std::time::Duration::from_secs(10), run(|| 7)).await;
        drop(held);
        let ran = ran.expect("the file work waited for the lookups");
        assert_eq!(ran.expect("a thread"), 7);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_ip_address_is_its_own_lookup_and_a_name_with_a_nul_an_error() {
        let found = look_up("127.0.0.1".to_owned(), 80)
            .await
            .expect("an address");
        assert_eq!(found, vec![SocketAddr::from(([127, 0, 0, 1], 80))]);
        let refused = look_up("bad\0host".to_owned(), 80).await;
        assert!(refused.is_err(), "{refused:?}");
    }
}

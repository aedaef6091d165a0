//! Buffers of idle connections, kept per thread for the next request of
//! any connection: an idle keep-alive connection holds no buffer at all,
//! and a busy one takes and gives back a set without calling the allocator.
//!
//! The set is taken when a request's first bytes are readable and given
//! back when its answer is written and nothing of a next request has been
//! read yet. Sets whose buffers grew past [`KEPT_CAPACITY`] (a large head,
//! a pipeline, a large body read) are trimmed before they are kept, and at
//! most [`KEPT_SETS`] sets are kept per thread, so what waits here stays
//! small whatever the traffic was.

use std::cell::RefCell;

/// The largest buffer kept for reuse; a larger one is freed.
pub const KEPT_CAPACITY: usize = 16 * 1024;

/// The most sets kept per thread.
pub const KEPT_SETS: usize = 64;

/// The buffers one request of weir's own path works with.
#[derive(Debug, Default)]
pub struct BufferSet {
    /// Bytes from the client not yet served.
    pub from_client: Vec<u8>,
    /// What goes upstream next.
    pub to_upstream: Vec<u8>,
    /// What goes to the client next.
    pub to_client: Vec<u8>,
    /// Bytes from the upstream not yet served.
    pub from_upstream: Vec<u8>,
    /// The current request's method, target and request id, for messages.
    pub line: Vec<u8>,
}

thread_local! {
    static SPARE: RefCell<Vec<BufferSet>> = const { RefCell::new(Vec::new()) };
}

/// A set of buffers, empty, from this thread's spares or new (made without
/// allocating: a new set's buffers grow at first use).
pub fn take() -> BufferSet {
    SPARE
        .try_with(|spare| spare.borrow_mut().pop())
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Keeps `set` for the next [`take`] on this thread, emptied; buffers grown
/// past [`KEPT_CAPACITY`] are freed, and so is the whole set when this
/// thread already keeps [`KEPT_SETS`] or when it has nothing to reuse.
pub fn give_back(mut set: BufferSet) {
    let mut kept = 0;
    for buffer in [
        &mut set.from_client,
        &mut set.to_upstream,
        &mut set.to_client,
        &mut set.from_upstream,
        &mut set.line,
    ] {
        if buffer.capacity() > KEPT_CAPACITY {
            *buffer = Vec::new();
        } else {
            buffer.clear();
        }
        kept += buffer.capacity();
    }
    if kept == 0 {
        return;
    }
    let _ = SPARE.try_with(|spare| {
        let mut spare = spare.borrow_mut();
        if spare.len() < KEPT_SETS {
            spare.push(set);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_given_back_is_taken_again_emptied_with_its_capacity() {
        while SPARE.with_borrow(Vec::len) > 0 {
            drop(take());
        }
        let mut set = take();
        set.from_client.extend_from_slice(b"GET / HTTP/1.1\r\n");
        set.to_client.reserve(4096);
        let capacity = set.to_client.capacity();
        give_back(set);
        let again = take();
        assert!(again.from_client.is_empty());
        assert_eq!(again.to_client.capacity(), capacity);
        assert_eq!(SPARE.with_borrow(Vec::len), 0);
    }

    #[test]
    fn grown_buffers_are_freed_and_the_number_of_sets_is_bounded() {
        let mut big = BufferSet::default();
        big.from_upstream.reserve(KEPT_CAPACITY + 1);
        big.line.reserve(64);
        give_back(big);
        let kept = take();
        assert_eq!(kept.from_upstream.capacity(), 0);
        assert!(kept.line.capacity() >= 64);
        give_back(BufferSet::default());
        assert_eq!(
            SPARE.with_borrow(Vec::len),
            0,
            "a set without buffers is not kept"
        );
        for _ in 0..KEPT_SETS + 10 {
            let mut set = BufferSet::default();
            set.line.reserve(8);
            give_back(set);
        }
        assert_eq!(SPARE.with_borrow(Vec::len), KEPT_SETS);
    }
}

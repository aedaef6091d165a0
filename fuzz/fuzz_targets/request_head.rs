//! Any bytes as a request head: no panic; an accepted head lies within the
//! input and within the limit; and every prefix the connection could have
//! parsed first (it re-parses its buffer as bytes arrive) is either not yet
//! a head or decides exactly what the whole does.

#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_fuzz::{RequestOutcome, prefix_lengths, request_outcome};
use weir_proxy::http1::request_head::{Framing, MAX_HEAD};

fuzz_target!(|input: &[u8]| {
    let whole = request_outcome(input);
    let boundaries = match whole {
        RequestOutcome::Complete { len, framing, .. } => {
            assert!(
                len <= input.len(),
                "head of {len} bytes in {} bytes",
                input.len()
            );
            assert!(len <= MAX_HEAD, "head of {len} bytes accepted");
            assert!(
                framing != Framing::UntilClose,
                "a request framed until close"
            );
            // The head alone, without what follows it, is the same head.
            assert_eq!(request_outcome(&input[..len]), whole, "the head alone");
            vec![len, MAX_HEAD]
        }
        RequestOutcome::Refused(status, _) => {
            assert!(matches!(status, 400 | 431 | 501), "refused with {status}");
            vec![MAX_HEAD]
        }
        RequestOutcome::Partial => vec![MAX_HEAD],
    };
    for end in prefix_lengths(input, &boundaries) {
        let prefix = request_outcome(&input[..end]);
        assert!(
            prefix == RequestOutcome::Partial || prefix == whole,
            "the first {end} bytes give {prefix:?}, the whole {whole:?}"
        );
    }
});

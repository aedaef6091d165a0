//! Any bytes as an upstream's response head, to a `HEAD` request and to
//! another: no panic; an accepted head lies within the input, has a status
//! from 100 to 599, and both requests read it alike but for the body; and
//! every prefix the connection could have parsed first is either not yet a
//! head or decides exactly what the whole does.

#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_fuzz::{prefix_lengths, response_outcome};
use weir_proxy::http1::request_head::Framing;
use weir_proxy::http1::response_head::MAX_HEAD;

fuzz_target!(|input: &[u8]| {
    let get = response_outcome(input, false);
    let head = response_outcome(input, true);
    match (get, head) {
        (Ok(Some(get)), Ok(Some(head))) => {
            assert!(
                get.len <= input.len(),
                "head of {} bytes in {}",
                get.len,
                input.len()
            );
            assert!(get.len <= MAX_HEAD, "head of {} bytes accepted", get.len);
            assert!((100..=599).contains(&get.status), "status {}", get.status);
            assert_eq!(
                (get.status, get.reason, get.fields, get.len),
                (head.status, head.reason, head.fields, head.len),
                "the same head read differently for HEAD"
            );
            assert_eq!(head.framing, Framing::None, "a body after a HEAD request");
            if get.framing == Framing::UntilClose {
                assert!(!get.reusable, "reused after a body read until close");
            }
            // The head alone, without what follows it, is the same head.
            assert_eq!(response_outcome(&input[..get.len], false), Ok(Some(get)));
        }
        (Ok(None), Ok(None)) | (Err(_), Err(_)) => {}
        (get, head) => panic!("read as {get:?}, and as {head:?} for HEAD"),
    }
    let mut boundaries = vec![MAX_HEAD];
    boundaries.extend(get.ok().flatten().map(|decision| decision.len));
    for head_request in [false, true] {
        let whole = response_outcome(input, head_request);
        for end in prefix_lengths(input, &boundaries) {
            let prefix = response_outcome(&input[..end], head_request);
            assert!(
                prefix == Ok(None) || prefix == whole,
                "the first {end} bytes give {prefix:?}, the whole {whole:?} (HEAD: {head_request})"
            );
        }
    }
});

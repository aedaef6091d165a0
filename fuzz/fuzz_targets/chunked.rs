//! Any bytes as a chunked body: no panic; fed in any pieces, byte by byte
//! included, the decoder finds what it finds in the whole; a body that ends
//! ends at the same byte when nothing follows it; a prefix yields a prefix
//! of the data or the same error; and the data decoded, re-encoded with
//! `encode_chunk` and `LAST_CHUNK`, decodes back to itself.

#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_fuzz::split_offsets;
use weir_proxy::http1::chunked::{LAST_CHUNK, decode_split, encode_chunk};

fuzz_target!(|input: &[u8]| {
    let whole = decode_split(input, &[]);
    let every: Vec<usize> = (1..input.len()).collect();
    assert_eq!(decode_split(input, &every), whole, "fed byte by byte");
    for salt in 0..4 {
        let splits = split_offsets(input, 1 + salt as usize, salt);
        assert_eq!(
            decode_split(input, &splits),
            whole,
            "fed in pieces cut at {splits:?}"
        );
    }
    for end in split_offsets(input, 3, 99) {
        let prefix = decode_split(&input[..end], &[]);
        match (&prefix, &whole) {
            (Ok((data, None)), Ok((all, _))) => {
                assert!(
                    all.starts_with(data),
                    "the first {end} bytes give other data"
                );
            }
            (Ok((_, None)), Err(_)) => {}
            _ => assert_eq!(prefix, whole, "the first {end} bytes"),
        }
    }
    let data = match whole {
        Ok((data, Some(used))) => {
            assert!(
                used <= input.len(),
                "a body of {used} bytes in {}",
                input.len()
            );
            assert_eq!(
                decode_split(&input[..used], &[]),
                Ok((data.clone(), Some(used))),
                "the body alone"
            );
            data
        }
        Ok((data, None)) => data,
        Err(_) => return,
    };
    let mut encoded = Vec::new();
    let mut start = 0;
    let mut cuts = split_offsets(&data, 3, 7);
    cuts.sort_unstable();
    cuts.push(data.len());
    for cut in cuts {
        encode_chunk(&mut encoded, &data[start..cut]);
        start = cut;
    }
    encoded.extend_from_slice(LAST_CHUNK);
    let body_len = encoded.len();
    encoded.extend_from_slice(b"GET / HTTP/1.1\r\n");
    let every: Vec<usize> = (1..encoded.len()).collect();
    for splits in [&[][..], &every[..]] {
        assert_eq!(
            decode_split(&encoded, splits),
            Ok((data.clone(), Some(body_len))),
            "the data re-encoded"
        );
    }
});

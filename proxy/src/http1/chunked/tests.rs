use super::*;

/// Every way of splitting `input` in two gives the same result as whole.
fn decode_every_split(input: &[u8]) -> Result<(Vec<u8>, Option<usize>), ChunkedError> {
    let whole = decode_split(input, &[]);
    for at in 1..input.len() {
        assert_eq!(
            decode_split(input, &[at]),
            whole,
            "split at {at} of {:?}",
            String::from_utf8_lossy(input)
        );
    }
    whole
}

#[test]
fn valid_bodies_decode_to_their_data_and_length() {
    for (input, data, used) in [
        (&b"5\r\nhello\r\n0\r\n\r\n"[..], &b"hello"[..], 15),
        (b"5\r\nhello\r\n0\r\n\r\nGET", b"hello", 15),
        (b"0\r\n\r\n", b"", 5),
        (
            b"5;name=value\r\nhello\r\n3 ; a=\"q;x\"\r\nabc\r\n0;last\r\n\r\n",
            b"helloabc",
            49,
        ),
        (b"5\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n", b"hello", 29),
        (b"5\r\nhello\r\n0\r\nX-Empty:\r\nY:z\r\n\r\n", b"hello", 30),
        (b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789", 20),
        (b"00005\r\nhello\r\n0\r\n\r\n", b"hello", 19),
        (b"5 \r\nhello\r\n0\r\n\r\n", b"hello", 16),
    ] {
        let got = decode_every_split(input);
        assert_eq!(
            got,
            Ok((data.to_vec(), Some(used))),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn malformed_bodies_are_refused_with_their_fault() {
    use ChunkedError::*;
    for (input, want) in [
        (
            &b"ffffffffffffffffff\r\nhello\r\n0\r\n\r\n"[..],
            SizeOverflow,
        ),
        (b"+5\r\nhello\r\n0\r\n\r\n", InvalidSize),
        (b"-5\r\nhello\r\n0\r\n\r\n", InvalidSize),
        (b"0x5\r\nhello\r\n0\r\n\r\n", InvalidSize),
        (b" 5\r\nhello\r\n0\r\n\r\n", InvalidSize),
        (b"5 5\r\nhello\r\n0\r\n\r\n", InvalidSize),
        (b"\r\nhello\r\n0\r\n\r\n", InvalidSize),
        (b"5\nhello\n0\n\n", BareLineEnding),
        (b"5\rhello\r\n0\r\n\r\n", BareLineEnding),
        (b"5\r\nhelloXX0\r\n\r\n", MissingDataCrlf),
        (b"5\r\nhello\n0\r\n\r\n", MissingDataCrlf),
        (b"5;a\0b\r\nhello\r\n0\r\n\r\n", InvalidExtension),
        (b"5\r\nhello\r\n0\r\n\n", BareLineEnding),
        (b"5\r\nhello\r\n0\r\nX: a\nb\r\n\r\n", BareLineEnding),
        (b"5\r\nhello\r\n0\r\n folded\r\n\r\n", InvalidTrailers),
        (b"5\r\nhello\r\n0\r\nX: a\0\r\n\r\n", InvalidTrailers),
        // A trailer line is a field: a token, then a colon.
        (b"5\r\nhello\r\n0\r\nbad trailer\r\n\r\n", InvalidTrailers),
        (b"5\r\nhello\r\n0\r\nnocolon\r\n\r\n", InvalidTrailers),
        (b"5\r\nhello\r\n0\r\n: v\r\n\r\n", InvalidTrailers),
        (b"5\r\nhello\r\n0\r\nX : v\r\n\r\n", InvalidTrailers),
        (b"5\r\nhello\r\n0\r\nX(y): v\r\n\r\n", InvalidTrailers),
        (b"5\r\nhello\r\n0\r\nX\n\r\n", BareLineEnding),
    ] {
        assert_eq!(
            decode_every_split(input),
            Err(want),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn size_lines_and_trailers_are_bounded() {
    let mut long = b"5;".to_vec();
    long.extend(std::iter::repeat_n(b'a', MAX_SIZE_LINE));
    long.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
    assert_eq!(decode_split(&long, &[]), Err(ChunkedError::SizeLineTooLong));
    let mut trailers = b"0\r\n".to_vec();
    for _ in 0..MAX_TRAILERS / 10 + 1 {
        trailers.extend_from_slice(b"X-T: abc\r\n");
    }
    trailers.extend_from_slice(b"\r\n");
    assert_eq!(
        decode_split(&trailers, &[]),
        Err(ChunkedError::InvalidTrailers)
    );
}

/// A body of one-byte chunks, each with an extension of the given length.
fn with_extensions(lengths: &[usize]) -> Vec<u8> {
    let mut body = Vec::new();
    for &len in lengths {
        body.extend_from_slice(b"1;");
        body.extend(std::iter::repeat_n(b'e', len));
        body.extend_from_slice(b"\r\nx\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    body
}

#[test]
fn the_extensions_of_a_whole_body_are_bounded_as_hyper_bounds_them() {
    // Each size line is well within its own bound; together they are not.
    let mut lengths = vec![1024; 15];
    lengths.push(1023);
    let under = with_extensions(&lengths);
    assert_eq!(
        decode_split(&under, &[]).map(|(data, _)| data.len()),
        Ok(16)
    );
    lengths.push(1);
    assert_eq!(
        decode_every_split(&with_extensions(&lengths)),
        Err(ChunkedError::ExtensionsOverLimit)
    );
    // Many one-byte chunks with 1 KiB extensions end at the bound, not later.
    assert_eq!(
        decode_split(&with_extensions(&[1024; 1000]), &[]),
        Err(ChunkedError::ExtensionsOverLimit)
    );
}

#[test]
fn trailer_fields_are_counted_as_hyper_counts_them() {
    let trailers = |fields: usize| {
        let mut body = b"0\r\n".to_vec();
        for _ in 0..fields {
            body.extend_from_slice(b"T: 1\r\n");
        }
        body.extend_from_slice(b"\r\n");
        body
    };
    let hundred = trailers(MAX_TRAILER_FIELDS);
    assert_eq!(
        decode_split(&hundred, &[]),
        Ok((Vec::new(), Some(hundred.len())))
    );
    assert_eq!(
        decode_split(&trailers(MAX_TRAILER_FIELDS + 1), &[]),
        Err(ChunkedError::InvalidTrailers)
    );
}

#[test]
fn an_unfinished_body_asks_for_more() {
    for input in [
        &b""[..],
        b"5",
        b"5\r\nhel",
        b"5\r\nhello\r\n0\r\n",
        b"5\r\nhello\r\n0\r\nX: y",
    ] {
        assert!(
            matches!(decode_split(input, &[]), Ok((_, None))),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn encoded_chunks_decode_to_the_same_data() {
    let mut out = Vec::new();
    encode_chunk(&mut out, b"hello");
    encode_chunk(&mut out, b"");
    encode_chunk(&mut out, &[7u8; 300]);
    out.extend_from_slice(LAST_CHUNK);
    assert!(out.starts_with(b"5\r\nhello\r\n12c\r\n"));
    let (data, used) = decode_split(&out, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(data.len(), 305);
    assert_eq!(used, Some(out.len()));
}

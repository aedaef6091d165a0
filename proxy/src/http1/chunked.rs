//! An incremental decoder of the `chunked` transfer coding (RFC 9112
//! section 7.1), for request and response bodies alike. No I/O: it is fed
//! whatever bytes have arrived, in pieces split anywhere, and says where
//! each chunk's data lies in them, so the driver copies body bytes once.
//!
//! It is strict where a lenient peer would let two parsers disagree: the
//! size is plain hex (no sign, no `0x`) and must fit in 64 bits, every line
//! ends in CRLF (a bare LF is refused), extensions may not hold control
//! characters, and the size line, the extensions of a whole body and the
//! trailer section are bounded, as hyper bounds them.
//! Extensions and trailer fields are validated and dropped: the driver
//! re-frames the data it is given (see [`encode_chunk`]).

use std::ops::Range;

use weir_config::is_token_byte;

/// Longest chunk-size line, extensions included.
pub const MAX_SIZE_LINE: usize = 4096;
/// Largest trailer section.
pub const MAX_TRAILERS: usize = 16 * 1024;
/// Most bytes of chunk extensions in one body, all chunks together (after
/// each `;`, up to the line's CR), as hyper's `CHUNKED_EXTENSIONS_LIMIT`:
/// the body whose extensions reach it is refused. Without it, a body of
/// one-byte chunks with long extensions would pass any amount of them.
pub const MAX_EXTENSIONS: u64 = 16 * 1024;
/// Most trailer fields, as hyper's default header count.
pub const MAX_TRAILER_FIELDS: usize = 100;

/// Why a chunked body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkedError {
    /// A chunk size that is not hex digits, or with a sign or prefix.
    #[error("invalid chunk size line")]
    InvalidSize,
    /// A chunk size that does not fit in 64 bits.
    #[error("chunk size overflows 64 bits")]
    SizeOverflow,
    /// A chunk-size line longer than [`MAX_SIZE_LINE`].
    #[error("chunk size line too long")]
    SizeLineTooLong,
    /// A control character in a chunk extension.
    #[error("invalid chunk extension")]
    InvalidExtension,
    /// The extensions of the body's chunks reach [`MAX_EXTENSIONS`] bytes.
    #[error("chunk extensions over limit")]
    ExtensionsOverLimit,
    /// A line ended in a bare LF, or a CR not followed by LF.
    #[error("chunked line not ended by CRLF")]
    BareLineEnding,
    /// A chunk's data not followed by CRLF.
    #[error("chunk data not followed by CRLF")]
    MissingDataCrlf,
    /// A trailer line with a control character, a trailer section over
    /// [`MAX_TRAILERS`] bytes or over [`MAX_TRAILER_FIELDS`] fields.
    #[error("invalid trailer section")]
    InvalidTrailers,
}

/// What one call to [`ChunkedDecoder::decode`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// Chunk data at this range of the input (the bytes up to its end are consumed).
    Data(Range<usize>),
    /// Every byte given was consumed; more are needed.
    NeedMore,
    /// The last chunk and the trailer section ended; bytes after the
    /// consumed count belong to the next message.
    Done,
}

/// The decoder's position in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In the hex digits of a size (`digits` seen so far).
    Size { value: u64, digits: u32 },
    /// Whitespace after the size, before `;` or CRLF.
    SizeSpace { value: u64 },
    /// In the extensions after `;`.
    Extension { value: u64 },
    /// After the CR of a size line.
    SizeLf { value: u64 },
    /// Inside a chunk's data, `left` bytes to go.
    Data { left: u64 },
    /// After the data, expecting CR.
    DataCr,
    /// After the data's CR, expecting LF.
    DataLf,
    /// At the start of a trailer line (or of the final CRLF).
    TrailerStart,
    /// Inside a trailer field's name, before its colon.
    TrailerName,
    /// Inside a trailer field's value, after its colon.
    TrailerLine,
    /// After the CR of a trailer line.
    TrailerLf,
    /// After the CR of the final empty line.
    EndLf,
    /// The body ended.
    Done,
}

/// Decodes one chunked body; feed it with [`ChunkedDecoder::decode`].
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    /// Bytes of the current size line, or of the trailer section.
    line: usize,
    /// Bytes of extensions so far, every chunk of the body counted.
    extensions: u64,
    /// Trailer fields so far.
    trailer_fields: usize,
}

// === impl ChunkedDecoder ===

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder::new()
    }
}

impl ChunkedDecoder {
    /// A decoder at the start of a body.
    pub fn new() -> ChunkedDecoder {
        ChunkedDecoder {
            state: State::Size {
                value: 0,
                digits: 0,
            },
            line: 0,
            extensions: 0,
            trailer_fields: 0,
        }
    }

    /// Whether the body has ended.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Reads from the front of `input`; returns how many bytes were
    /// consumed and what they held. Call again with the rest until it says
    /// [`Decoded::NeedMore`] or [`Decoded::Done`].
    ///
    /// # Errors
    /// [`ChunkedError`] naming the first framing fault; the body cannot go on.
    pub fn decode(&mut self, input: &[u8]) -> Result<(usize, Decoded), ChunkedError> {
        let mut at = 0;
        while at < input.len() {
            if let State::Data { left } = self.state {
                let available = input.len() - at;
                let take = usize::try_from(left).map_or(available, |left| left.min(available));
                let left = left - take as u64;
                self.state = if left == 0 {
                    State::DataCr
                } else {
                    State::Data { left }
                };
                return Ok((at + take, Decoded::Data(at..at + take)));
            }
            let byte = input[at];
            at += 1;
            self.step(byte)?;
            if self.state == State::Done {
                return Ok((at, Decoded::Done));
            }
        }
        if self.state == State::Done {
            return Ok((at, Decoded::Done));
        }
        Ok((at, Decoded::NeedMore))
    }

    /// Advances over one framing byte.
    fn step(&mut self, byte: u8) -> Result<(), ChunkedError> {
        use ChunkedError::*;
        let in_size_line = matches!(
            self.state,
            State::Size { .. } | State::SizeSpace { .. } | State::Extension { .. }
        );
        if in_size_line {
            self.line += 1;
            if self.line > MAX_SIZE_LINE {
                return Err(SizeLineTooLong);
            }
        }
        self.state = match self.state {
            State::Size { value, digits } => match hex_value(byte) {
                Some(digit) => {
                    let value = value
                        .checked_mul(16)
                        .and_then(|v| v.checked_add(u64::from(digit)))
                        .ok_or(SizeOverflow)?;
                    State::Size {
                        value,
                        digits: digits + 1,
                    }
                }
                None if digits == 0 => return Err(InvalidSize),
                None => match byte {
                    b' ' | b'\t' => State::SizeSpace { value },
                    b';' => State::Extension { value },
                    b'\r' => State::SizeLf { value },
                    b'\n' => return Err(BareLineEnding),
                    _ => return Err(InvalidSize),
                },
            },
            State::SizeSpace { value } => match byte {
                b' ' | b'\t' => State::SizeSpace { value },
                b';' => State::Extension { value },
                b'\r' => State::SizeLf { value },
                b'\n' => return Err(BareLineEnding),
                _ => return Err(InvalidSize),
            },
            State::Extension { value } => match byte {
                b'\r' => State::SizeLf { value },
                b'\n' => return Err(BareLineEnding),
                b'\t' | 0x20..0x7f | 0x80.. => {
                    self.extensions += 1;
                    if self.extensions >= MAX_EXTENSIONS {
                        return Err(ExtensionsOverLimit);
                    }
                    State::Extension { value }
                }
                0..0x20 | 0x7f => return Err(InvalidExtension),
            },
            State::SizeLf { value } => {
                if byte != b'\n' {
                    return Err(BareLineEnding);
                }
                self.line = 0;
                if value == 0 {
                    State::TrailerStart
                } else {
                    State::Data { left: value }
                }
            }
            State::DataCr => match byte {
                b'\r' => State::DataLf,
                _ => return Err(MissingDataCrlf),
            },
            State::DataLf => match byte {
                b'\n' => State::Size {
                    value: 0,
                    digits: 0,
                },
                _ => return Err(MissingDataCrlf),
            },
            State::TrailerStart | State::TrailerName | State::TrailerLine | State::TrailerLf => {
                self.line += 1;
                if self.line > MAX_TRAILERS {
                    return Err(InvalidTrailers);
                }
                match (self.state, byte) {
                    (State::TrailerStart, b'\r') => State::EndLf,
                    // A field name is a token, then a colon: a line that
                    // starts with whitespace (obs-fold), has none, or puts
                    // anything else before it is no field.
                    (State::TrailerStart | State::TrailerName, _) if is_token_byte(byte) => {
                        State::TrailerName
                    }
                    (State::TrailerName, b':') => State::TrailerLine,
                    (State::TrailerStart | State::TrailerName, b'\n') => {
                        return Err(BareLineEnding);
                    }
                    (State::TrailerStart | State::TrailerName, _) => return Err(InvalidTrailers),
                    (State::TrailerLf, b'\n') => {
                        self.trailer_fields += 1;
                        if self.trailer_fields > MAX_TRAILER_FIELDS {
                            return Err(InvalidTrailers);
                        }
                        State::TrailerStart
                    }
                    (State::TrailerLf, _) | (_, b'\n') => return Err(BareLineEnding),
                    (_, b'\r') => State::TrailerLf,
                    (_, b'\t') => State::TrailerLine,
                    (_, 0..0x20 | 0x7f) => return Err(InvalidTrailers),
                    _ => State::TrailerLine,
                }
            }
            State::EndLf => match byte {
                b'\n' => State::Done,
                _ => return Err(BareLineEnding),
            },
            // Handled in `decode`; no byte is read after the end.
            State::Data { .. } | State::Done => self.state,
        };
        Ok(())
    }
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Appends `data` to `out` as one chunk (nothing for empty data).
pub fn encode_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    push_hex(out, data.len() as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// The last chunk and an empty trailer section.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

fn push_hex(out: &mut Vec<u8>, value: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut at = digits.len();
    let mut rest = value;
    loop {
        at -= 1;
        digits[at] = HEX[(rest & 0xf) as usize];
        rest >>= 4;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Decodes `input` fed in the pieces given by `splits` (offsets) the way
/// the connection feeds the decoder; returns the data and how many bytes
/// the body used, or the error. For the property tests and the fuzz targets.
pub fn decode_split(
    input: &[u8],
    splits: &[usize],
) -> Result<(Vec<u8>, Option<usize>), ChunkedError> {
    let mut decoder = ChunkedDecoder::new();
    let mut data = Vec::new();
    let mut bounds: Vec<usize> = splits
        .iter()
        .copied()
        .filter(|&s| s < input.len())
        .collect();
    bounds.sort_unstable();
    bounds.push(input.len());
    let mut start = 0;
    for end in bounds {
        // The driver keeps unconsumed bytes and feeds them again with more.
        let mut piece_start = start;
        while piece_start < end {
            let piece = &input[piece_start..end];
            let (used, decoded) = decoder.decode(piece)?;
            piece_start += used;
            match decoded {
                Decoded::Data(range) => data.extend_from_slice(&piece[range]),
                Decoded::NeedMore => {}
                Decoded::Done => return Ok((data, Some(piece_start))),
            }
        }
        start = end;
    }
    Ok((data, None))
}

#[cfg(test)]
mod tests;

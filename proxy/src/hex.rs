//! Lowercase hex digits of a number, eight bytes at a time with no loop
//! over the digits: the client keys and request ids made per request.

/// The 16 lowercase hex digits of `n`, most significant first.
fn hex_digits(n: u64) -> [u8; 16] {
    let mut text = [0u8; 16];
    text[..8].copy_from_slice(&nibbles_as_hex((n >> 32) as u32).to_be_bytes());
    text[8..].copy_from_slice(&nibbles_as_hex(n as u32).to_be_bytes());
    text
}

/// The 32 lowercase hex digits of `n`, most significant first.
pub fn hex_digits_128(n: u128) -> [u8; 32] {
    let mut text = [0u8; 32];
    text[..16].copy_from_slice(&hex_digits((n >> 64) as u64));
    text[16..].copy_from_slice(&hex_digits(n as u64));
    text
}

/// The eight nibbles of `n` as ASCII hex digits, one per byte, the most
/// significant nibble in the most significant byte.
fn nibbles_as_hex(n: u32) -> u64 {
    // Spread the nibbles out to one a byte: 16 bits a half, then 8, then 4.
    let mut x = u64::from(n);
    x = (x | x << 16) & 0x0000_ffff_0000_ffff;
    x = (x | x << 8) & 0x00ff_00ff_00ff_00ff;
    x = (x | x << 4) & 0x0f0f_0f0f_0f0f_0f0f;
    // A byte of 10 or more carries into bit 4 when 6 is added: those take
    // `a` to `f`, 0x27 further on than the digits after '9'.
    let letters = ((x + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
    x + 0x3030_3030_3030_3030 + letters * 0x27
}

#[cfg(test)]
mod tests {
    use super::{hex_digits, hex_digits_128};

    #[test]
    fn the_digits_are_what_format_writes() {
        let mut rng = fastrand::Rng::with_seed(7);
        let fixed = [
            0,
            1,
            9,
            10,
            15,
            16,
            u64::MAX,
            0x0123_4567_89ab_cdef,
            1 << 63,
        ];
        for n in fixed.into_iter().chain((0..10_000).map(|_| rng.u64(..))) {
            assert_eq!(hex_digits(n), *format!("{n:016x}").as_bytes(), "{n:#x}");
            let wide = u128::from(n) << 64 | u128::from(!n);
            assert_eq!(
                hex_digits_128(wide),
                *format!("{wide:032x}").as_bytes(),
                "{wide:#x}"
            );
        }
    }
}

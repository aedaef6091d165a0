//! Request paths as weir reads them: what the proxy refuses before
//! routing, and the config's `pathPrefix` check with it, decide alike.

/// Whether the path of `target` (up to any `?`) has a `.` or `..`
/// segment: RFC 3986 section 5.2.4 removes them when a reference is
/// resolved, so clients send none, and an upstream that resolves them
/// itself would serve another path than weir routed. Read as the most
/// lenient upstream reads a path: a dot may be `%2e`, a segment may end at
/// `/`, `\`, `%2f` or `%5c`, and its `;params` are left out (`..;/`).
#[inline]
pub fn has_dot_segment(target: &[u8]) -> bool {
    let path = match target.iter().position(|&b| b == b'?') {
        Some(at) => &target[..at],
        None => target,
    };
    // A dot segment needs a dot, plain or encoded.
    if !path.iter().any(|&b| b == b'.' || b == b'%') {
        return false;
    }
    let mut segment_start = 0;
    let mut at = 0;
    while at <= path.len() {
        let separator = match &path[at..] {
            [] => Some(0),
            [b'/' | b'\\', ..] => Some(1),
            [b'%', b'2', f, ..] if f.eq_ignore_ascii_case(&b'f') => Some(3),
            [b'%', b'5', c, ..] if c.eq_ignore_ascii_case(&b'c') => Some(3),
            _ => None,
        };
        match separator {
            Some(length) => {
                if is_dot_segment(&path[segment_start..at]) {
                    return true;
                }
                at += length.max(1);
                segment_start = at;
            }
            None => at += 1,
        }
    }
    false
}

/// Whether `segment` (its `;params` left out) is `.` or `..`, each dot
/// plain or `%2e`/`%2E`.
fn is_dot_segment(segment: &[u8]) -> bool {
    let mut segment = match segment.iter().position(|&b| b == b';') {
        Some(at) => &segment[..at],
        None => segment,
    };
    let mut dots = 0;
    while !segment.is_empty() {
        segment = match segment {
            [b'.', rest @ ..] => rest,
            [b'%', b'2', e, rest @ ..] if e.eq_ignore_ascii_case(&b'e') => rest,
            _ => return false,
        };
        dots += 1;
        if dots > 2 {
            return false;
        }
    }
    dots > 0
}

//! The `Date` field of answers on weir's own path, as hyper's server adds
//! it: an IMF-fixdate (RFC 9110 section 5.6.7) of the current second,
//! rendered at most once per second on each thread and copied from there,
//! so an answer pays for a clock read and a copy, never for formatting or
//! an allocation.

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

/// Length of an IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`.
pub const DATE_LEN: usize = 29;

/// The last second rendered on this thread and its text.
#[derive(Clone, Copy)]
struct Rendered {
    second: u64,
    text: [u8; DATE_LEN],
}

thread_local! {
    static RENDERED: Cell<Rendered> = Cell::new(Rendered {
        second: 0,
        text: render(0),
    });
}

/// Appends a `date` field with the current time to a head being written.
pub fn push_date_field(out: &mut Vec<u8>) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let text = RENDERED.with(|cell| {
        let mut rendered = cell.get();
        if rendered.second != now {
            rendered = Rendered {
                second: now,
                text: render(now),
            };
            cell.set(rendered);
        }
        rendered.text
    });
    out.extend_from_slice(b"date: ");
    out.extend_from_slice(&text);
    out.extend_from_slice(b"\r\n");
}

/// The IMF-fixdate of `seconds` since the Unix epoch (years past 9999
/// keep their last four digits).
pub fn render(seconds: u64) -> [u8; DATE_LEN] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = seconds / 86_400;
    let in_day = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    // 1970-01-01 was a Thursday.
    out[..3].copy_from_slice(DAYS[(days % 7) as usize]);
    put_two(&mut out[5..7], day);
    out[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
    put_two(&mut out[12..14], year / 100 % 100);
    put_two(&mut out[14..16], year % 100);
    put_two(&mut out[17..19], in_day / 3600);
    put_two(&mut out[20..22], in_day / 60 % 60);
    put_two(&mut out[23..25], in_day % 60);
    out
}

/// Two decimal digits of `value` (below 100).
fn put_two(out: &mut [u8], value: u64) {
    out[0] = b'0' + (value / 10 % 10) as u8;
    out[1] = b'0' + (value % 10) as u8;
}

/// Year, month (1 to 12) and day (1 to 31) of `days` since 1970-01-01 in
/// the proleptic Gregorian calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Counted from 0000-03-01, so that a leap day ends its 400-year era.
    let days = days + 719_468;
    let era = days / 146_097;
    let day_of_era = days % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rendered_as_imf_fixdates() {
        for (seconds, text) in [
            (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
            // RFC 9110 section 5.6.7's example.
            (784_111_777, "Sun, 06 Nov 1994 08:49:37 GMT"),
            (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"),
            (978_307_199, "Sun, 31 Dec 2000 23:59:59 GMT"),
            (1_709_164_800, "Thu, 29 Feb 2024 00:00:00 GMT"),
            (4_107_542_400, "Mon, 01 Mar 2100 00:00:00 GMT"),
            (253_402_300_799, "Fri, 31 Dec 9999 23:59:59 GMT"),
        ] {
            assert_eq!(std::str::from_utf8(&render(seconds)), Ok(text), "{seconds}");
        }
    }

    #[test]
    fn the_field_holds_the_current_second() {
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut out = Vec::new();
        push_date_field(&mut out);
        push_date_field(&mut out);
        let after = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let line = b"date: ".len() + DATE_LEN + 2;
        assert_eq!(out.len(), 2 * line);
        let text = &out[6..6 + DATE_LEN];
        assert!(
            (before..=after).any(|second| render(second) == text),
            "{}",
            String::from_utf8_lossy(&out)
        );
        assert!(out.ends_with(b"\r\n"));
    }
}

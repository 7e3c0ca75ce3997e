//! UTC times as ISO 8601 / `xsd:dateTime` text, without a calendar crate
//! and without a clock: the time comes in as an argument.
//!
//! Entry times are milliseconds since the Unix epoch (UTC); people and
//! exchange formats read them as `2026-11-20T09:41:07Z`.

/// Splits milliseconds since the Unix epoch into
/// (year, month, day, hour, minute, second, millisecond), UTC, in the
/// proleptic Gregorian calendar (Howard Hinnant's civil-from-days).
fn civil(ms: u64) -> (i64, i64, i64, u64, u64, u64, u64) {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000,
    )
}

/// ISO 8601 UTC to the second, e.g. `2026-11-20T09:41:07Z`.
pub fn iso_seconds(ms: u64) -> String {
    let (y, mo, d, h, mi, s, _) = civil(ms);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// ISO 8601 UTC to the millisecond, e.g. `2026-11-20T09:41:07.250Z`
/// (a valid `xsd:dateTime`).
pub fn iso_millis(ms: u64) -> String {
    let (y, mo, d, h, mi, s, milli) = civil(ms);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_times() {
        assert_eq!(iso_seconds(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso_seconds(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(iso_seconds(1_795_000_000_999), "2026-11-18T11:06:40Z");
        assert_eq!(iso_millis(1_795_000_000_999), "2026-11-18T11:06:40.999Z");
        assert_eq!(iso_millis(7), "1970-01-01T00:00:00.007Z");
    }
}

//! Timestamps. The edge passes in milliseconds since the Unix epoch from the JS clock
//! (`Date.now()`); `std::time` panics on wasm32-unknown-unknown, so nothing here reads a clock.

/// Formats epoch milliseconds as RFC 3339 in UTC with millisecond precision,
/// e.g. `2026-11-24T12:00:00.000Z`. Negative or non-finite input clamps to the epoch.
pub fn rfc3339_millis(epoch_ms: f64) -> String {
    let ms = if epoch_ms.is_finite() && epoch_ms > 0.0 {
        epoch_ms as u64
    } else {
        0
    };
    let secs = ms / 1000;
    let millis = ms % 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Whole milliseconds from `start_ms` to `end_ms` (epoch ms from the JS clock), 0 if the clock
/// went backwards, saturating at `u32::MAX`.
pub fn elapsed_ms(start_ms: f64, end_ms: f64) -> u32 {
    let elapsed = end_ms - start_ms;
    if elapsed.is_finite() && elapsed > 0.0 {
        // `as` saturates for floats beyond the target's range.
        elapsed.round() as u32
    } else {
        0
    }
}

/// Days since 1970-01-01 to a (year, month, day) civil date: Howard Hinnant's algorithm,
/// restricted to dates on or after the epoch.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    #[test]
    fn elapsed_is_whole_non_negative_milliseconds() {
        assert_eq!(elapsed_ms(1000.0, 1250.4), 250);
        assert_eq!(elapsed_ms(1000.0, 999.0), 0);
        assert_eq!(elapsed_ms(0.0, f64::NAN), 0);
        assert_eq!(elapsed_ms(0.0, 1e20), u32::MAX);
    }

    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339_millis(0.0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(1_795_521_600_000.0),
            "2026-11-24T12:00:00.000Z"
        );
        assert_eq!(
            rfc3339_millis(951_782_400_123.0),
            "2000-02-29T00:00:00.123Z"
        );
        assert_eq!(
            rfc3339_millis(1_704_067_199_999.0),
            "2023-12-31T23:59:59.999Z"
        );
    }

    #[test]
    fn clamps_nonsense_to_epoch() {
        assert_eq!(rfc3339_millis(-5.0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_millis(f64::NAN), "1970-01-01T00:00:00.000Z");
    }
}

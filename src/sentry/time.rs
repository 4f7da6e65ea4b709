//! Timestamps. The edge passes in milliseconds since the Unix epoch from the JS clock
//! (`Date.now()`); `std::time` panics on wasm32-unknown-unknown, so nothing here reads a clock.

use chrono::{DateTime, SecondsFormat};

/// Formats epoch milliseconds as RFC 3339 in UTC with millisecond precision,
/// e.g. `2026-11-24T12:00:00.000Z`. Negative, non-finite or out-of-range input clamps to the
/// epoch: a broken clock must not cost the event its timestamp.
pub fn rfc3339_millis(epoch_ms: f64) -> String {
    let ms = if epoch_ms.is_finite() && epoch_ms > 0.0 {
        // `as` truncates the fraction of a millisecond, and saturates.
        epoch_ms as i64
    } else {
        0
    };
    DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
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
        assert_eq!(rfc3339_millis(1e300), "1970-01-01T00:00:00.000Z");
    }
}

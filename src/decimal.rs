//! Non-negative decimal numbers as fixed-point integers (`"0.25"` with 3 decimals is `250`).
//!
//! Settings and headers carry decimals (`SENTRY_SAMPLE_RATE`, q-values, `retry_after`), but
//! `str::parse::<f64>` brings Rust's float parser and its tables into the wasm: about 15 KB gzip
//! shipped to every edge for a handful of short strings. This reads them by hand instead.

/// Parses `digits[.digits]` (surrounding whitespace allowed) as an integer scaled by
/// 10^`decimals`. Fraction digits past `decimals` are cut off (not rounded). A sign, an exponent,
/// a missing integer part (`.5`), an empty string or an overflow give `None`.
pub fn parse_fixed(text: &str, decimals: u32) -> Option<u64> {
    let text = text.trim();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let scale = 10u64.checked_pow(decimals)?;
    let mut value = whole.parse::<u64>().ok()?.checked_mul(scale)?;
    let mut place = scale;
    for digit in fraction.bytes() {
        place /= 10;
        if place == 0 {
            break;
        }
        value = value.checked_add(u64::from(digit - b'0') * place)?;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_decimals_as_fixed_point() {
        let table = [
            ("0", 3, Some(0)),
            ("1", 3, Some(1000)),
            ("1.000", 3, Some(1000)),
            ("0.8", 3, Some(800)),
            (" 0.25 ", 3, Some(250)),
            ("0.0015", 3, Some(1)),
            ("0.5", 6, Some(500_000)),
            ("60", 3, Some(60_000)),
            ("2.5", 3, Some(2500)),
            ("1e3", 3, None),
            ("-1", 3, None),
            (".5", 3, None),
            ("0.x", 3, None),
            ("", 3, None),
            ("1.", 3, Some(1000)),
            ("99999999999999999999", 3, None),
        ];
        for (text, decimals, want) in table {
            assert_eq!(
                parse_fixed(text, decimals),
                want,
                "{text:?} with {decimals}"
            );
        }
    }
}

//! Non-negative decimal numbers read by hand (`"0.25"`, `"60"`, `"0.8"`).
//!
//! Settings and headers carry a few short decimals (`SENTRY_SAMPLE_RATE`,
//! `SENTRY_TRACES_SAMPLE_RATE`, `Accept-Language` q-values, `Retry-After` and rate-limit seconds,
//! baggage's `sample_rand`). `str::parse::<f64>` links Rust's float parser and its tables for
//! them; reading `digits[.digits]` by hand instead measured -14.6 KB gzip of upload (195,447 ->
//! 180,812 B, 2026-12-08), the largest single item edgeguard shipped. Exponents, signs, `NaN` and `inf` are refused, which every caller refused
//! anyway (a rate, a q-value, a number of seconds is never negative nor written with an exponent).

/// Fraction digits kept by [`parse`]: enough for `sample_rand` (six, as Sentry's SDKs write it).
const DECIMALS: u32 = 6;
const SCALE: f64 = 1_000_000.0;

/// `digits[.digits]` (surrounding whitespace allowed) as an integer scaled by 10^`decimals`.
/// Fraction digits past `decimals` are cut off (not rounded). A sign, an exponent, a missing
/// integer part (`.5`), an empty string or an overflow give `None`.
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

/// `digits[.digits]` as a number, to six decimals (more are cut off). Exact for every value
/// with at most six decimals: the scaled integer and 10^6 are both exact doubles, and one
/// division of exact doubles is correctly rounded, as `str::parse` would give.
pub fn parse(text: &str) -> Option<f64> {
    parse_fixed(text, DECIMALS).map(|scaled| scaled as f64 / SCALE)
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
            ("+1", 3, None),
            (".5", 3, None),
            ("0.x", 3, None),
            ("", 3, None),
            ("NaN", 3, None),
            ("inf", 3, None),
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

    #[test]
    fn gives_what_str_parse_gives_up_to_six_decimals() {
        for text in [
            "0", "1", "0.25", "0.5", "0.6", "0.1", "0.333333", "0.000001", "60", "1.5",
        ] {
            assert_eq!(parse(text), text.parse::<f64>().ok(), "{text}");
        }
        for n in 0..=1000u32 {
            let text = format!("0.{n:03}");
            assert_eq!(parse(&text), text.parse::<f64>().ok(), "{text}");
        }
        assert_eq!(parse("0.1234567"), Some(0.123456));
    }
}

//! Picks the page's language from `Accept-Language` (RFC 9110 §12.5.4, RFC 4647 lookup).
//!
//! The visitor's ranges are tried in q-value order (ties keep header order); each range matches a
//! language the worker has when they are equal, or when one is a prefix of the other at a `-`
//! boundary (`ko-KR` finds `ko`, `pt` finds `pt-br`). Nothing matching gives the fallback, the
//! first language (English).

/// The best of `available` for the header; `available[0]` (or "en" if empty) when nothing fits.
pub fn negotiate<'a>(accept_language: Option<&str>, available: &[&'a str]) -> &'a str {
    let fallback = available.first().copied().unwrap_or("en");
    let Some(header) = accept_language else {
        return fallback;
    };
    // One pass, no sort (a sort costs kilobytes of wasm): the matching range with the highest
    // q wins; equal q keeps the visitor's order (the first one seen stays).
    let mut best: Option<(u16, &'a str)> = None;
    for item in header.split(',') {
        let mut parts = item.split(';');
        let range = parts.next().unwrap_or_default().trim();
        if range.is_empty() || range.len() > 35 {
            continue;
        }
        let q = parts
            .filter_map(|p| {
                let (k, v) = p.split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case("q")
                    .then(|| parse_q(v.trim()))
            })
            .next()
            .unwrap_or(Some(1000));
        let Some(q) = q.filter(|&q| q > 0) else {
            continue;
        };
        if best.is_some_and(|(best_q, _)| best_q >= q) {
            continue;
        }
        if let Some(lang) = matching(range, available, fallback) {
            best = Some((q, lang));
        }
    }
    best.map_or(fallback, |(_, lang)| lang)
}

/// The language `range` selects: `*` is the fallback; an exact match beats a prefix match.
fn matching<'a>(range: &str, available: &[&'a str], fallback: &'a str) -> Option<&'a str> {
    if range == "*" {
        return Some(fallback);
    }
    available
        .iter()
        .find(|l| l.eq_ignore_ascii_case(range))
        .or_else(|| {
            available
                .iter()
                .find(|l| is_prefix(l, range) || is_prefix(range, l))
        })
        .copied()
}

/// A q-value (RFC 9110 §12.4.2: `0` to `1`, three decimals) in thousandths; `None` when it is
/// not one. Shared by `Accept` negotiation.
///
/// A q-value starts with a digit: `f64`'s grammar also takes `.5`, `+1`, `inf` and `NaN`.
/// Digits past the third decimal are cut off, not rounded; `floor` gives exactly `n` for every
/// `0.nnn` (each of the 1001 checked in the tests).
pub(crate) fn parse_q(v: &str) -> Option<u16> {
    let v = v.trim();
    if !v.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let q = crate::decimal::parse(v)?;
    (0.0..=1.0)
        .contains(&q)
        .then(|| (q * 1000.0).floor() as u16)
}

/// Whether `prefix` is `tag` or a leading subtag sequence of it (`ko` of `ko-KR`).
fn is_prefix(prefix: &str, tag: &str) -> bool {
    tag.len() > prefix.len()
        && tag
            .get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
        && tag.as_bytes().get(prefix.len()) == Some(&b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const HAVE: &[&str] = &["en", "ko", "pt-br"];

    #[test]
    fn qvalues_in_thousandths() {
        for (q, want) in [
            ("0", Some(0)),
            ("1", Some(1000)),
            ("1.000", Some(1000)),
            ("0.8", Some(800)),
            (" 0.25 ", Some(250)),
            ("0.0015", Some(1)),
            ("1.5", None),
            ("2", None),
            (".5", None),
            ("0.x", None),
            ("", None),
        ] {
            assert_eq!(parse_q(q), want, "{q:?}");
        }
        for n in 0..1000u16 {
            assert_eq!(parse_q(&format!("0.{n:03}")), Some(n));
        }
    }

    #[test]
    fn table() {
        let cases = [
            (None, "en"),
            (Some(""), "en"),
            (Some("ko"), "ko"),
            (Some("ko-KR"), "ko"),
            (Some("KO-kr"), "ko"),
            (Some("ko-KR,ko;q=0.9,en-US;q=0.8,en;q=0.7"), "ko"),
            (Some("en-US,en;q=0.9,ko;q=0.8"), "en"),
            (Some("fr-FR,fr;q=0.9"), "en"),
            (Some("fr;q=0.9, ko;q=0.5"), "ko"),
            (Some("ko;q=0.5, en;q=0.6"), "en"),
            (Some("ko;q=0, en;q=0.1"), "en"),
            (Some("ko;q=0"), "en"),
            (Some("de, ko;q=0.1"), "ko"),
            (Some("*"), "en"),
            (Some("pt"), "pt-br"),
            (Some("pt-BR"), "pt-br"),
            (Some("zh-Hant-TW, ko;q=0.2"), "ko"),
            (Some("ko; q=1.5, en;q=0.2"), "en"),
            (Some("ko;q=abc"), "en"),
            (Some("kor"), "en"),
            (Some("k"), "en"),
            (Some(",,;;,ko"), "ko"),
            (Some("ko;Q=0.4,en;q=0.3"), "ko"),
        ];
        for (header, want) in cases {
            assert_eq!(negotiate(header, HAVE), want, "{header:?}");
        }
    }

    #[test]
    fn ties_keep_header_order() {
        assert_eq!(negotiate(Some("ko, en"), HAVE), "ko");
        assert_eq!(negotiate(Some("en, ko"), HAVE), "en");
    }

    #[test]
    fn empty_table_falls_back_to_english() {
        assert_eq!(negotiate(Some("ko"), &[]), "en");
    }
}

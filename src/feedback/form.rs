//! `application/x-www-form-urlencoded` bodies (the WHATWG URL standard's parser): `&`-separated
//! `name=value` pairs, `+` for space, `%XX` escapes, then UTF-8 with invalid bytes replaced.
//! A malformed escape is kept as text, as browsers do, rather than failing the whole form.

/// The pairs of `body` in order; empty pieces (`a=1&&b=2`) are skipped.
pub fn parse(body: &[u8]) -> Vec<(String, String)> {
    body.split(|&b| b == b'&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| {
            let (name, value) = match piece.iter().position(|&b| b == b'=') {
                Some(at) => (
                    piece.get(..at).unwrap_or_default(),
                    piece.get(at + 1..).unwrap_or_default(),
                ),
                None => (piece, &[][..]),
            };
            (decode(name), decode(value))
        })
        .collect()
}

/// Decodes one name or value.
pub fn decode(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = raw.get(i + 1).and_then(|&h| hex_value(h));
                let lo = raw.get(i + 2).and_then(|&l| hex_value(l));
                if let (Some(hi), Some(lo)) = (hi, lo) {
                    out.push(hi << 4 | lo);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(h: u8) -> Option<u8> {
    char::from(h)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(body: &str) -> Vec<(String, String)> {
        parse(body.as_bytes())
    }

    #[test]
    fn pairs_in_order() {
        assert_eq!(
            pairs("name=Ada+Lovelace&email=ada%40example.com&empty=&bare"),
            [
                ("name".into(), "Ada Lovelace".into()),
                ("email".into(), "ada@example.com".into()),
                ("empty".into(), String::new()),
                ("bare".into(), String::new()),
            ]
        );
        assert_eq!(pairs(""), []);
        assert_eq!(pairs("&&a=1&"), [("a".into(), "1".into())]);
        assert_eq!(pairs("a=b=c"), [("a".into(), "b=c".into())]);
    }

    #[test]
    fn decodes_escapes_and_utf8() {
        assert_eq!(decode(b"%ED%95%9C%EA%B8%80"), "한글");
        assert_eq!(decode(b"a%2Bb+c%26d%3De"), "a+b c&d=e");
        assert_eq!(decode(b"line1%0D%0Aline2"), "line1\r\nline2");
        assert_eq!(decode(b"%41%4a%4A"), "AJJ");
    }

    #[test]
    fn malformed_escapes_stay_text() {
        assert_eq!(decode(b"100%"), "100%");
        assert_eq!(decode(b"%zz%4"), "%zz%4");
        assert_eq!(decode(b"%%41"), "%A");
        assert_eq!(decode(b"%FF"), "\u{fffd}");
    }
}

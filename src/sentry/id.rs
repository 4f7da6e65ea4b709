//! Event ids: random version-4 UUIDs written as 32 lowercase hex digits, the only form Sentry
//! accepts without normalising.

use std::fmt;

/// A Sentry event id. Built from 16 random bytes supplied by the caller (the edge reads them from
/// `crypto.getRandomValues`), so the core stays deterministic under test.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct EventId([u8; 16]);

impl EventId {
    /// Stamps the UUID version (4) and variant (RFC 4122) bits onto random bytes.
    pub fn from_random(mut bytes: [u8; 16]) -> Self {
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        EventId(bytes)
    }

    /// The 32-character lowercase hex form, no dashes.
    pub fn to_hex(&self) -> String {
        crate::hex::encode(&self.0)
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_version_and_variant_bits() {
        let id = EventId::from_random([0xff; 16]);
        assert_eq!(id.to_hex(), "ffffffffffff4fffbfffffffffffffff");
        let id = EventId::from_random([0; 16]);
        assert_eq!(id.to_hex(), "00000000000040008000000000000000");
    }

    #[test]
    fn is_32_lowercase_hex() {
        let id = EventId::from_random(
            *b"\x01\x23\x45\x67\x89\xab\xcd\xef\x01\x23\x45\x67\x89\xab\xcd\xef",
        );
        let hex = id.to_hex();
        assert_eq!(hex, "0123456789ab4def8123456789abcdef");
        assert!(hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }
}

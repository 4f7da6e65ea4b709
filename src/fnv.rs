//! FNV-1a hashes: tiny, stable across builds and platforms, no dependency. One home for the
//! three places that need a short fixed hash: the loop token (`proxy::forward`, 32-bit), the
//! path Sentry's JavaScript SDK derives for `tunnel: true` (`sentry::tunnel`, 32-bit, as the SDK
//! computes it) and the flood cap's group keys (`sentry::floodcap`, 64-bit).

/// 32-bit FNV-1a, fed piece by piece (no string is built to hash several pieces).
pub struct Fnv32(u32);

impl Fnv32 {
    pub fn new() -> Self {
        Fnv32(0x811c_9dc5)
    }

    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u32::from(b)).wrapping_mul(0x0100_0193);
        }
    }

    pub fn finish(&self) -> u32 {
        self.0
    }
}

impl Default for Fnv32 {
    fn default() -> Self {
        Fnv32::new()
    }
}

/// 64-bit FNV-1a of `bytes`.
pub fn fnv1a_64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published test vectors (Fowler, Noll, Vo: "a").
    #[test]
    fn known_values() {
        let mut f = Fnv32::new();
        f.write(b"a");
        assert_eq!(f.finish(), 0xe40c_292c);
        assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
        let mut pieces = Fnv32::new();
        pieces.write(b"ab");
        pieces.write(b"c");
        let mut whole = Fnv32::new();
        whole.write(b"abc");
        assert_eq!(pieces.finish(), whole.finish());
    }
}

//! Values kept under small integer keys (a key is reused once removed): what JS carries back
//! to a callback, the edge finds here (requests in flight, tasks, awaited promises).

pub struct Slab<T> {
    slots: Vec<Option<T>>,
    free: Vec<u32>,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Slab<T> {
    pub const fn new() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
        }
    }

    pub fn insert(&mut self, value: T) -> u32 {
        if let Some(key) = self.free.pop() {
            if let Some(slot) = self.slots.get_mut(key as usize) {
                *slot = Some(value);
                return key;
            }
        }
        self.slots.push(Some(value));
        u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
    }

    pub fn get_mut(&mut self, key: u32) -> Option<&mut T> {
        self.slots.get_mut(key as usize)?.as_mut()
    }

    pub fn remove(&mut self, key: u32) -> Option<T> {
        let value = self.slots.get_mut(key as usize)?.take()?;
        self.free.push(key);
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::Slab;

    #[test]
    fn keys_are_reused_only_once_removed() {
        let mut slab = Slab::new();
        let (a, b) = (slab.insert("a"), slab.insert("b"));
        assert_eq!((a, b), (0, 1));
        assert_eq!(slab.get_mut(a), Some(&mut "a"));
        assert_eq!(slab.remove(a), Some("a"));
        assert_eq!(slab.remove(a), None, "a key is removed once");
        assert_eq!(slab.get_mut(a), None);
        assert_eq!(slab.insert("c"), a, "the freed key is reused");
        assert_eq!(slab.insert("d"), 2);
        assert_eq!(slab.get_mut(b), Some(&mut "b"));
        assert_eq!(slab.remove(7), None, "an unknown key is no key");
    }
}

//! Counting what is open (SSE streams, connections) per key and in all,
//! against two caps, so one client or tenant cannot take every place.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

/// Open places per key and in all, with their caps.
#[derive(Debug)]
pub struct Caps<K: Hash + Eq + Clone> {
    max_total: usize,
    max_per_key: usize,
    open: Mutex<Open<K>>,
}

#[derive(Debug)]
struct Open<K> {
    total: usize,
    by_key: HashMap<K, usize>,
}

/// Which cap refused a place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Over {
    /// Every place is taken; the cap in all.
    Total(usize),
    /// This key holds its cap of places.
    Key(usize),
}

/// One open place; dropping it frees the place.
#[derive(Debug)]
pub struct Slot<K: Hash + Eq + Clone> {
    caps: Arc<Caps<K>>,
    key: K,
}

impl<K: Hash + Eq + Clone> Caps<K> {
    /// Counts with these caps.
    pub fn new(max_total: usize, max_per_key: usize) -> Arc<Self> {
        let open = Open { total: 0, by_key: HashMap::new() };
        Arc::new(Caps { max_total, max_per_key, open: Mutex::new(open) })
    }

    /// A place for `key`, or the cap that refuses it.
    pub fn open(self: &Arc<Self>, key: &K) -> Result<Slot<K>, Over> {
        let mut open = self.open.lock().unwrap();
        if open.total >= self.max_total {
            return Err(Over::Total(self.max_total));
        }
        let mine = open.by_key.entry(key.clone()).or_default();
        if *mine >= self.max_per_key {
            return Err(Over::Key(self.max_per_key));
        }
        *mine += 1;
        open.total += 1;
        Ok(Slot { caps: self.clone(), key: key.clone() })
    }

    /// Places open now.
    pub fn count(&self) -> usize {
        self.open.lock().unwrap().total
    }
}

impl<K: Hash + Eq + Clone> Drop for Slot<K> {
    fn drop(&mut self) {
        let mut open = self.caps.open.lock().unwrap();
        open.total -= 1;
        if let Some(mine) = open.by_key.get_mut(&self.key) {
            *mine -= 1;
            if *mine == 0 {
                open.by_key.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_either_cap_and_frees_on_drop() {
        let caps = Caps::new(3, 2);
        let a1 = caps.open(&"a").unwrap();
        let _a2 = caps.open(&"a").unwrap();
        assert_eq!(caps.open(&"a").unwrap_err(), Over::Key(2));
        let _b1 = caps.open(&"b").unwrap();
        assert_eq!(caps.open(&"b").unwrap_err(), Over::Total(3));
        drop(a1);
        assert_eq!(caps.count(), 2);
        assert!(caps.open(&"b").is_ok());
    }
}

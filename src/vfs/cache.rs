//! The page cache shared by every connection to one replica: decoded pages keyed by
//! (file, page number) — LTX files never change, so an entry is never stale — bounded in
//! bytes. Two generations approximate LRU at O(1): new and hit pages go into the young
//! one; when it is full the old one is dropped and the young one becomes old.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// A decoded page.
pub(crate) type Page = Arc<[u8]>;

#[derive(Default)]
struct Gens {
    young: HashMap<(u32, u32), Page>,
    old: HashMap<(u32, u32), Page>,
}

/// A bounded cache of decoded pages.
pub(crate) struct PageCache {
    gens: Mutex<Gens>,
    /// Pages per generation.
    per_gen: usize,
}

impl std::fmt::Debug for PageCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PageCache({} pages a generation)", self.per_gen)
    }
}

impl PageCache {
    /// A cache of about `bytes` bytes of `page_size` pages (at least 16 pages).
    pub fn new(bytes: usize, page_size: u32) -> PageCache {
        PageCache {
            gens: Mutex::new(Gens::default()),
            per_gen: (bytes / page_size.max(512) as usize / 2).max(8),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Gens> {
        // A panic while holding the lock leaves only a cache behind: keep using it.
        self.gens.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The page `pgno` of file `file`, if cached.
    pub fn get(&self, file: u32, pgno: u32) -> Option<Page> {
        let mut g = self.lock();
        if let Some(p) = g.young.get(&(file, pgno)) {
            return Some(p.clone());
        }
        let p = g.old.remove(&(file, pgno))?;
        self.insert_locked(&mut g, (file, pgno), p.clone());
        Some(p)
    }

    /// Caches a page.
    pub fn put(&self, file: u32, pgno: u32, page: Page) {
        let mut g = self.lock();
        self.insert_locked(&mut g, (file, pgno), page);
    }

    fn insert_locked(&self, g: &mut Gens, key: (u32, u32), page: Page) {
        if g.young.len() >= self.per_gen && !g.young.contains_key(&key) {
            g.old = std::mem::take(&mut g.young);
        }
        g.young.insert(key, page);
    }

    /// Pages held now.
    pub fn len(&self) -> usize {
        let g = self.lock();
        g.young.len() + g.old.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_keeps_what_is_used() {
        let c = PageCache::new(16 * 512, 512);
        let page: Page = Arc::from(vec![0u8; 512]);
        for p in 0..100 {
            c.put(0, p, page.clone());
            assert!(c.len() <= 16);
            // Page 0 is read after every insert: it survives.
            assert!(c.get(0, 0).is_some(), "hot page evicted at {p}");
        }
        assert!(c.get(0, 1).is_none());
        assert!(c.get(0, 99).is_some());
    }
}

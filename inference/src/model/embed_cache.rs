//! A small bounded LRU of text conditionings keyed by (prompt, negative prompt, guided).
//!
//! A served model sees the same prompts again and again (retries, seeds swept over one
//! prompt, a batch of images for one prompt); the text encoders then run once per pair.
//! A cached conditioning is the very tensor the encoders produced, so bytes do not change.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::pipeline::Conditioning;

/// Entries kept. An SDXL conditioning pair is about 2 × 77 × 2048 values (~1.2 MiB in f32),
/// so 32 entries stay under ~40 MiB while covering the handful of prompts a queue holds.
pub const CAPACITY: usize = 32;

type Key = (String, String, bool);

/// The cache; `Model` holds one.
#[derive(Default)]
pub struct EmbedCache {
    /// Most recently used at the back.
    entries: Mutex<VecDeque<(Key, Conditioning)>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl EmbedCache {
    /// The cached conditioning for `key`, or `make`'s result (then cached).
    pub fn get_or_try<E>(
        &self,
        prompt: &str,
        negative: &str,
        guided: bool,
        make: impl FnOnce() -> Result<Conditioning, E>,
    ) -> Result<Conditioning, E> {
        let key = (prompt.to_owned(), negative.to_owned(), guided);
        {
            let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(at) = entries.iter().position(|(k, _)| *k == key) {
                let entry = entries.remove(at).expect("position is in range");
                let found = entry.1.clone();
                entries.push_back(entry);
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(found);
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        // Encode outside the lock: two workers may encode one new pair twice, which is harmless.
        let made = make()?;
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if !entries.iter().any(|(k, _)| *k == key) {
            if entries.len() == CAPACITY {
                entries.pop_front();
            }
            entries.push_back((key, made.clone()));
        }
        Ok(made)
    }

    /// (hits, misses) since the model loaded.
    pub fn stats(&self) -> (u64, u64) {
        (self.hits.load(Ordering::Relaxed), self.misses.load(Ordering::Relaxed))
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests;

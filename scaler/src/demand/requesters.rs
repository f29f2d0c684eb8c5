//! The requesters of one demand class, oldest first: who pulled, and when.

use super::*;

/// The requesters of one class, oldest first.
#[derive(Default)]
pub(super) struct Requesters {
    /// Requester → its last pull's stamp.
    by_id: HashMap<String, Stamp>,
    /// Stamp → requester: the oldest is the first key.
    by_age: BTreeMap<Stamp, String>,
}

/// Milliseconds since the epoch, then a sequence number to keep stamps distinct.
pub(super) type Stamp = (u64, u64);

impl Requesters {
    pub(super) fn touch(&mut self, requester: &str, stamp: Stamp, max: usize) {
        if let Some(old) = self.by_id.get_mut(requester) {
            self.by_age.remove(old);
            *old = stamp;
            self.by_age.insert(stamp, requester.to_owned());
            return;
        }
        while self.by_id.len() >= max {
            let Some((_, oldest)) = self.by_age.pop_first() else { break };
            self.by_id.remove(&oldest);
        }
        self.by_id.insert(requester.to_owned(), stamp);
        self.by_age.insert(stamp, requester.to_owned());
    }

    /// Forgets requesters whose last pull is older than `cutoff_ms`.
    pub(super) fn expire(&mut self, cutoff_ms: u64) {
        while let Some(entry) = self.by_age.first_entry() {
            if entry.key().0 >= cutoff_ms {
                break;
            }
            let requester = entry.remove();
            self.by_id.remove(&requester);
        }
    }

    pub(super) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Requesters whose last pull is at or after `cutoff_ms`, without
    /// forgetting the others: the read path. The expired are the oldest and
    /// few (the purge forgets them every half `--stale-after`), so this walks only them.
    pub(super) fn live(&self, cutoff_ms: u64) -> usize {
        self.by_id.len() - self.by_age.range(..(cutoff_ms, 0)).count()
    }
}

//! Where requests wait for a runner: plain data, in arrival order. The
//! request that gets a runner leads: it takes itself and the requests of its
//! shape that still wait, as many as fit in the batch. A request of no shape
//! (an edit) is always alone.

use crate::model::pipeline::Params;

/// What requests must share to run in one batch: one UNet call per step
/// needs one latent size, one timestep schedule and one guidance split.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    width: usize,
    height: usize,
    steps: usize,
    guidance_scale: f64,
}

impl Shape {
    /// The shape of a request whose images are `p`'s.
    pub fn of(p: &Params) -> Self {
        Self { width: p.width, height: p.height, steps: p.steps, guidance_scale: p.guidance_scale }
    }
}

struct Entry<T> {
    id: u64,
    shape: Option<Shape>,
    images: usize,
    item: T,
}

/// Requests waiting to be batched.
pub struct Lobby<T> {
    next_id: u64,
    waiting: Vec<Entry<T>>,
}

impl<T> Default for Lobby<T> {
    fn default() -> Self {
        Self { next_id: 0, waiting: Vec::new() }
    }
}

impl<T> Lobby<T> {
    /// Adds a request of `images` images; the id names it later. `None`:
    /// it batches with no other.
    pub fn wait(&mut self, shape: Option<Shape>, images: usize, item: T) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.waiting.push(Entry { id, shape, images, item });
        id
    }

    /// Takes `id` out (its request went away), if no batch took it first.
    pub fn leave(&mut self, id: u64) -> Option<T> {
        let at = self.waiting.iter().position(|e| e.id == id)?;
        Some(self.waiting.remove(at).item)
    }

    /// `id` got a runner: takes it, then the waiting requests of its shape in
    /// arrival order while their images fit in `max_images` with the ones
    /// taken (a request is never split; `id` alone may hold more, and is
    /// then run in several batches). `None`: an earlier batch took `id`.
    pub fn lead(&mut self, id: u64, max_images: usize) -> Option<Vec<T>> {
        let at = self.waiting.iter().position(|e| e.id == id)?;
        let first = self.waiting.remove(at);
        let (shape, mut images) = (first.shape, first.images);
        let mut taken = vec![first.item];
        let mut i = 0;
        while i < self.waiting.len() && images < max_images {
            let e = &self.waiting[i];
            if shape.is_some() && e.shape == shape && images + e.images <= max_images {
                images += e.images;
                taken.push(self.waiting.remove(i).item);
            } else {
                i += 1;
            }
        }
        Some(taken)
    }

    /// Requests waiting.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Whether none waits.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(width: usize, steps: usize) -> Option<Shape> {
        Some(Shape { width, height: 64, steps, guidance_scale: 0.0 })
    }

    #[test]
    fn a_leader_takes_its_shape_in_arrival_order_up_to_the_batch() {
        let mut lobby = Lobby::default();
        let a = lobby.wait(shape(64, 4), 1, "a");
        lobby.wait(shape(64, 4), 2, "b");
        lobby.wait(shape(128, 4), 1, "other size");
        lobby.wait(shape(64, 8), 1, "other steps");
        lobby.wait(shape(64, 4), 2, "too many with b");
        lobby.wait(shape(64, 4), 1, "c");
        lobby.wait(shape(64, 4), 1, "one past the batch");
        assert_eq!(lobby.lead(a, 4), Some(vec!["a", "b", "c"]));
        assert_eq!(lobby.len(), 4, "the others still wait");
        assert_eq!(lobby.lead(a, 4), None, "taken once");
    }

    #[test]
    fn a_taken_request_cannot_leave_and_a_waiting_one_can() {
        let mut lobby = Lobby::default();
        let a = lobby.wait(shape(64, 4), 1, "a");
        let b = lobby.wait(shape(64, 4), 1, "b");
        let c = lobby.wait(shape(96, 4), 1, "c");
        assert_eq!(lobby.leave(c), Some("c"));
        assert_eq!(lobby.lead(a, 2), Some(vec!["a", "b"]));
        assert_eq!(lobby.leave(b), None, "b runs in a's batch");
        assert_eq!(lobby.lead(b, 2), None);
        assert!(lobby.is_empty());
    }

    #[test]
    fn a_request_larger_than_the_batch_leads_alone() {
        let mut lobby = Lobby::default();
        let big = lobby.wait(shape(64, 4), 6, "big");
        lobby.wait(shape(64, 4), 1, "small");
        assert_eq!(lobby.lead(big, 4), Some(vec!["big"]));
        let small = lobby.wait(shape(64, 4), 1, "late");
        assert_eq!(lobby.lead(small, 1), Some(vec!["late"]), "a batch of one takes no mate");
        assert_eq!(lobby.len(), 1);
    }

    #[test]
    fn guidance_is_part_of_the_shape() {
        let mut lobby = Lobby::default();
        let a = lobby.wait(shape(64, 4).map(|s| Shape { guidance_scale: 7.5, ..s }), 1, "guided");
        lobby.wait(shape(64, 4), 1, "unguided");
        assert_eq!(lobby.lead(a, 4), Some(vec!["guided"]));
    }

    #[test]
    fn a_request_of_no_shape_batches_with_none() {
        let mut lobby = Lobby::default();
        let text = lobby.wait(shape(64, 4), 1, "text");
        let edit = lobby.wait(None, 1, "edit");
        lobby.wait(None, 1, "another edit");
        assert_eq!(lobby.lead(text, 4), Some(vec!["text"]), "no edit rides along");
        assert_eq!(lobby.lead(edit, 4), Some(vec!["edit"]), "nor with another edit");
    }
}

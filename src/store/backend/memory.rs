//! The embedded backend's in-process state: one mutex per store, held only
//! for a step that never awaits, which makes every step atomic.

use std::sync::{Mutex, MutexGuard};

#[derive(Default)]
pub struct Guarded<T>(Mutex<T>);

impl<T> Guarded<T> {
    /// The state, for one atomic step. A panic elsewhere cannot leave it
    /// half-updated (no step panics midway), so a poisoned lock is recovered.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

//! The clock TOTP codes are checked against: the system's, unless a test pins it to
//! an instant so that the edges of the ±1 step window can be tried exactly.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

#[derive(Debug, Default)]
pub struct Clock {
    /// Unix seconds, or 0 for the system's clock.
    pinned: AtomicU64,
}

impl Clock {
    /// Seconds since the Unix epoch.
    pub fn now(&self) -> u64 {
        match self.pinned.load(Ordering::Relaxed) {
            0 => SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            pinned => pinned,
        }
    }

    /// Stops the clock at `unix_secs` (tests).
    pub fn pin(&self, unix_secs: u64) {
        self.pinned.store(unix_secs.max(1), Ordering::Relaxed);
    }

    /// Back to the system's clock.
    pub fn unpin(&self) {
        self.pinned.store(0, Ordering::Relaxed);
    }
}

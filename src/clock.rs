//! The wall clock, as Unix time. A leaf: everything that stamps a record or checks an expiry
//! reads the time here.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now as Unix milliseconds (0 if the clock is before 1970; saturates far in the future).
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)).unwrap_or(0)
}

/// Now as Unix seconds (0 if the clock is before 1970).
pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

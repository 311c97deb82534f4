//! Watches (in progress).

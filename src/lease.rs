//! Leases (in progress).

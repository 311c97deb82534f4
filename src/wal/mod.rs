//! The write-ahead log (to be filled in).

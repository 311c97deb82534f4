//! Property tests: the store against a plain per-revision model.

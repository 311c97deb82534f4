//! stet's deterministic simulator: clusters of real core nodes on madsim under faults, with checkers.

pub mod checker;

//! Cluster membership (in progress).

//! Segment file naming: `{seq:016x}-{first_index:016x}.wal`, where `seq` counts segments from 0
//! without gaps and `first_index` is the raft index the segment's first new entry was expected at.

use std::path::{Path, PathBuf};

/// File name suffix of WAL segments.
pub const SUFFIX: &str = ".wal";

/// A segment file in the WAL directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub seq: u64,
    pub first_index: u64,
    pub path: PathBuf,
}

impl Segment {
    /// The segment with this sequence number and first index, in `dir`.
    pub fn new(dir: &Path, seq: u64, first_index: u64) -> Self {
        Segment {
            seq,
            first_index,
            path: dir.join(name(seq, first_index)),
        }
    }
}

/// The file name of a segment.
pub fn name(seq: u64, first_index: u64) -> String {
    format!("{seq:016x}-{first_index:016x}{SUFFIX}")
}

/// What a released segment's file name ends with ([`released_path`]).
pub const RELEASED_SUFFIX: &str = ".released";

/// The name a segment released from the log takes until its file is removed: not a segment name,
/// so opening the log ignores it (and removes the file).
pub fn released_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(RELEASED_SUFFIX);
    PathBuf::from(name)
}

/// Parses a segment file name; `None` if it is not exactly the form [`name`] produces.
pub fn parse_name(file_name: &str) -> Option<(u64, u64)> {
    let stem = file_name.strip_suffix(SUFFIX)?;
    let (seq, first_index) = stem.split_once('-')?;
    let seq = parse_hex16(seq)?;
    let first_index = parse_hex16(first_index)?;
    Some((seq, first_index))
}

fn parse_hex16(s: &str) -> Option<u64> {
    let lower_hex = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
    if s.len() != 16 || !s.as_bytes().iter().all(lower_hex) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_sort_by_sequence_number() {
        assert_eq!(name(1, 0xab), "0000000000000001-00000000000000ab.wal");
        assert!(name(9, 100) < name(10, 1));
    }

    #[test]
    fn foreign_file_names_are_not_segments() {
        for bad in [
            "x.wal",
            "0000000000000001-00000000000000ab.wal.tmp",
            "+000000000000001-00000000000000ab.wal",
            "0000000000000001-00000000000000AB.wal",
            "0000000000000001_00000000000000ab.wal",
            "00000000000000001-0000000000000ab.wal",
        ] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn segment_names_round_trip(seq in any::<u64>(), first in any::<u64>()) {
            prop_assert_eq!(parse_name(&name(seq, first)), Some((seq, first)));
        }
    }
}

//! Telling zeros apart fast: the end of a prepared WAL segment is tens of MiB of zeros, and
//! opening the WAL checks that nothing but zeros follows its last record.

/// Bytes OR-ed together before the scan looks at the result: big enough for the compiler to
/// vectorize the fold, small enough that a non-zero byte early on stops the scan soon.
const BLOCK_BYTES: usize = 4096;

/// Whether every byte of `bytes` is zero. A byte-at-a-time scan with an early exit is not
/// vectorized: it took 50–100 ms over a 64 MiB segment's zeros, this ~2 ms.
pub fn all_zero(bytes: &[u8]) -> bool {
    bytes
        .chunks(BLOCK_BYTES)
        .all(|block| block.iter().fold(0u8, |acc, &b| acc | b) == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeros_of_any_length_are_all_zero() {
        for len in [
            0,
            1,
            7,
            BLOCK_BYTES - 1,
            BLOCK_BYTES,
            BLOCK_BYTES + 1,
            3 * BLOCK_BYTES + 5,
        ] {
            assert!(all_zero(&vec![0u8; len]), "{len} zeros");
        }
    }

    #[test]
    fn one_non_zero_byte_anywhere_is_found() {
        for len in [1, 9, BLOCK_BYTES, BLOCK_BYTES + 1, 2 * BLOCK_BYTES + 3] {
            for at in [0, len / 2, len - 1, BLOCK_BYTES - 1, BLOCK_BYTES] {
                if at >= len {
                    continue;
                }
                for value in [1u8, 0x80, 0xff] {
                    let mut bytes = vec![0u8; len];
                    bytes[at] = value;
                    assert!(!all_zero(&bytes), "{value:#x} at {at} of {len}");
                }
            }
        }
    }
}

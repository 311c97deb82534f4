//! A value as the storage engine's tables hold it (tag, crc32 over key and bytes, payload): the
//! first byte of the input says how many of the following bytes are the row's key (up to 31),
//! the rest is the stored value. Whatever opens must seal back to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stet::engine::record::{seal, unseal};

fuzz_target!(|data: &[u8]| {
    let Some((&key_len, rest)) = data.split_first() else {
        return;
    };
    let key_len = usize::from(key_len % 32).min(rest.len());
    let (key, stored) = rest.split_at(key_len);
    if let Ok((tag, payload)) = unseal(key, stored) {
        let mut out = Vec::new();
        seal(key, tag, payload, &mut out);
        assert_eq!(out, stored, "opening is not canonical");
    }
});

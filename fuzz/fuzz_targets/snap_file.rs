//! Snapshot file decoding: whatever decodes must encode and decode back to the same snapshot.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stet::snap;

fuzz_target!(|data: &[u8]| {
    let Ok(snapshot) = snap::decode(data) else {
        return;
    };
    let bytes = snap::encode(&snapshot).expect("a decoded snapshot encodes");
    let again = snap::decode(&bytes).expect("an encoded snapshot decodes");
    assert_eq!(again, snapshot);
    let name = snap::file_name(snapshot.get_metadata().term, snapshot.get_metadata().index);
    let parsed = snap::parse_file_name(&name);
    assert_eq!(
        parsed,
        Some((snapshot.get_metadata().term, snapshot.get_metadata().index))
    );
});

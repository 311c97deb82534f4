//! WAL record codec: the frame at the front of the input, and the input as a frame body. Whatever
//! decodes must re-encode to the same bytes and decode back to the same record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stet::wal::record::{self, Framed};

fuzz_target!(|data: &[u8]| {
    if let Ok(Framed::Frame(frame)) = record::read_frame(data) {
        assert_eq!(frame.total_len, record::HEADER_LEN + frame.body.len());
        assert!(frame.total_len <= data.len());
        round_trip(frame.body);
    }
    round_trip(data);
});

fn round_trip(body: &[u8]) {
    let Ok(decoded) = record::decode_body(body) else {
        return;
    };
    let prev_crc = record::chained_crc(0, body);
    let mut out = Vec::new();
    let crc = record::encode(&decoded, prev_crc, &mut out).expect("a decoded record fits");
    let Ok(Framed::Frame(frame)) = record::read_frame(&out) else {
        panic!("an encoded record does not frame: {out:?}");
    };
    assert_eq!(frame.body, body, "decoding is not canonical");
    assert_eq!(frame.total_len, out.len());
    assert_eq!(frame.stored_crc, crc);
    assert_eq!(frame.computed_crc(prev_crc), crc);
    assert_eq!(record::decode_body(frame.body).as_ref(), Ok(&decoded));
    if let record::Record::Entry(entry) = &decoded {
        assert_eq!(record::entry_record_len(entry), frame.body.len());
    }
}

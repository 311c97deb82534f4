//! One stored version as the loaders check it, borrowed from where it was read: a snapshot's
//! `KeyVersion` or an engine row's `KeyValue` bytes, decoded in place (a restart reads every row
//! of the file, and copying each key and value only to drop the value again dominated it).

use crate::proto::mvccpb::KeyValue;
use crate::proto::stetpb::KeyVersion;

/// A `KeyValue`'s fields, borrowed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct KeyValueRef<'a> {
    pub key: &'a [u8],
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub value: &'a [u8],
    pub lease: i64,
}

impl<'a> From<&'a KeyValue> for KeyValueRef<'a> {
    fn from(kv: &'a KeyValue) -> Self {
        KeyValueRef {
            key: &kv.key,
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
            value: &kv.value,
            lease: kv.lease,
        }
    }
}

/// One version of one key: its revision, whether it deletes the key, and its key-value.
#[derive(Debug, Clone, Copy)]
pub(super) struct Row<'a> {
    pub key: &'a [u8],
    pub main: i64,
    pub sub: i64,
    pub tombstone: bool,
    pub kv: Option<KeyValueRef<'a>>,
}

impl<'a> From<&'a KeyVersion> for Row<'a> {
    fn from(kv: &'a KeyVersion) -> Self {
        Row {
            key: &kv.key,
            main: kv.main,
            sub: kv.sub,
            tombstone: kv.tombstone,
            kv: kv.kv.as_ref().map(KeyValueRef::from),
        }
    }
}

/// Decodes `KeyValue` protobuf bytes as prost would (the last occurrence of a field wins,
/// unknown fields are skipped), lending the key and the value. `Err` says what is malformed.
pub(super) fn decode_key_value(mut bytes: &[u8]) -> Result<KeyValueRef<'_>, String> {
    let mut kv = KeyValueRef::default();
    while !bytes.is_empty() {
        let key = varint(&mut bytes)?;
        if key > u64::from(u32::MAX) {
            return Err(format!("a field key {key} out of range"));
        }
        let (field, wire_type) = (key >> 3, key & 7);
        match (field, wire_type) {
            (0, _) => return Err("field number 0".to_string()),
            (1, 2) => kv.key = length_delimited(&mut bytes)?,
            (2, 0) => kv.create_revision = varint(&mut bytes)? as i64,
            (3, 0) => kv.mod_revision = varint(&mut bytes)? as i64,
            (4, 0) => kv.version = varint(&mut bytes)? as i64,
            (5, 2) => kv.value = length_delimited(&mut bytes)?,
            (6, 0) => kv.lease = varint(&mut bytes)? as i64,
            (1..=6, _) => return Err(format!("field {field} has wire type {wire_type}")),
            (_, 0) => drop(varint(&mut bytes)?),
            (_, 1) => drop(take(&mut bytes, 8)?),
            (_, 2) => drop(length_delimited(&mut bytes)?),
            (_, 5) => drop(take(&mut bytes, 4)?),
            _ => return Err(format!("field {field} has wire type {wire_type}")),
        }
    }
    Ok(kv)
}

fn varint(bytes: &mut &[u8]) -> Result<u64, String> {
    let mut value = 0u64;
    for (i, &byte) in bytes.iter().enumerate().take(10) {
        if i == 9 && byte > 1 {
            return Err("a varint overflows 64 bits".to_string());
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *bytes = &bytes[i + 1..];
            return Ok(value);
        }
    }
    Err("a varint is cut short or too long".to_string())
}

fn length_delimited<'a>(bytes: &mut &'a [u8]) -> Result<&'a [u8], String> {
    let len = varint(bytes)?;
    let len = usize::try_from(len).map_err(|_| "a length overflows".to_string())?;
    take(bytes, len)
}

fn take<'a>(bytes: &mut &'a [u8], len: usize) -> Result<&'a [u8], String> {
    if bytes.len() < len {
        return Err(format!("{len} bytes wanted, {} left", bytes.len()));
    }
    let (taken, rest) = bytes.split_at(len);
    *bytes = rest;
    Ok(taken)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use prost::Message as _;

    use super::*;

    proptest! {
        #[test]
        fn decodes_what_prost_encodes(
            key in proptest::collection::vec(any::<u8>(), 0..40),
            value in proptest::collection::vec(any::<u8>(), 0..300),
            create in any::<i64>(),
            modified in any::<i64>(),
            version in any::<i64>(),
            lease in any::<i64>(),
        ) {
            let kv = KeyValue { key, create_revision: create, mod_revision: modified, version, value, lease };
            let bytes = kv.encode_to_vec();
            prop_assert_eq!(decode_key_value(&bytes), Ok(KeyValueRef::from(&kv)));
        }

        #[test]
        fn agrees_with_prost_on_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            // Never accepts what prost refuses, and agrees where both accept (prost also skips
            // the deprecated group wire types, which no stet or etcd encoder writes).
            match (KeyValue::decode(bytes.as_slice()), decode_key_value(&bytes)) {
                (Ok(kv), Ok(borrowed)) => prop_assert_eq!(borrowed, KeyValueRef::from(&kv)),
                (Err(error), Ok(borrowed)) => {
                    prop_assert!(false, "prost refused ({}), ours gave {:?}", error, borrowed)
                }
                (_, Err(_)) => {}
            }
        }
    }

    #[test]
    fn unknown_fields_are_skipped_and_the_last_occurrence_wins() {
        let mut bytes = KeyValue {
            key: b"a".to_vec(),
            ..Default::default()
        }
        .encode_to_vec();
        bytes.extend_from_slice(&[0x38, 0x05]); // field 7, varint
        bytes.extend_from_slice(&[0x0a, 0x01, b'b']); // key again
        let kv = decode_key_value(&bytes).unwrap();
        assert_eq!(kv.key, b"b");
        assert!(decode_key_value(&[0x0a, 0x05, b'a']).is_err(), "cut short");
        assert!(decode_key_value(&[0x08, 0x01]).is_err(), "key as a varint");
    }
}

//! Stored records as someone holding the master key would write them: the
//! canonical form and tag of vendor-notes/FORMAT.md, made here from the spec
//! (not with the binary's code), so a test can give a record contents that
//! are wrong yet authentic, which is how a check *behind* authentication
//! (restore's key counts) is reached.

use super::hex;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use std::fs;
use std::path::Path;

/// Rewrites `record` (a stored record, tag included) after `edit`, tagging
/// it again with the master key in `key_file`.
pub fn retag_record(key_file: &Path, record: &mut Value, edit: impl FnOnce(&mut Value)) {
    edit(record);
    let map = record.as_object_mut().expect("a record is an object");
    map.remove("record_tag");
    let tag = record_tag(key_file, &canonical_json(record));
    record
        .as_object_mut()
        .unwrap()
        .insert("record_tag".into(), Value::from(hex(&tag)));
}

/// HMAC-SHA256 under HKDF-SHA256(no salt, master, "redis-backup v2 record").
pub fn record_tag(key_file: &Path, canonical: &[u8]) -> [u8; 32] {
    let text = fs::read_to_string(key_file).expect("read the key file");
    let text = text.trim();
    let master: Vec<u8> = (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect();
    let mut key = [0u8; 32];
    Hkdf::<Sha256>::new(None, &master)
        .expand(b"redis-backup v2 record", &mut key)
        .unwrap();
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).unwrap();
    mac.update(canonical);
    mac.finalize().into_bytes().into()
}

/// No whitespace, object keys in code point order, strings and numbers as
/// JSON writes them.
pub fn canonical_json(value: &Value) -> Vec<u8> {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let parts: Vec<Vec<u8>> = entries
                .into_iter()
                .map(|(k, v)| {
                    let mut part = serde_json::to_vec(k).unwrap();
                    part.push(b':');
                    part.extend(canonical_json(v));
                    part
                })
                .collect();
            [b"{".to_vec(), parts.join(&b','), b"}".to_vec()].concat()
        }
        Value::Array(items) => {
            let parts: Vec<Vec<u8>> = items.iter().map(canonical_json).collect();
            [b"[".to_vec(), parts.join(&b','), b"]".to_vec()].concat()
        }
        scalar => serde_json::to_vec(scalar).unwrap(),
    }
}

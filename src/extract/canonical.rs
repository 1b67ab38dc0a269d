//! The hash that makes comparison by value: key order and number notation (`1` vs `1.0`) do
//! not count, numbers are compared exactly. Its own room because stored hashes depend on it
//! byte for byte: a change here re-baselines every bridge.

use super::Hash;
use crate::number;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Hash of a value by value: numbers by their canonical text ([`number::canonical`], so `1.0`
/// and `1` hash alike), object keys in sorted order whatever map type serde_json is built with.
/// The bytes fed are those of the versions before exact numbers for every value they held
/// exactly, so the hashes they stored still match (see [`number::canonical`]).
pub fn hash(v: &Value) -> Hash {
    let mut h = Sha256::new();
    feed(&mut h, v);
    let d = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

fn feed(h: &mut Sha256, v: &Value) {
    match v {
        Value::Null => h.update(b"n"),
        Value::Bool(b) => h.update(if *b { b"t" } else { b"f" }),
        Value::Number(n) => {
            h.update(b"#");
            h.update(number::canonical(n).as_bytes());
            h.update(b";");
        }
        Value::String(s) => {
            h.update(b"s");
            h.update((s.len() as u64).to_be_bytes());
            h.update(s.as_bytes());
        }
        Value::Array(a) => {
            h.update(b"[");
            h.update((a.len() as u64).to_be_bytes());
            for x in a {
                feed(h, x);
            }
        }
        Value::Object(m) => {
            h.update(b"{");
            h.update((m.len() as u64).to_be_bytes());
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            for k in keys {
                h.update((k.len() as u64).to_be_bytes());
                h.update(k.as_bytes());
                feed(h, &m[k]);
            }
        }
    }
}

//! A bridge's meta as a poll reads it before it knows whether its listing changed: every field
//! decoded but the learned shape (`emit.shape`, the largest part of it and the one a poll
//! answered 304 never needs), and the stored bytes kept, so that a poll that goes on to compare
//! decodes the whole of the same record. Most polls of a quiet fleet end at a 304; decoding the
//! shape's paths each time was most of the cost of reading the meta (docs/scaling.md#cpu).

use super::{BridgeMeta, Failing, Quiet, Store, StoreError, json};
use serde::Deserialize;

/// A bridge's stored meta, read: [`MetaRead::head`] for what is decided before the fetch,
/// [`MetaRead::whole`] for what is compared and stored after it.
#[derive(Debug)]
pub struct MetaRead {
    head: BridgeMeta,
    raw: Option<sled::IVec>,
}

/// The fields of [`BridgeMeta`] but `shape`, with the same names and defaults: serde skips
/// the shape (and anything else) without building it.
#[derive(Deserialize)]
struct Head {
    seq: u64,
    fingerprint: Option<String>,
    baselined: bool,
    #[serde(default)]
    absent: usize,
    #[serde(default)]
    items: usize,
    #[serde(default)]
    pending: usize,
    #[serde(default)]
    cursor: Option<serde_json::Value>,
    #[serde(default)]
    failing: Option<Failing>,
    #[serde(default)]
    quiet: Option<Quiet>,
}

impl MetaRead {
    /// Every field as stored but `shape`, which is None. Not to be stored (it would forget
    /// the shape): a commit starts from [`MetaRead::whole`].
    pub fn head(&self) -> &BridgeMeta {
        &self.head
    }

    /// The whole meta, as [`Store::meta`] reads it.
    pub fn whole(self, bridge: &str) -> Result<BridgeMeta, StoreError> {
        match &self.raw {
            Some(raw) => json(raw, bridge),
            None => Ok(self.head),
        }
    }
}

impl Store {
    /// The bridge's meta, its shape left to decode (see [`MetaRead`]).
    pub fn meta_read(&self, bridge: &str) -> Result<MetaRead, StoreError> {
        let Some(raw) = self.meta.get(bridge.as_bytes())? else {
            return Ok(MetaRead {
                head: BridgeMeta::default(),
                raw: None,
            });
        };
        let h: Head = json(&raw, bridge)?;
        // Every field named: a field added to `BridgeMeta` does not build until it is read
        // here too.
        let head = BridgeMeta {
            seq: h.seq,
            fingerprint: h.fingerprint,
            baselined: h.baselined,
            absent: h.absent,
            items: h.items,
            pending: h.pending,
            cursor: h.cursor,
            failing: h.failing,
            quiet: h.quiet,
            shape: None,
        };
        Ok(MetaRead {
            head,
            raw: Some(raw),
        })
    }
}

#[cfg(test)]
impl Store {
    /// A checksum of every record in the store: the same before and after what writes nothing.
    pub(crate) fn checksum(&self) -> u32 {
        self.db.checksum().unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Commit;

    fn learnt() -> crate::shape::Learnt {
        crate::shape::Learnt {
            paths: [("$.id".to_string(), "number".to_string())].into(),
            counts: vec![3, 4],
            drift: None,
        }
    }

    #[test]
    fn the_head_is_the_meta_but_its_shape_and_the_whole_is_the_meta() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        // Nothing stored: the default, whole too.
        let none = s.meta_read("b").unwrap();
        assert_eq!(none.head(), &BridgeMeta::default());
        assert_eq!(none.whole("b").unwrap(), BridgeMeta::default());
        // Every field set.
        let meta = BridgeMeta {
            seq: 0,
            fingerprint: Some("f".into()),
            baselined: true,
            absent: 2,
            items: 9,
            pending: 1,
            cursor: Some(serde_json::json!(41)),
            failing: Some(Failing {
                since_ms: 5,
                failures: 3,
                announced: true,
            }),
            quiet: Some(Quiet {
                since_ms: 7,
                announced: false,
            }),
            shape: Some(learnt()),
        };
        let c = Commit {
            bridge: "b".into(),
            meta: meta.clone(),
            ..Default::default()
        };
        s.commit(&c).unwrap();
        let read = s.meta_read("b").unwrap();
        let without_shape = BridgeMeta {
            shape: None,
            ..meta.clone()
        };
        assert_eq!(read.head(), &without_shape);
        assert_eq!(read.whole("b").unwrap(), meta);
        assert_eq!(s.meta("b").unwrap(), meta);
    }

    #[test]
    fn a_corrupt_meta_is_corrupt_for_the_head_too() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.meta
            .insert("b", &b"{\"seq\": 1, \"shape\": {"[..])
            .unwrap();
        assert!(matches!(s.meta_read("b"), Err(StoreError::Corrupt(_))));
    }
}

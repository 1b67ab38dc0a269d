//! Moving an older store's records to the current format, on open.

use super::*;

/// The layout `migrate` moves a store to: 2 keeps item state apart from item values. (3,
/// large values stored apart, is set by `Store::open`: see `compact`.)
pub(super) const FORMAT: u32 = 2;

/// Format 1 kept `[hash][missing][value]` in `items`: moves hash and missing to `state`, a
/// batch of items at a time, each batch in one transaction. An item already in `state` has
/// been moved, so a migration cut short by a crash goes on where it stopped.
pub(super) fn migrate(
    db: &sled::Db,
    items: &sled::Tree,
    state: &sled::Tree,
    (parts, files): (&sled::Tree, &values::Files),
) -> Result<(), StoreError> {
    let format = db
        .get(b"format")?
        .and_then(|v| Some(u32::from_be_bytes(v.as_ref().try_into().ok()?)))
        .unwrap_or(1);
    if format >= FORMAT {
        return Ok(());
    }
    let split = |batch: &[(sled::IVec, sled::IVec)]| -> Result<(), StoreError> {
        let prepared = batch
            .iter()
            .map(|(_, rec)| files.prepare(&rec[20..]))
            .collect::<Result<Vec<_>, _>>()?;
        let res: Result<(), TransactionError<StoreError>> =
            (items, state, parts).transaction(|(items, state, parts)| {
                for ((k, rec), value) in batch.iter().zip(&prepared) {
                    state.insert(k, &rec[..20])?;
                    values::put_in_tx(items, parts, Kind::Item, k, value)?;
                }
                Ok(())
            });
        res.map_err(tx_error)
    };
    let mut batch = Vec::new();
    let mut moved = 0usize;
    for kv in items.iter() {
        let (k, rec) = kv?;
        if rec.len() >= 20 && !state.contains_key(&k)? {
            batch.push((k, rec));
        }
        if batch.len() == 10_000 {
            split(&batch)?;
            moved += batch.len();
            batch.clear();
        }
    }
    split(&batch)?;
    moved += batch.len();
    db.insert(b"format", &FORMAT.to_be_bytes())?;
    db.flush()?;
    if moved > 0 {
        tracing::info!(
            items = moved,
            "store: item state moved apart from item values"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_format_1_store_is_migrated_on_open_even_after_an_interrupted_migration() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path().join("pollhook.sled")).unwrap();
            let items = db.open_tree("items").unwrap();
            let old = |hash: u8, missing: u32, v: &str| {
                let mut r = vec![hash; 16];
                r.extend_from_slice(&missing.to_be_bytes());
                r.extend_from_slice(v.as_bytes());
                r
            };
            items.insert(b"b\0k1", old(1, 0, r#"{"a":1}"#)).unwrap();
            items.insert(b"b\0k2", old(2, 3, r#"{"a":2}"#)).unwrap();
            // k3 was moved before a crash: its state is apart and its value alone.
            items.insert(b"b\0k3", &br#"{"a":3}"#[..]).unwrap();
            db.open_tree("state")
                .unwrap()
                .insert(b"b\0k3", &state_record(&[3; 16], 1))
                .unwrap();
            db.flush().unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        let state = s.load_state("b").unwrap();
        assert_eq!(state.len(), 3);
        assert_eq!(state["k2"], Stored::new([2; 16], 3));
        assert_eq!(state["k3"], Stored::new([3; 16], 1));
        assert_eq!(
            s.item_value("b", "k1").unwrap(),
            Some(serde_json::json!({"a": 1}))
        );
        let items = s.items("b").unwrap();
        assert_eq!(
            items[2],
            ("k3".into(), [3; 16], serde_json::json!({"a": 3}))
        );
        drop(s);
        // Opened again: nothing moves twice.
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.load_state("b").unwrap(), state);
        assert_eq!(s.items("b").unwrap(), items);
    }
}

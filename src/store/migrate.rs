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

//! Dead letters: events that ran out of retries for one sink, kept until replayed or dropped.

use super::*;

/// An event that ran out of retries (or met a 410) for one sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub bridge: String,
    pub sink: String,
    pub entry: OutboxEntry,
    pub dead_at_ms: i64,
}

impl Store {
    /// Moves an entry from the outbox to the dead letters, atomically.
    pub fn dead_letter(&self, key: &[u8], letter: &DeadLetter) -> Result<(), StoreError> {
        let v = super::record_bytes(letter);
        let v = self.files.prepare(&v)?;
        type Moved = (Vec<values::FileName>, bool);
        let res: Result<Moved, TransactionError<StoreError>> =
            (&self.outbox, &self.dead, &self.parts).transaction(|(ob, dead, parts)| {
                let moved = ob.get(key)?.is_some() && dead.get(key)?.is_none();
                let mut garbage = Vec::new();
                garbage.extend(values::remove_in_tx(ob, parts, Kind::Outbox, key)?);
                garbage.extend(values::put_in_tx(dead, parts, Kind::Dead, key, &v)?);
                Ok((garbage, moved))
            });
        let (garbage, moved) = res.map_err(tx_error)?;
        if moved {
            self.count(&letter.bridge, |q| {
                q.outbox = q.outbox.saturating_sub(1);
                q.dead += 1;
            });
        }
        self.collect(garbage)
    }

    pub fn dead_letters(&self) -> Result<Vec<(Vec<u8>, DeadLetter)>, StoreError> {
        self.dead
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                let v = self.value_of(Kind::Dead, &k, v, || "dead letter".into())?;
                Ok((k.to_vec(), json(&v, "dead letter")?))
            })
            .collect()
    }

    /// Puts a dead letter back at the end of its queue, with a fresh schedule.
    pub fn replay(&self, key: &[u8]) -> Result<Option<DeadLetter>, StoreError> {
        let Some(v) = self.value(&self.dead, Kind::Dead, key, || "dead letter".into())? else {
            return Ok(None);
        };
        let letter: DeadLetter = json(&v, "dead letter")?;
        let mut entry = letter.entry.clone();
        entry.attempts = 0;
        entry.next_at_ms = 0;
        // Rendered again: a replay is how a fixed template gets its second chance.
        entry.sent = None;
        let new_key = queue_key(&letter.bridge, &letter.sink, self.position());
        let bytes = super::record_bytes(&entry);
        let bytes = self.files.prepare(&bytes)?;
        type Moved = (Vec<values::FileName>, bool);
        let res: Result<Moved, TransactionError<StoreError>> =
            (&self.outbox, &self.dead, &self.parts).transaction(|(ob, dead, parts)| {
                let was_dead = dead.get(key)?.is_some();
                let mut garbage = Vec::new();
                garbage.extend(values::remove_in_tx(dead, parts, Kind::Dead, key)?);
                garbage.extend(values::put_in_tx(
                    ob,
                    parts,
                    Kind::Outbox,
                    &new_key,
                    &bytes,
                )?);
                Ok((garbage, was_dead))
            });
        let (garbage, was_dead) = res.map_err(tx_error)?;
        self.count(&letter.bridge, |q| {
            q.outbox += 1;
            if was_dead {
                q.dead = q.dead.saturating_sub(1);
            }
        });
        self.collect(garbage)?;
        Ok(Some(letter))
    }

    /// Forgets a dead letter.
    pub fn drop_dead(&self, key: &[u8]) -> Result<bool, StoreError> {
        let Some(file) = values::remove(&self.dead, &self.parts, Kind::Dead, key)? else {
            return Ok(false);
        };
        self.count(&split_queue_key(key).0, |q| {
            q.dead = q.dead.saturating_sub(1)
        });
        self.collect(file.into_iter().collect())?;
        Ok(true)
    }

    /// Dead letters of one bridge (all sinks); from a counter, never a scan.
    pub fn dead_len(&self, bridge: &str) -> usize {
        let all = self.counts();
        all.get(bridge).map_or(0, |q| q.dead)
    }
}

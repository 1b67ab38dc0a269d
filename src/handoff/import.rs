//! The new owner's imports, several to a wait for the disk (docs/scaling.md#handoff). Each
//! document is written in a transaction of its own, with the bridge taken off the incoming
//! list and the acknowledgement it owes recorded in the layout record; the documents that
//! arrived meanwhile (up to [`BATCH`]) are then made durable by one flush of the store and
//! one raise of its high-water mark, and only then is each bridge's task told it is
//! imported: no acknowledgement is sent for an import a crash could still undo.

use super::Document;
use super::shared::Shared;
use crate::runtime::{StoreHandle, blocking};
use crate::shard::layout::Record;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::info;

/// The most imports made durable by one flush.
pub const BATCH: usize = 64;

/// An import that failed here (the store), to be tried again.
#[derive(Debug, thiserror::Error)]
pub enum Failed {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Import(#[from] crate::store::handoff::ImportError),
    #[error("the import was written but could not be made durable: {0}")]
    NotDurable(String),
    #[error("the daemon is stopping")]
    Stopping,
}

/// A document waiting for its import.
struct Queued {
    bridge: String,
    /// The shard that gave it.
    from: u64,
    doc: Document,
    done: oneshot::Sender<Result<u64, Failed>>,
}

/// The one task that imports, fed by the bridges' tasks.
#[derive(Clone)]
pub struct Importer(mpsc::UnboundedSender<Queued>);

impl Importer {
    /// Starts the task; it ends when the daemon stops.
    pub fn spawn(store: StoreHandle, shared: Arc<Shared>, stop: CancellationToken) -> Importer {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(store, shared, rx, stop));
        Importer(tx)
    }

    /// Imports `doc`, given by shard `from`, and records the acknowledgement owed to it;
    /// returns the seq stored, once the import is durable.
    pub async fn import(&self, bridge: &str, from: u64, doc: Document) -> Result<u64, Failed> {
        let (done, rx) = oneshot::channel();
        let bridge = bridge.to_string();
        let q = Queued {
            bridge,
            from,
            doc,
            done,
        };
        self.0.send(q).map_err(|_| Failed::Stopping)?;
        rx.await.map_err(|_| Failed::Stopping)?
    }
}

async fn run(
    store: StoreHandle,
    shared: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<Queued>,
    stop: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            _ = stop.cancelled() => return,
            q = rx.recv() => match q {
                Some(q) => q,
                None => return,
            },
        };
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(q) => batch.push(q),
                Err(_) => break,
            }
        }
        let (store, shared) = (store.clone(), shared.clone());
        blocking(move || write(&store, &shared, batch)).await;
    }
}

/// Each import in its transaction, then one flush for all; each told how it went.
fn write(store: &StoreHandle, shared: &Shared, batch: Vec<Queued>) {
    let mut written = Vec::with_capacity(batch.len());
    let mut seqs = HashMap::new();
    for q in batch {
        let r = import_one(store, shared, &q);
        if let Ok(seq) = r {
            seqs.insert(q.bridge.clone(), seq);
        }
        written.push((q, r));
    }
    let durable = match seqs.is_empty() {
        true => Ok(()),
        false => store
            .writable()
            .and_then(|s| store.check(s.imports_durable(&seqs))),
    };
    for (q, r) in written {
        let r = match (r, &durable) {
            (Ok(_), Err(e)) => Err(Failed::NotDurable(e.to_string())),
            (r, _) => r,
        };
        if let Ok(seq) = r {
            let (s, name, k) = (&q.doc.state, &q.bridge, q.from);
            info!(bridge = %name, from = k, items = s.items.len(), outbox = s.outbox.len(), seq,
                "bridge {name} handed over from shard {k}: {} items, {} events waiting, {} dead letters, seq {seq}",
                s.items.len(), s.outbox.len(), s.dead.len());
        }
        // The bridge's task may be gone (the daemon stopping): nothing to tell.
        let _ = q.done.send(r);
    }
}

/// One import's transaction: the state, the bridge off the incoming list, the
/// acknowledgement owed.
fn import_one(store: &StoreHandle, shared: &Shared, q: &Queued) -> Result<u64, Failed> {
    let s = store.writable()?;
    let name = &q.bridge;
    // A copy of ours, given away earlier and still here, is replaced.
    let replace = shared.record().given.contains_key(name);
    let record = |r: &mut Record| {
        r.incoming.remove(name);
        r.given.remove(name);
        r.owed.insert(name.clone(), q.from);
    };
    let seq = shared.save_with(record, |layout| {
        s.import_unflushed(name, &q.doc.state, replace, Some(layout))
    })?;
    Ok(seq)
}

//! Moving a bridge's state between stores (docs/scaling.md#the-state-document): the versioned,
//! checksummed document that carries it (`doc`), the offline commands that write and read
//! it, `pollhook state export|import` (`cli`), and the live handoff between running shards
//! (docs/scaling.md#handoff): the other shards (`peers`), what the shards share about the
//! bridges moving (`shared`), and the new owner's side (`receive`, and `import`, which writes
//! what it receives, each document within its share of the memory budget, `share`).

pub mod cli;
pub mod doc;
pub mod import;
pub mod peers;
pub mod receive;
pub mod share;
pub mod shared;

pub use doc::{DocError, Document};

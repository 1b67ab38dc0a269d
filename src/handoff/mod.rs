//! Moving a bridge's state between stores (docs/scaling.md#the-state-document): the versioned,
//! checksummed document that carries it (`doc`), and the offline commands that write and read
//! it, `pollhook state export|import` (`cli`). The handoff between running shards sends the
//! same document.

pub mod cli;
pub mod doc;

pub use doc::{DocError, Document};

//! Running as one of N shards (docs/scaling.md#shards): which bridges this process owns
//! (`jump`), which shard it is (`spec`: `--shard I/N` or `--shard auto`), and what its store
//! says about the layouts it ran under (`layout`: the bridges coming in and going out).

pub mod jump;
pub mod layout;
pub mod spec;

pub use jump::{legacy_owner, owner};
pub use spec::Shard;

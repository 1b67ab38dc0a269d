//! One integration-test binary (a quick build): the real code against real HTTP servers on
//! 127.0.0.1, a real sled store in a temp dir, and the real `pollhook` binary.

// Helpers of tests may panic as tests do: a failed set-up is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod access;
mod auth;
mod batches;
mod binary;
mod budget;
mod cassettes;
mod chat;
mod churn;
mod config;
mod crash;
mod crowd;
mod delivery;
mod digests;
mod diskfull;
mod failing;
mod formats;
mod guards;
mod handoff;
mod hostile;
mod house;
mod isolation;
mod listings;
mod native;
mod noise;
mod operate;
mod pipeline;
mod recipes;
mod rollback;
mod roots;
mod secrets;
mod shape;
mod shards;
mod sinks;
mod sources;
mod support;
#[path = "../testkit/mod.rs"]
mod testkit;
mod traces;
mod units;
mod wide;

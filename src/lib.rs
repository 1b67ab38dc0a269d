//! pollhook turns pull into push: it polls HTTP/JSON APIs, compares the items it finds with
//! what it saw last time and POSTs a signed webhook for every item created, updated or deleted.
//!
//! # Layout
//!
//! Data flows one way: config -> schedule -> fetch -> extract -> diff -> store + outbox -> deliver.
//! No two modules import each other, directly or round a circle; the leaves import nothing of
//! the crate.
//!
//! Wall-clock time is `chrono::DateTime<Utc>` throughout; Unix milliseconds appear only where
//! a time is stored (store records) or shown (the admin API's `*_ms` fields), and
//! `tokio::time::Instant` only for elapsed time. Both come from one [`clock::Clock`], made at
//! an edge and handed down (docs/design.md#the-clock).
//!
//! - [`jsonpath`] (leaf): a JSONPath compiled once at load, its errors on one line
//! - [`http`] (leaf): the source and webhook clients, redirect policy, user agent, reqwest
//!   errors on one line, `Retry-After`; `roots`, the CA certificates they trust (the system's,
//!   else a bundled set)
//! - [`number`] (leaf): numbers exact as written, compared by value (`1.0` is `1`)
//! - [`formats`] (leaf): a body in NDJSON, CSV, a feed or XML turned into JSON text; pure
//! - [`chat`] (leaf): what each chat receiver reads as markup and mentions, and source text
//!   escaped to show as written there; pure
//! - [`config`]: bridge YAML files -> validated [`config::Bridge`]s, or every problem with its
//!   place; `screen` turns away what is not a bridge file, quoting nothing
//! - [`schedule`]: when a bridge polls (`every` with a per-name offset, or cron); pure
//! - [`auth`]: logging in to sources (`source.auth`): tokens per bridge, renewed ahead of
//!   expiry and on a 401, rotated refresh tokens kept in the store
//! - [`poll`]: one poll, load -> fetch -> apply: `load` (the stored meta, and the store behind
//!   fetch's narrow traits), `fetch` (`request`, `body`, `listing`, `paging`: pages, conditional
//!   requests, next links), `ratelimit` (pauses a source asks for), `plan` (pure: stored state +
//!   listing + now -> events and the commits that store them, one or a batch at a time), `apply`
//!   (the plan run against the store); and `scheduler`, the per-bridge loop and polls asked for now
//! - [`extract`]: `mod` (items, keys, selection over pages), `walker` (items read from the
//!   text), `shape` (include/exclude), `canonical` (the hash stored values depend on); pure
//! - [`diff`]: stored state + new items -> changes and writes; pure
//! - [`event`]: change -> event body with id and JSON Patch; pure
//! - [`churn`]: which paths of a bridge's items change, counted from the updates' patches,
//!   and the `exclude`/`settle` that would quiet them; pure
//! - [`shape`]: the paths and types a bridge's items have and their usual count, and the
//!   changes that make a drift; pure (`poll::shape` decides what a drift does)
//! - [`store`]: the sled database: `open` (sled's lock and damage as errors, then the mark
//!   checked), `mark` (the high-water side: rollback, lost mark, accept-rollback), `commit` (a
//!   poll in one transaction, group commit), `items`, `pages` (the 304 cache), `outbox` (queues
//!   and their counts), `dead`, `migrate`, `values` (large values in chunks or files, so
//!   sled's `blobs/` never grows), `compact`, `layout` (the shard's layout record, the bridges
//!   held), `handoff` (a bridge's whole state)
//! - [`highwater`]: the highest seq handed out per bridge, kept apart from sled in two files: a
//!   store that went back is refused, and so is one whose mark is lost; `frame` (the record
//!   format), `witness` (the two files written in step), `check` (what the start-up check says)
//! - [`deliver`]: per bridge+sink outbox drain, one attempt a step you can call; `step` (pure:
//!   what came of an attempt + its number + the schedule + now -> ack, retry at, dead),
//!   `retry` (statuses, `Retry-After`, the schedule), `webhook` (the request) and `console`,
//!   the effects; `stored` (a body parsed once per attempt), `format` (the body a sink speaks:
//!   event, chat presets, template; its `events`/`when`), `batch` (digests stored before
//!   their first attempt) and `window` (when each queue's next may form), `trial`
//!   (`poll --render`, `send-test`)
//! - [`sign`]: Standard Webhooks and GitHub signatures; pure
//! - [`redact`]: secrets out of logs, errors, panics and the admin API
//! - [`render`]: MiniJinja templates and rules of sinks (docs/configuration.md#templates),
//!   compiled at load, a chat `message`'s values escaped by [`chat`] (its only import); pure:
//!   no clock, files or network
//! - [`resync`]: queue every stored item as `item.snapshot`
//! - [`recipes`]: the bridge files `pollhook new` writes for common sources, their arguments
//!   checked and quoted; pure
//! - [`cassette`]: a bridge's answers recorded (`record`, through the source client's tape) and
//!   replayed offline through the whole pipeline (`replay`: a loopback server, a scratch store,
//!   a fixed clock)
//! - [`clock`] (leaf): the one clock (the system's, or a test's), and times as stored milliseconds
//! - [`runtime`]: what the tasks share, as the handles each part takes
//!   (docs/design.md#shared-handles): `store` (the store and whether it takes writes), HTTP
//!   clients, `polls` (slots and locks), wake-ups, `board` (statuses, ended tasks), `beats`
//!   (the steps the watchdog looks at); `Ctx` owns one of each for the wiring
//! - [`admin`]: the admin HTTP API: router and handlers, the typed bodies it answers with
//!   (`admin::body`) and the CLI's client that reads them (`admin::client`), and how it is
//!   served within bounds (`admin::serve`: a cap on connections, time-outs); [`access`]: who
//!   may act through it (unix socket, token)
//! - [`shard`]: which shard owns a bridge (`jump`, a jump consistent hash), which shard this
//!   process is (`spec`, `--shard I/N|auto/N|auto`), and the layout its store records with the
//!   bridges coming in and going out (`layout`; pure)
//! - [`handoff`]: a bridge's whole state in one versioned, checksummed document (`doc`, over
//!   `store::handoff`, which reads and writes it), and `pollhook state export|import` (`cli`)
//! - [`app`]: wiring, start-up, reload and shutdown; `supervise`, the bridge tasks' and the
//!   store's supervisors
//! - [`trace`]: spans of polls and delivery attempts, the `traceparent` of webhooks, and
//!   their export over OTLP/HTTP (`--otlp`); nothing is made when not exporting
//! - [`fault`]: fault injection for the tests (debug builds only)
//! - [`throttle`] (leaf): log lines others can provoke, at most one a minute with a count
//! - [`systemd`]: sd_notify, and `dirs` (shards' state moved to where the units keep it now);
//!   [`logging`]: log formats and the bridge and sink spans whose fields every line of those
//!   tasks carries; [`metrics`]: Prometheus metrics
//!
//! The command line is the binary's, not this library's: `src/main.rs` (start-up) and
//! `src/cli/`, one file per command family (docs/design.md#module-layout).

pub mod access;
pub mod admin;
pub mod app;
pub mod auth;
pub mod cassette;
pub mod chat;
pub mod churn;
pub mod clock;
pub mod config;
pub mod deliver;
pub mod diff;
pub mod event;
pub mod extract;
pub mod fault;
pub mod formats;
pub mod handoff;
pub mod highwater;
pub mod http;
pub mod jsonpath;
pub mod logging;
pub mod metrics;
pub mod number;
pub mod poll;
pub mod recipes;
pub mod redact;
pub mod render;
pub mod resync;
pub mod runtime;
pub mod schedule;
pub mod shape;
pub mod shard;
pub mod sign;
pub mod store;
pub mod systemd;
pub mod throttle;
pub mod trace;

/// The builder of bridge files and the wait for a condition that the integration tests use too.
#[cfg(test)]
#[path = "../tests/testkit/mod.rs"]
#[allow(
    dead_code,
    reason = "shared with tests/it, which uses the parts these tests do not"
)]
mod testkit;

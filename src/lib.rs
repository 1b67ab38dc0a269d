//! pollhook turns pull into push: it polls HTTP/JSON APIs, compares the items it finds with
//! what it saw last time and POSTs a signed webhook for every item created, updated or deleted.
//!
//! # Layout
//!
//! Data flows one way: config -> schedule -> fetch -> extract -> diff -> store + outbox -> deliver.
//!
//! - [`config`]: bridge YAML files -> validated [`config::Bridge`]s, or every problem with its place
//! - [`schedule`]: when a bridge polls (`every` with a per-name offset, or cron); pure
//! - [`poll`]: one poll (fetch, extract, diff, events, one commit, or batches for a large one)
//!   and the per-bridge scheduler
//! - [`extract`]: JSONPath selection, keys, include/exclude, canonical values and hashes; pure
//! - [`number`]: numbers exact as written, compared by value (`1.0` is `1`); pure
//! - [`diff`]: stored state + new items -> changes and writes; pure
//! - [`event`]: change -> event body with id and JSON Patch; pure
//! - [`store`]: sled trees; `commit` writes item state and outbox in one transaction; large
//!   values in chunks or files of their own (`store::values`), so sled's `blobs/` never grows
//! - [`highwater`]: the highest seq handed out per bridge, kept apart from sled: a store that went back is refused
//! - [`deliver`]: per bridge+sink outbox drain, retry decisions, the webhook request
//! - [`sign`]: Standard Webhooks and GitHub signatures; pure
//! - [`redact`]: secrets out of logs, errors and the admin API
//! - [`resync`]: queue every stored item as `item.snapshot`
//! - [`runtime`]: what the tasks share (the store and whether it takes writes, HTTP clients,
//!   wake-ups, the steps the watchdog looks at)
//! - [`admin`]: the admin HTTP API: router and handlers, the typed bodies it answers with
//!   (`admin::body`) and the CLI's client that reads them (`admin::client`); [`access`]: who
//!   may act through it (unix socket, token)
//! - [`app`]: wiring, start-up and shutdown
//! - [`fault`]: fault injection for the tests (debug builds only)
//! - [`systemd`]: sd_notify; [`logging`]: log formats; [`metrics`]: Prometheus metrics

pub mod access;
pub mod admin;
pub mod app;
pub mod config;
pub mod deliver;
pub mod diff;
pub mod event;
pub mod extract;
pub mod fault;
pub mod highwater;
pub mod http;
pub mod jsonpath;
pub mod logging;
pub mod metrics;
pub mod number;
pub mod poll;
pub mod redact;
pub mod resync;
pub mod runtime;
pub mod schedule;
pub mod sign;
pub mod store;
pub mod systemd;

//! The admin API (docs/operations.md#admin-api), loopback by default: health, Prometheus metrics,
//! bridges and their state, poll/reset/resync/accept-shape on demand, dead letters. It never shows a secret. Who
//! may act is decided in [`crate::access`].

use crate::config::Bridge;
use crate::runtime::Ctx;
use crate::store::DeadLetter;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;

pub mod body;
pub mod client;
mod handoff;
pub mod serve;
mod shape;

#[derive(Clone)]
pub struct AdminState {
    pub ctx: Arc<Ctx>,
    /// The running set; replaced on reload.
    pub bridges: Arc<std::sync::RwLock<Vec<Arc<Bridge>>>>,
    /// The shard's layout and the bridges moving (docs/scaling.md#handoff).
    pub handoff: Arc<crate::handoff::shared::Shared>,
}

/// The API for one listener. Reads are open; everything that acts goes through
/// [`crate::access::gate`], which lets it through according to `access`
/// (docs/operations.md#who-may-act).
pub fn router(state: AdminState, access: crate::access::Access) -> Router {
    let reads = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/bridges", get(bridges))
        .route("/v1/bridges/{name}/churn", get(churn))
        .route("/v1/dead-letters", get(dead_letters))
        .route("/v1/layout", get(layout));
    let acts = Router::new()
        .route("/v1/bridges/{name}/poll", post(poll))
        .route("/v1/bridges/{name}/reset", post(reset))
        .route("/v1/bridges/{name}/resync", post(resync))
        .route("/v1/bridges/{name}/send-test", post(send_test))
        .route("/v1/dead-letters/{id}/replay", post(replay))
        .route("/v1/dead-letters/{id}", delete(drop_letter))
        .merge(handoff::routes())
        .merge(shape::routes())
        .route_layer(axum::middleware::from_fn(carried))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::new(access),
            crate::access::gate,
        ));
    reads.merge(acts).with_state(state)
}

/// An acting request runs in a task of its own, to its end even when its asker hangs up (a
/// receiver killed right after sending its acknowledgement): a change is never left half
/// made, written but not flushed or not yet known in memory. Cut off so, a handed-off bridge
/// stayed listed as outgoing for ever.
async fn carried(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match tokio::spawn(next.run(req)).await {
        Ok(r) => r,
        // A panic's message stays out of the answer (the log has it, redacted).
        Err(_) => {
            internal("the request failed inside the daemon; its log says why").into_response()
        }
    }
}

/// Which paths of the bridge's items changed in the polls counted, ranked, and what would
/// quiet them (docs/testing-bridges.md#churn-and-suggest).
async fn churn(
    State(s): State<AdminState>,
    Path(name): Path<String>,
) -> Result<Json<crate::churn::Report>, ApiError> {
    let b = find(&s, &name)?;
    let store = s.ctx.store().ok();
    Ok(Json(s.ctx.churn.report(&b.name, store.as_ref())))
}

/// The shard's layout, the bridges coming in and going out (docs/operations.md#admin-api).
async fn layout(State(s): State<AdminState>) -> Json<crate::shard::layout::View> {
    Json(s.handoff.view())
}

fn running(s: &AdminState) -> Vec<Arc<Bridge>> {
    crate::runtime::lock::read(&s.bridges).clone()
}

fn find(s: &AdminState, name: &str) -> Result<Arc<Bridge>, ApiError> {
    running(s)
        .into_iter()
        .find(|b| b.name == name)
        .ok_or_else(|| {
            api_error(
                StatusCode::NOT_FOUND,
                format!("no bridge `{name}` is running"),
            )
        })
}

/// A running bridge that may be polled here: 409 while it waits for its handoff.
fn find_polled(s: &AdminState, name: &str) -> Result<Arc<Bridge>, ApiError> {
    let b = find(s, name)?;
    if let Some(w) = s.handoff.waiting(name) {
        return Err(api_error(
            StatusCode::CONFLICT,
            format!(
                "bridge `{name}` is {}: it is not polled here until its state arrives (`pollhook handoff skip {name}` gives that state up)",
                w.line()
            ),
        ));
    }
    Ok(b)
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    api_error(StatusCode::INTERNAL_SERVER_ERROR, e)
}

/// A store error as an answer: 503 while the store does not take writes, else 500.
fn store_error(e: crate::store::StoreError) -> ApiError {
    let status = if e.is_failure() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    api_error(status, e)
}

/// 200 `ok` while the store takes writes and every bridge's tasks run; else 503 with the
/// reasons as JSON.
async fn healthz(State(s): State<AdminState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let why = s.ctx.health();
    if why.is_empty() {
        return "ok\n".into_response();
    }
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "status": "unhealthy", "reasons": why })),
    )
        .into_response()
}

async fn metrics(State(s): State<AdminState>) -> ([(&'static str, &'static str); 1], String) {
    crate::metrics::store_ok(s.ctx.store.failure().is_none());
    crate::metrics::poll_memory(&s.ctx.memory);
    // Counters the store keeps: no scan, whatever the number of bridges.
    let all = running(&s);
    let store = s.ctx.store.get().ok();
    let gauges: Vec<crate::metrics::Gauges<'_>> = all
        .iter()
        .map(|b| crate::metrics::Gauges {
            bridge: b.name.as_str(),
            items: s.ctx.board.items(&b.name),
            outbox: store.as_ref().map_or(0, |st| st.outbox_len(&b.name)),
            dead_letters: store.as_ref().map_or(0, |st| st.dead_len(&b.name)),
        })
        .collect();
    (
        [("content-type", "text/plain; version=0.0.4")],
        crate::metrics::render(&gauges),
    )
}

/// Every running bridge with its schedule, state and recent polls. URLs are redacted and no
/// header, secret or interpolated value is included. One point read per bridge (its meta),
/// on a blocking thread; queue lengths come from the store's counters. While the store cannot
/// be read, the answer still comes, without what only the store knows (`seq`, `baselined`,
/// queue lengths are null) and with the reason under `problems`.
async fn bridges(State(s): State<AdminState>) -> Result<Json<body::Bridges>, ApiError> {
    let all = running(&s);
    let store = s.ctx.store.get().ok();
    let (st, names) = (
        store.clone(),
        all.iter().map(|b| b.name.clone()).collect::<Vec<_>>(),
    );
    let metas = tokio::task::spawn_blocking(move || {
        let st = st?;
        names
            .iter()
            .map(|n| st.meta(n))
            .collect::<Result<Vec<_>, _>>()
            .ok()
    })
    .await
    .map_err(internal)?;
    let list = all
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let meta = metas.as_ref().map(|m| &m[i]);
            let schedule = match &b.schedule {
                crate::schedule::Schedule::Every(d) => {
                    format!("every {}", humantime::format_duration(*d))
                }
                crate::schedule::Schedule::Cron(c) => format!("cron {}", c.expr),
            };
            body::BridgeView {
                name: b.name.clone(),
                description: b.description.clone(),
                file: b.file.clone(),
                schedule,
                // Every interpolated value masked wherever it stands in the URL; sinks by
                // origin only (docs/configuration.md#secrets).
                url: crate::redact::Redactor::new(&b.secrets).url(&b.source.url),
                sinks: b
                    .sinks
                    .iter()
                    .map(|k| body::SinkView {
                        id: k.id.to_string(),
                        url: k.shown.clone(),
                    })
                    .collect(),
                seq: meta.map(|m| m.seq),
                baselined: meta.map(|m| m.baselined),
                status: s.ctx.board.status(&b.name),
                outbox: store.as_ref().map(|st| st.outbox_len(&b.name)),
                dead_letters: store.as_ref().map(|st| st.dead_len(&b.name)),
                handoff: s.handoff.waiting(&b.name).map(|w| w.line()),
                shape: meta.and_then(crate::poll::shape::status),
            }
        })
        .collect();
    let problems = s.ctx.health();
    Ok(Json(body::Bridges {
        bridges: list,
        healthy: problems.is_empty(),
        problems,
    }))
}

#[derive(serde::Deserialize)]
struct PollQuery {
    #[serde(default)]
    commit: bool,
    /// A dry run that also shows the requests each sink would get.
    #[serde(default)]
    render: bool,
}

/// Polls now. Without `?commit=true` it is a dry run: the events it would emit, nothing stored.
/// 409 while a poll of the bridge is in flight (scheduled or asked for), 429 while its source's
/// pause lasts, 500 if the poll panicked.
async fn poll(
    State(s): State<AdminState>,
    Path(name): Path<String>,
    Query(q): Query<PollQuery>,
) -> Result<Json<body::Polled>, ApiError> {
    use crate::poll::scheduler::{NotNow, poll_now};
    let b = find_polled(&s, &name)?;
    if q.render && q.commit {
        return Err(api_error(
            StatusCode::BAD_REQUEST,
            "render is a dry run: it cannot be asked with commit",
        ));
    }
    let redactor = crate::redact::Redactor::new(&b.secrets);
    let r = match poll_now(&s.ctx, &b, q.commit).await {
        Err(e @ NotNow::InFlight(_)) => return Err(api_error(StatusCode::CONFLICT, e)),
        Err(e @ NotNow::Paused { .. }) => {
            return Err(api_error(StatusCode::TOO_MANY_REQUESTS, e));
        }
        Ok(r) => r,
    };
    let r = r.map_err(|e| {
        let status = match &e {
            crate::poll::PollError::Store(e) if e.is_failure() => StatusCode::SERVICE_UNAVAILABLE,
            crate::poll::PollError::Panicked(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_GATEWAY,
        };
        api_error(status, redactor.clean(&e.to_string()))
    })?;
    let how = if q.commit { "committed" } else { "a dry run" };
    let events = crate::logging::count(r.emitted.total(), "event", "events");
    tracing::info!(bridge = %name, commit = q.commit, events = r.emitted.total(), "poll {name} requested through the admin API: {events}, {how}");
    let events = r
        .events
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<_, _>>()
        .map_err(internal)?;
    Ok(Json(body::Polled {
        bridge: name,
        commit: q.commit,
        baseline: r.baseline,
        items: r.items,
        created: r.created,
        updated: r.updated,
        deleted: r.deleted,
        events_total: r.emitted.total(),
        events,
        requests: if q.render {
            crate::deliver::trial::plan(&b, &r.events, s.ctx.clock.now())
        } else {
            Vec::new()
        },
    }))
}

#[derive(serde::Deserialize)]
struct TestQuery {
    sink: Option<String>,
}

/// Sends one `bridge.test` event (seq 0, not stored) to each sink, or the one at `?sink=`,
/// and answers with what each said.
async fn send_test(
    State(s): State<AdminState>,
    Path(name): Path<String>,
    Query(q): Query<TestQuery>,
) -> Result<Json<body::TestSent>, ApiError> {
    let b = find(&s, &name)?;
    let now = s.ctx.clock.now();
    let answers =
        crate::deliver::trial::send_test(&s.ctx.clients.sender, &b, q.sink.as_deref(), now)
            .await
            .map_err(|e| api_error(StatusCode::NOT_FOUND, e))?;
    let sinks = crate::logging::count(answers.len(), "sink", "sinks");
    tracing::info!(bridge = %name, sinks = answers.len(), "test event of {name} sent through the admin API to {sinks}");
    Ok(Json(body::TestSent {
        bridge: name,
        answers,
    }))
}

async fn reset(
    State(s): State<AdminState>,
    Path(name): Path<String>,
) -> Result<Json<body::Reset>, ApiError> {
    let b = find_polled(&s, &name)?;
    let store = s.ctx.store.writable().map_err(store_error)?;
    let n = tokio::task::spawn_blocking(move || store.reset(&b.name))
        .await
        .map_err(internal)?;
    let n = s.ctx.store.check(n).map_err(store_error)?;
    let items = crate::logging::count(n, "item", "items");
    tracing::warn!(bridge = %name, items = n, "state of {name} reset through the admin API ({items} forgotten); the next poll re-baselines");
    Ok(Json(body::Reset {
        bridge: name,
        items_forgotten: n,
    }))
}

async fn resync(
    State(s): State<AdminState>,
    Path(name): Path<String>,
) -> Result<Json<body::Resynced>, ApiError> {
    let b = find_polled(&s, &name)?;
    let n = crate::resync::resync_with((&s.ctx.store, &s.ctx.wakers), &b, s.ctx.clock.now())
        .await
        .map_err(store_error)?;
    let items = crate::logging::count(n, "item", "items");
    tracing::info!(bridge = %name, items = n, "resync of {name}: {items} queued as item.snapshot");
    Ok(Json(body::Resynced {
        bridge: name,
        queued: n,
    }))
}

/// The public id of a dead letter: `<event id>.<sink id>` (one event can die for several
/// sinks). A bare event id names all of its dead letters.
fn letter_id(l: &DeadLetter) -> String {
    format!("{}.{}", l.entry.event_id, l.sink)
}

fn matches(l: &DeadLetter, id: &str) -> bool {
    letter_id(l) == id || l.entry.event_id == id
}

#[derive(serde::Deserialize)]
struct BridgeFilter {
    bridge: Option<String>,
}

type ApiError = (StatusCode, Json<body::Failure>);

fn api_error(status: StatusCode, msg: impl std::fmt::Display) -> ApiError {
    (
        status,
        Json(body::Failure {
            error: msg.to_string(),
        }),
    )
}

async fn dead_letters(
    State(s): State<AdminState>,
    Query(f): Query<BridgeFilter>,
) -> Result<Json<body::DeadLetters>, ApiError> {
    let store = s.ctx.store.get().map_err(store_error)?;
    let all = tokio::task::spawn_blocking(move || store.dead_letters())
        .await
        .map_err(internal)?
        .map_err(store_error)?;
    let list = all
        .iter()
        .filter(|(_, l)| f.bridge.as_deref().is_none_or(|b| b == l.bridge))
        .map(|(_, l)| body::LetterView {
            id: letter_id(l),
            bridge: l.bridge.clone(),
            sink: l.sink.clone(),
            event_id: l.entry.event_id.clone(),
            kind: l.entry.kind,
            seq: l.entry.seq,
            attempts: l.entry.attempts,
            last_error: l.entry.last_error.clone(),
            dead_at_ms: l.dead_at_ms,
        })
        .collect();
    Ok(Json(body::DeadLetters { dead_letters: list }))
}

/// Applies `op` to every dead letter `id` names; 404 when it names none.
fn each_letter(
    s: &AdminState,
    id: &str,
    op: impl Fn(&crate::store::Store, &[u8]) -> Result<bool, crate::store::StoreError>,
) -> Result<Vec<DeadLetter>, ApiError> {
    let store = s.ctx.store.writable().map_err(store_error)?;
    let all = store.dead_letters().map_err(store_error)?;
    let mut done = Vec::new();
    for (key, l) in all.into_iter().filter(|(_, l)| matches(l, id)) {
        if s.ctx.store.check(op(&store, &key)).map_err(store_error)? {
            done.push(l);
        }
    }
    if done.is_empty() {
        return Err(api_error(
            StatusCode::NOT_FOUND,
            format!("no dead letter `{id}`"),
        ));
    }
    Ok(done)
}

async fn replay(
    State(s): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Json<body::Replayed>, ApiError> {
    let done = each_letter(&s, &id, |st, k| Ok(st.replay(k)?.is_some()))?;
    for l in &done {
        tracing::info!(bridge = %l.bridge, event_id = %l.entry.event_id, sink = %l.sink, "dead letter replayed: {} event {} to sink {}", l.bridge, l.entry.event_id, l.sink);
        s.ctx.wakers.wake(&l.bridge);
    }
    Ok(Json(body::Replayed {
        replayed: done.iter().map(letter_id).collect(),
    }))
}

async fn drop_letter(
    State(s): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Json<body::Dropped>, ApiError> {
    let done = each_letter(&s, &id, |st, k| st.drop_dead(k))?;
    for l in &done {
        tracing::info!(bridge = %l.bridge, event_id = %l.entry.event_id, sink = %l.sink, "dead letter dropped: {} event {} to sink {}", l.bridge, l.entry.event_id, l.sink);
    }
    Ok(Json(body::Dropped {
        dropped: done.iter().map(letter_id).collect(),
    }))
}

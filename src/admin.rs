//! The admin API (SPEC §9), loopback by default.

use crate::config::Bridge;
use crate::runtime::Ctx;
use crate::store::DeadLetter;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use std::sync::Arc;

#[derive(Clone)]
pub struct AdminState {
    pub ctx: Arc<Ctx>,
    /// The running set; replaced on reload.
    pub bridges: Arc<std::sync::RwLock<Vec<Arc<Bridge>>>>,
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/v1/bridges", get(bridges))
        .route("/v1/dead-letters", get(dead_letters))
        .route("/v1/dead-letters/{id}/replay", post(replay))
        .route("/v1/dead-letters/{id}", delete(drop_letter))
        .with_state(state)
}

async fn bridges(State(s): State<AdminState>) -> Json<Value> {
    let bridges = s.bridges.read().expect("bridges lock").clone();
    let list: Vec<Value> = bridges
        .iter()
        .map(|b| {
            let meta = s.ctx.store.meta(&b.name).unwrap_or_default();
            json!({
                "name": b.name,
                "description": b.description,
                "file": b.file,
                "url": crate::redact::url(&b.source.url),
                "sinks": b.sinks.iter().map(|k| k.target.to_string()).collect::<Vec<_>>(),
                "seq": meta.seq,
                "baselined": meta.baselined,
                "outbox": s.ctx.store.outbox_len(&b.name),
                "dead_letters": s.ctx.store.dead_len(&b.name),
            })
        })
        .collect();
    Json(json!({ "bridges": list }))
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

type ApiError = (StatusCode, Json<Value>);

fn api_error(status: StatusCode, msg: impl std::fmt::Display) -> ApiError {
    (status, Json(json!({ "error": msg.to_string() })))
}

async fn dead_letters(
    State(s): State<AdminState>,
    Query(f): Query<BridgeFilter>,
) -> Result<Json<Value>, ApiError> {
    let all = s
        .ctx
        .store
        .dead_letters()
        .map_err(|e| api_error(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    let list: Vec<Value> = all
        .iter()
        .filter(|(_, l)| f.bridge.as_deref().is_none_or(|b| b == l.bridge))
        .map(|(_, l)| {
            json!({
                "id": letter_id(l),
                "bridge": l.bridge,
                "sink": l.sink,
                "event_id": l.entry.event_id,
                "type": l.entry.kind,
                "seq": l.entry.seq,
                "attempts": l.entry.attempts,
                "last_error": l.entry.last_error,
                "dead_at_ms": l.dead_at_ms,
            })
        })
        .collect();
    Ok(Json(json!({ "dead_letters": list })))
}

/// Applies `op` to every dead letter `id` names; 404 when it names none.
fn each_letter(
    s: &AdminState,
    id: &str,
    op: impl Fn(&crate::store::Store, &[u8]) -> Result<bool, crate::store::StoreError>,
) -> Result<Vec<DeadLetter>, ApiError> {
    let all = s
        .ctx
        .store
        .dead_letters()
        .map_err(|e| api_error(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    let mut done = Vec::new();
    for (key, l) in all.into_iter().filter(|(_, l)| matches(l, id)) {
        if op(&s.ctx.store, &key).map_err(|e| api_error(StatusCode::INTERNAL_SERVER_ERROR, e))? {
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
) -> Result<Json<Value>, ApiError> {
    let done = each_letter(&s, &id, |st, k| Ok(st.replay(k)?.is_some()))?;
    for l in &done {
        tracing::info!(bridge = %l.bridge, event_id = %l.entry.event_id, sink = %l.sink, "dead letter replayed");
        s.ctx.wake(&l.bridge);
    }
    Ok(Json(
        json!({ "replayed": done.iter().map(letter_id).collect::<Vec<_>>() }),
    ))
}

async fn drop_letter(
    State(s): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let done = each_letter(&s, &id, |st, k| st.drop_dead(k))?;
    for l in &done {
        tracing::info!(bridge = %l.bridge, event_id = %l.entry.event_id, sink = %l.sink, "dead letter dropped");
    }
    Ok(Json(
        json!({ "dropped": done.iter().map(letter_id).collect::<Vec<_>>() }),
    ))
}

//! The giving side of a handoff, and its skip (docs/scaling.md#handoff), for acting requests
//! only: `POST /v1/handoff/{name}` answers with the state document of a bridge this shard
//! holds and does not own (and stops it here for good), `DELETE /v1/handoff/{name}` is the
//! new owner's acknowledgement (the copy here is forgotten), `POST /v1/handoff/{name}/skip`
//! gives up waiting for a bridge's state. Documents hold secrets: never logged.

use super::{AdminState, ApiError, api_error, store_error};
use crate::handoff::Document;
use crate::store::Forgotten;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::http::header::RETRY_AFTER;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, post};
use axum::{Json, Router};

pub fn routes() -> Router<AdminState> {
    let give: MethodRouter<AdminState> = post(give).delete(forget);
    Router::new()
        .route("/v1/handoff/{name}", give)
        .route("/v1/handoff/{name}/skip", post(skip))
}

#[derive(serde::Deserialize)]
struct Asker {
    /// The index of the shard that asks.
    to: Option<u64>,
}

/// 409 while this shard owns `name` under its own layout.
fn not_owned(s: &AdminState, name: &str) -> Result<(), ApiError> {
    let now = s.handoff.placement();
    if now.owner(name) == now.index {
        return Err(api_error(
            StatusCode::CONFLICT,
            format!(
                "shard {}/{} owns bridge `{name}` under its own layout, and keeps polling it",
                now.index, now.shards
            ),
        ));
    }
    Ok(())
}

/// `r`, the store marked failed when it says the database takes no writes.
fn checked<T>(s: &AdminState, r: Result<T, crate::store::StoreError>) -> Result<T, ApiError> {
    s.ctx.store.check(r).map_err(store_error)
}

/// `POST /v1/handoff/{name}`: the state document; 404 when there is no state here.
async fn give(
    State(s): State<AdminState>,
    Path(name): Path<String>,
    Query(q): Query<Asker>,
) -> Result<Response, ApiError> {
    if let Err(e) = not_owned(&s, &name) {
        // The asker comes back after this many seconds: the layout changes at a restart.
        return Ok(([(RETRY_AFTER, "1")], e).into_response());
    }
    let _turn = s.handoff.turn(&name).await;
    let store = s.ctx.store.writable().map_err(store_error)?;
    let (shared, bridge, st) = (s.handoff.clone(), name.clone(), store.clone());
    // This shard never runs a bridge it does not own (the running set is the owned one), so
    // there is nothing to stop: once given it is recorded, and not polled here again unless
    // it comes back by a handoff.
    let to = q.to.unwrap_or_else(|| shared.placement().owner(&name));
    let line = crate::runtime::blocking(
        move || -> Result<Option<String>, crate::store::StoreError> {
            let Some(state) = st.export_bridge(&bridge)? else {
                return Ok(None);
            };
            let given = |r: &mut crate::shard::layout::Record| {
                r.given.insert(bridge.clone(), to);
            };
            shared.save_with(given, |l| st.put_layout_record_unflushed(l))?;
            Ok(Some(Document { bridge, state }.to_line()))
        },
    )
    .await;
    let line = checked(&s, line)?.ok_or_else(|| {
        api_error(
            StatusCode::NOT_FOUND,
            format!("no state of bridge `{name}` here"),
        )
    })?;
    // The record that says it is given is on disk before the document leaves; gives at the
    // same time share one flush.
    checked(&s, store.flush().await)?;
    tracing::info!(bridge = %name, to, "bridge {name}: state given to shard {to} (kept here until it acknowledges)");
    Ok(([("content-type", "application/json")], line).into_response())
}

/// `DELETE /v1/handoff/{name}`: the acknowledgement; the copy here is forgotten. Repeated, a
/// no-op. Like every acting request it runs to its end even when the asker hangs up (see
/// [`super::carried`]).
async fn forget(
    State(s): State<AdminState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    not_owned(&s, &name)?;
    let _turn = s.handoff.turn(&name).await;
    let store = s.ctx.store.writable().map_err(store_error)?;
    let (shared, bridge, st) = (s.handoff.clone(), name.clone(), store.clone());
    let done = crate::runtime::blocking(
        move || -> Result<Result<Option<Forgotten>, String>, crate::store::StoreError> {
            if !shared.record().given.contains_key(&bridge) {
                return Ok(match st.has_state(&bridge)? {
                    // Never given: not to be forgotten on anyone's word.
                    true => Err(format!(
                        "bridge `{bridge}` has state here that was not handed off: not forgotten"
                    )),
                    false => Ok(None),
                });
            }
            // The copy and its place in `given` go in one transaction.
            let given = |r: &mut crate::shard::layout::Record| {
                r.given.remove(&bridge);
            };
            let f = shared.save_with(given, |layout| st.forget_unflushed(&bridge, Some(layout)))?;
            Ok(Ok(Some(f)))
        },
    )
    .await;
    let forgotten = match checked(&s, done)? {
        Ok(f) => f,
        Err(why) => return Err(api_error(StatusCode::CONFLICT, why)),
    };
    // On disk before the answer, with the forgets of other bridges at the same time in one
    // flush (a repeated acknowledgement too waits for the flush of the first).
    let Some(f) = forgotten else {
        checked(&s, store.flush().await)?;
        // Nothing of it here: not outgoing either.
        s.handoff.forgotten(&name);
        return Ok(StatusCode::NO_CONTENT);
    };
    checked(&s, store.forgotten_durable(f).await)?;
    s.handoff.forgotten(&name);
    tracing::info!(bridge = %name, "bridge {name}: handoff acknowledged; its state here is forgotten");
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/handoff/{name}/skip`: gives up on the old state; the bridge baselines.
async fn skip(
    State(s): State<AdminState>,
    Path(name): Path<String>,
) -> Result<Json<crate::admin::body::Skipped>, ApiError> {
    if !s.handoff.skip(&name) {
        return Err(api_error(
            StatusCode::NOT_FOUND,
            format!("bridge `{name}` does not wait for a handoff here"),
        ));
    }
    Ok(Json(crate::admin::body::Skipped { bridge: name }))
}

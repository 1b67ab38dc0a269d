//! `POST /v1/bridges/{name}/accept-shape` (docs/operations.md#admin-api): the drifted shape
//! of a bridge's items becomes the learnt one, and a poll held by `emit.shape: hold` goes on
//! as usual from its next poll (docs/testing-bridges.md#shape-drift). An acting request.

use super::{AdminState, ApiError, api_error, body, find_polled, internal, store_error};
use crate::poll::shape::{AcceptError, accept};
use crate::store::StoreError;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};

pub fn routes() -> Router<AdminState> {
    Router::new().route("/v1/bridges/{name}/accept-shape", post(accept_shape))
}

/// 409 when the bridge has no drift to accept (or a poll stored one meanwhile).
async fn accept_shape(
    State(s): State<AdminState>,
    Path(name): Path<String>,
) -> Result<Json<body::ShapeAccepted>, ApiError> {
    let b = find_polled(&s, &name)?;
    let store = s.ctx.store.writable().map_err(store_error)?;
    let done = tokio::task::spawn_blocking(move || accept(&store, &b.name))
        .await
        .map_err(internal)?;
    let changes = match done {
        Ok(c) => c,
        Err(e @ AcceptError::NoDrift(_)) => return Err(api_error(StatusCode::CONFLICT, e)),
        Err(AcceptError::Store(e @ StoreError::Conflict(_))) => {
            return Err(api_error(StatusCode::CONFLICT, e));
        }
        Err(AcceptError::Store(e)) => {
            s.ctx.store.failed(&e);
            return Err(store_error(e));
        }
    };
    let what = crate::shape::lines(&changes);
    tracing::info!(bridge = %name, "shape of {name} accepted through the admin API: {what}; the next poll goes on as usual");
    Ok(Json(body::ShapeAccepted {
        bridge: name,
        changes: changes.iter().map(crate::shape::Change::line).collect(),
    }))
}

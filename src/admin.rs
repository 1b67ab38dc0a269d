//! The admin API (SPEC §9), loopback by default.

use crate::config::Bridge;
use crate::runtime::Ctx;
use axum::extract::State;
use axum::routing::get;
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

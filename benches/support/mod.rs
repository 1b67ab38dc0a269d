//! What the benchmarks share: local servers, the upstream and receiver of the benches that
//! run the daemon (`listing`), the sink every bench bridge posts to, bridges
//! parsed as the daemon parses them, and the deliverer loops. Each bench uses its own part.
#![allow(dead_code)]

pub mod listing;

use axum::Router;
use pollhook::config::{Bridge, Env, parse_file};
use pollhook::runtime::Ctx;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The Standard Webhooks secret of every bench sink.
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Serves `app` on 127.0.0.1 (a free port) in the background; its base URL.
pub async fn serve(app: Router) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    format!("http://{addr}")
}

/// The `sinks:` line of a bridge that posts signed events to `{rx}/hook`.
pub fn sinks(rx: &str) -> String {
    format!("sinks: [{{url: \"{rx}/hook\", secret: {SECRET}}}]")
}

/// A bridge from its YAML, as the daemon reads it (no environment).
pub fn bridge(yaml: &str) -> Arc<Bridge> {
    let env = Env::fixed(&[], None);
    Arc::new(parse_file(std::path::Path::new("bench.yaml"), yaml, &env).unwrap())
}

/// The real deliverer loop of each bridge's first sink, until `stop`.
pub fn spawn_deliverers(ctx: &Arc<Ctx>, bridges: &[Arc<Bridge>], stop: &CancellationToken) {
    let windows = Arc::default();
    for b in bridges {
        tokio::spawn(pollhook::deliver::run_sink(
            ctx.clone(),
            Arc::clone(&windows),
            b.clone(),
            0,
            stop.clone(),
        ));
    }
}

/// The value at fraction `p` of a sorted list (the default of an empty one).
pub fn percentile<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

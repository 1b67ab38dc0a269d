//! Prometheus metrics (`/metrics`, docs/operations.md#metrics): counters and histograms recorded
//! where things happen, gauges (outbox depth, dead letters) set from the store's counters when
//! scraped.
//!
//! Thousands of bridges share one scrape, so per-bridge series are counters and gauges only;
//! the histograms (poll duration, delivery latency) have no `bridge` label.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide recorder, installed on first use.
#[expect(clippy::expect_used, reason = "the buckets are a constant, not empty")]
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let seconds = [
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
        ];
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &seconds)
            .expect("buckets are not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder is installed (tests may build several daemons).
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Folds the histograms' raw samples into their buckets, which the exporter otherwise does only
/// when scraped: without this an unscraped daemon's memory would grow with every poll.
pub async fn upkeep(stop: tokio_util::sync::CancellationToken) {
    let handle = handle();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => handle.run_upkeep(),
        }
    }
}

/// One poll: counted by result for all bridges, and per bridge only when it failed (an idle
/// fleet of 10k bridges would otherwise add a line per bridge and result to every scrape).
pub fn poll(bridge: &str, result: &'static str, failed: bool, duration: Duration) {
    metrics::counter!("pollhook_polls_total", "result" => result).increment(1);
    if failed {
        metrics::counter!("pollhook_poll_failures_total", "bridge" => bridge.to_string(), "reason" => result)
            .increment(1);
    }
    metrics::histogram!("pollhook_poll_duration_seconds").record(duration.as_secs_f64());
}

pub fn events(bridge: &str, kind: &'static str, n: usize) {
    if n > 0 {
        metrics::counter!("pollhook_events_total", "bridge" => bridge.to_string(), "type" => kind)
            .increment(n as u64);
    }
}

/// The bridges waiting for a handoff (docs/scaling.md#while-waiting).
pub fn handoff_waiting(n: usize) {
    metrics::gauge!("pollhook_handoff_waiting").set(n as f64);
}

/// The memory budget of polls (docs/scaling.md#the-memory-budget-of-polls): what polls in flight hold, how many
/// wait for their share, and the budget.
pub fn poll_memory(budget: &crate::runtime::MemoryBudget) {
    metrics::gauge!("pollhook_poll_memory_bytes").set(budget.in_use() as f64);
    metrics::gauge!("pollhook_poll_memory_waiting").set(budget.waiting() as f64);
    metrics::gauge!("pollhook_poll_memory_budget_bytes").set(budget.bytes() as f64);
}

/// `result`: `delivered`, `retry` or `dead_letter`.
pub fn delivery(bridge: &str, result: &'static str) {
    metrics::counter!("pollhook_deliveries_total", "bridge" => bridge.to_string(), "result" => result).increment(1);
}

/// `when` rules that failed at run time (and so counted as true); `rule`: `emit` or `sink`.
pub fn rule_errors(bridge: &str, rule: &'static str, n: usize) {
    if n > 0 {
        metrics::counter!("pollhook_rule_errors_total", "bridge" => bridge.to_string(), "rule" => rule)
            .increment(n as u64);
    }
}

/// From commit to the 2xx that acknowledged it.
pub fn delivery_latency(latency: Duration) {
    metrics::histogram!("pollhook_delivery_latency_seconds").record(latency.as_secs_f64());
}

pub fn rate_limit_pause(bridge: &str) {
    metrics::counter!("pollhook_rate_limit_pauses_total", "bridge" => bridge.to_string())
        .increment(1);
}

/// One of a bridge's tasks ended on its own (a panic) and is started again.
pub fn task_restart(bridge: &str, task: &'static str) {
    metrics::counter!("pollhook_task_restarts_total", "bridge" => bridge.to_string(), "task" => task)
        .increment(1);
}

/// One running bridge's gauges at a scrape, read where they are kept (its status, the store's
/// counters) rather than recorded at every poll: a bridge adds no series to the recorder.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges<'a> {
    pub bridge: &'a str,
    /// Items in its last successful listing; None before one.
    pub items: Option<usize>,
    /// Events waiting for delivery.
    pub outbox: usize,
    pub dead_letters: usize,
}

/// The scrape: everything recorded, then each bridge's `pollhook_items` (once it has listed),
/// and the queue gauges, written only where not zero (an idle fleet of 10k bridges would
/// otherwise repeat 20k zero lines each scrape); the queue totals without a label are always
/// there.
pub fn render(bridges: &[Gauges<'_>]) -> String {
    use std::fmt::Write as _;
    let mut out = handle().render();
    let _ = writeln!(
        out,
        "# HELP pollhook_items Items in the last successful listing, per bridge\n# TYPE pollhook_items gauge"
    );
    for (b, n) in bridges.iter().filter_map(|b| Some((b.bridge, b.items?))) {
        let _ = writeln!(out, "pollhook_items{{bridge=\"{b}\"}} {n}");
    }
    for (name, help, pick) in [
        (
            "pollhook_outbox_depth",
            "Events waiting for delivery, per bridge (absent: none)",
            (|g: &Gauges<'_>| g.outbox) as fn(&Gauges<'_>) -> usize,
        ),
        (
            "pollhook_dead_letters",
            "Dead letters, per bridge (absent: none)",
            |g| g.dead_letters,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        let mut total = 0;
        for g in bridges.iter().filter(|g| pick(g) > 0) {
            total += pick(g);
            let _ = writeln!(out, "{name}{{bridge=\"{}\"}} {}", g.bridge, pick(g));
        }
        let _ = writeln!(out, "# TYPE {name}_all gauge\n{name}_all {total}");
    }
    out
}

/// One attempt to open the state database again after it failed.
pub fn store_reopen() {
    metrics::counter!("pollhook_store_reopen_attempts_total").increment(1);
}

/// 1 while the state database takes writes, 0 while it does not.
pub fn store_ok(ok: bool) {
    metrics::gauge!("pollhook_store_writable").set(if ok { 1.0 } else { 0.0 });
}

/// A connection the admin API closed or turned away. `listener`: `tcp` or `socket`; `reason`:
/// `cap` (the listener's limit of connections), `timeout` (no request head in time, or quiet
/// as long) or `uid` (another user on the socket).
pub fn admin_closed(listener: &'static str, reason: &'static str) {
    metrics::counter!("pollhook_admin_connections_closed_total", "listener" => listener, "reason" => reason)
        .increment(1);
}

/// Accepting a connection failed (out of file descriptors, most likely).
pub fn admin_accept_error(listener: &'static str) {
    metrics::counter!("pollhook_admin_accept_errors_total", "listener" => listener).increment(1);
}

/// The admin API's open connections on one listener.
pub fn admin_connections(listener: &'static str, n: usize) {
    metrics::gauge!("pollhook_admin_connections", "listener" => listener).set(n as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_bridge_series_are_failures_and_non_zero_queues_only() {
        handle();
        let d = Duration::from_millis(20);
        poll("metrics-ok", "ok", false, d);
        poll("metrics-bad", "http_status", true, d);
        poll("metrics-bad", "http_status", true, d);
        let ok = Gauges {
            bridge: "metrics-ok",
            ..Default::default()
        };
        let bad = Gauges {
            bridge: "metrics-bad",
            items: Some(7),
            outbox: 3,
            dead_letters: 1,
        };
        let text = render(&[ok, bad]);
        assert!(
            text.contains(
                "pollhook_poll_failures_total{bridge=\"metrics-bad\",reason=\"http_status\"} 2"
            ),
            "{text}"
        );
        assert!(!text.contains("bridge=\"metrics-ok\""), "{text}");
        assert!(
            text.contains("pollhook_outbox_depth{bridge=\"metrics-bad\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("pollhook_dead_letters{bridge=\"metrics-bad\"} 1"),
            "{text}"
        );
        assert!(text.contains("pollhook_outbox_depth_all 3"), "{text}");
        // Items once a bridge has listed them, from its status: none before.
        assert!(
            text.contains("pollhook_items{bridge=\"metrics-bad\"} 7"),
            "{text}"
        );
        assert!(
            !text.contains("pollhook_poll_duration_seconds_bucket{bridge"),
            "{text}"
        );
    }
}

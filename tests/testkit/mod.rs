//! What the library's unit tests and the integration tests (`tests/it`) share: one builder of
//! bridge files, and one way to wait for a condition. It is compiled into both (the library
//! takes it with `#[path]` under `cfg(test)`), so it names no path of the crate, only std and
//! external crates: a test turns the YAML it builds into a bridge with the crate's own loader.

use std::fmt::Write as _;
use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

/// A generous deadline for a condition a busy machine reaches in well under a second.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The secret `BridgeYaml::signed_sink` signs with.
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// How often a condition is looked at again.
const EVERY: Duration = Duration::from_millis(20);

/// What one look at a condition found: the value waited for, or not yet.
pub trait Settled {
    type Value;
    /// The value, or (when not yet) what was seen instead, if the probe says, for the message
    /// should the deadline pass.
    fn settled(self) -> Result<Self::Value, Option<String>>;
}

impl Settled for bool {
    type Value = ();
    fn settled(self) -> Result<(), Option<String>> {
        if self { Ok(()) } else { Err(None) }
    }
}

impl<T> Settled for Option<T> {
    type Value = T;
    fn settled(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

/// `Err` carries what was seen instead (the last one is shown if the deadline passes).
impl<T> Settled for Result<T, String> {
    type Value = T;
    fn settled(self) -> Result<T, Option<String>> {
        self.map_err(Some)
    }
}

/// Looks at `probe` every 20 ms until it settles (`true`, `Some(value)`, `Ok(value)`) and
/// returns what it settled on; panics naming `what` (and what was last seen, when the probe
/// said) once `deadline` has passed. The deadline is wall-clock time, so a test on tokio's
/// paused clock still ends.
pub async fn eventually<S, Fut, F>(deadline: Duration, what: &str, mut probe: F) -> S::Value
where
    S: Settled,
    Fut: Future<Output = S>,
    F: FnMut() -> Fut,
{
    let start = Instant::now();
    loop {
        let seen = match probe().await.settled() {
            Ok(value) => return value,
            Err(seen) => seen,
        };
        if start.elapsed() > deadline {
            match seen {
                Some(seen) => {
                    panic!("timed out after {deadline:?} waiting for {what}; seen: {seen}")
                }
                None => panic!("timed out after {deadline:?} waiting for {what}"),
            }
        }
        tokio::time::sleep(EVERY).await;
    }
}

/// [`eventually`] with [`PATIENCE`], for a condition looked at without waiting.
pub async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    eventually(PATIENCE, what, || std::future::ready(cond())).await
}

/// Yields until `cond` holds, without letting tokio's paused time move: the runtime is never
/// idle, so it does not jump to the next timer while a step talks to a server on loopback.
#[allow(
    dead_code,
    reason = "the library's paused-time tests use it, tests/it does not"
)]
pub async fn without_time_passing(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..1_000_000 {
        if cond() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("{what}: not within a million yields");
}

/// A source on 127.0.0.1 that answers `[{"id": 1}]` at `/items` and counts the requests it
/// answers: its URL and the count. Served until the runtime ends.
#[allow(
    dead_code,
    reason = "the library's scheduler and fleet tests use it, tests/it does not"
)]
pub async fn counting_source() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let hits = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let app = axum::Router::new().route(
        "/items",
        axum::routing::get(move || async move {
            counted.fetch_add(1, Ordering::SeqCst);
            axum::Json(serde_json::json!([{"id": 1}]))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port on 127.0.0.1");
    let url = format!(
        "http://{}/items",
        listener.local_addr().expect("the bound address")
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, hits)
}

/// A valid bridge file, built from what a test varies; `new` is `$.items[*]` keyed by `$.id`,
/// every minute, and no sink. Tests that need a deliberately odd file write its text as is.
#[derive(Clone)]
pub struct BridgeYaml {
    schedule: String,
    url: String,
    source: Vec<String>,
    headers: Vec<String>,
    paginate: Vec<String>,
    items: Vec<String>,
    emit: Vec<String>,
    deletes: Vec<String>,
    failures: Vec<String>,
    sinks: Vec<Vec<String>>,
}

impl BridgeYaml {
    pub fn new(url: &str) -> BridgeYaml {
        BridgeYaml {
            schedule: "every: 1m".into(),
            url: url.into(),
            source: vec![],
            headers: vec![],
            paginate: vec![],
            items: vec!["select: \"$.items[*]\"".into(), "key: \"$.id\"".into()],
            emit: vec![],
            deletes: vec![],
            failures: vec![],
            sinks: vec![],
        }
    }

    /// The bridge most tests use: a 2 s timeout, deletes never held back by their share, and
    /// one sink signed with [`SECRET`] retrying after 1 s and 2 s.
    pub fn standard(url: &str, sink: &str) -> BridgeYaml {
        BridgeYaml::new(url)
            .timeout("2s")
            .max_fraction("1.0")
            .signed_sink(sink)
            .retry("[1s, 2s]")
    }

    /// A crontab schedule (five fields) instead of `every`.
    pub fn cron(mut self, expr: &str) -> Self {
        self.schedule = format!("cron: \"{expr}\"");
        self
    }

    pub fn every(mut self, every: &str) -> Self {
        self.schedule = format!("every: {every}");
        self
    }

    pub fn timeout(mut self, timeout: &str) -> Self {
        self.source.retain(|l| !l.starts_with("timeout:"));
        self.source(&format!("timeout: {timeout}"))
    }

    /// Any other line of `source:` (`max_body: 1000`, `method: POST`).
    pub fn source(mut self, line: &str) -> Self {
        self.source.push(line.into());
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push(format!("{name}: {value}"));
        self
    }

    /// `paginate.next` as written (`link`, `{url: "$.next"}`).
    pub fn next(self, next: &str) -> Self {
        self.paginate(&format!("next: {next}"))
    }

    /// Any line of `paginate:` (`max_pages: 2`).
    pub fn paginate(mut self, line: &str) -> Self {
        self.paginate.push(line.into());
        self
    }

    pub fn select(mut self, select: &str) -> Self {
        self.items[0] = format!("select: \"{select}\"");
        self
    }

    pub fn key(mut self, key: &str) -> Self {
        self.items[1] = format!("key: \"{key}\"");
        self
    }

    /// Document mode: the one item at `select`, with no key.
    pub fn document(mut self, select: &str) -> Self {
        self.items = vec![format!("select: \"{select}\"")];
        self
    }

    /// No `items:` at all (a feed's select and key have defaults); `items` adds lines again.
    pub fn without_items(mut self) -> Self {
        self.items.clear();
        self
    }

    /// Any other line of `items:` (`include: ["$.a"]`).
    pub fn items(mut self, line: &str) -> Self {
        self.items.push(line.into());
        self
    }

    pub fn first_poll(self, what: &str) -> Self {
        self.emit(&format!("first_poll: {what}"))
    }

    /// Any other line of `emit:` (`events: [created]`).
    pub fn emit(mut self, line: &str) -> Self {
        self.emit.push(line.into());
        self
    }

    pub fn max_fraction(mut self, f: &str) -> Self {
        self.deletes.retain(|l| !l.starts_with("max_fraction:"));
        self.deletes.push(format!("max_fraction: {f}"));
        self
    }

    pub fn after_missing(mut self, n: u32) -> Self {
        self.deletes.push(format!("after_missing: {n}"));
        self
    }

    /// `emit.failures.after`: failed polls in a row before a `bridge.failing` event.
    pub fn failures_after(mut self, n: u32) -> Self {
        self.failures = vec![format!("after: {n}")];
        self
    }

    /// A sink with no secret (`console`, or one that signs with `signature: none`).
    pub fn sink(mut self, url: &str) -> Self {
        self.sinks.push(vec![format!("url: {url}")]);
        self
    }

    /// A sink signed with [`SECRET`].
    pub fn signed_sink(self, url: &str) -> Self {
        self.sink(url).sink_line(&format!("secret: {SECRET}"))
    }

    /// The last sink's retry schedule, as written (`[1s, 2s]`).
    pub fn retry(self, steps: &str) -> Self {
        self.sink_line(&format!("retry: {steps}"))
    }

    /// Any other line of the last sink (`signature: none`).
    pub fn sink_line(mut self, line: &str) -> Self {
        self.sinks
            .last_mut()
            .expect("a sink to add to")
            .push(line.into());
        self
    }

    pub fn build(&self) -> String {
        let mut y = self.head();
        y.push_str(if self.sinks.is_empty() {
            "sinks: []\n"
        } else {
            "sinks:\n"
        });
        for sink in &self.sinks {
            for (i, line) in sink.iter().enumerate() {
                y.push_str(if i == 0 { "  - " } else { "    " });
                y.push_str(line);
                y.push('\n');
            }
        }
        y
    }

    /// The file with `sinks:` as written (`  - url: ...` items), for tests that vary sinks
    /// beyond what the builder says.
    pub fn with_sinks(&self, sinks: &str) -> String {
        format!("{}sinks:\n{sinks}", self.head())
    }

    /// Everything above `sinks:`.
    fn head(&self) -> String {
        let mut y = format!(
            "schedule:\n  {}\nsource:\n  url: \"{}\"\n",
            self.schedule, self.url
        );
        section(&mut y, "  ", "", &self.source);
        section(&mut y, "  ", "headers:", &self.headers);
        section(&mut y, "  ", "paginate:", &self.paginate);
        section(&mut y, "", "items:", &self.items);
        if !self.emit.is_empty() || !self.deletes.is_empty() || !self.failures.is_empty() {
            y.push_str("emit:\n");
            section(&mut y, "  ", "", &self.emit);
            section(&mut y, "  ", "deletes:", &self.deletes);
            section(&mut y, "  ", "failures:", &self.failures);
        }
        y
    }

    /// Writes the file as `DIR/bridges/NAME.yaml`, the layout the daemon is pointed at.
    pub fn write(&self, dir: &Path, name: &str) {
        std::fs::create_dir_all(dir.join("bridges")).unwrap();
        std::fs::write(dir.join(format!("bridges/{name}.yaml")), self.build()).unwrap();
    }
}

/// `lines` under `head` (none: at the level of `indent`), each one level deeper.
fn section(y: &mut String, indent: &str, head: &str, lines: &[String]) {
    if lines.is_empty() {
        return;
    }
    let inner = if head.is_empty() {
        indent.to_string()
    } else {
        let _ = writeln!(y, "{indent}{head}");
        format!("{indent}  ")
    };
    for l in lines {
        let _ = writeln!(y, "{inner}{l}");
    }
}

/// Compiled into both test binaries, so run in each: they take well under a second.
#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn eventually_returns_what_the_probe_settled_on() {
        let mut looks = 0;
        let found = eventually(PATIENCE, "the third look", || {
            looks += 1;
            std::future::ready((looks == 3).then_some(looks * 10))
        })
        .await;
        assert_eq!((found, looks), (30, 3));
        until("a condition that holds", || true).await;
    }

    #[tokio::test]
    #[should_panic(expected = "waiting for the answer; seen: 41")]
    async fn eventually_names_what_it_waited_for_and_what_it_saw() {
        let deadline = Duration::from_millis(100);
        eventually(deadline, "the answer", || async {
            Err::<(), _>("41".to_string())
        })
        .await;
    }

    #[test]
    fn the_builder_writes_a_bridge_file() {
        let yaml = BridgeYaml::new("http://h/items")
            .every("5m")
            .timeout("1s")
            .timeout("2s")
            .header("X-A", "b")
            .next("link")
            .key("$.n")
            .items("include: [\"$.a\"]")
            .first_poll("emit")
            .max_fraction("0.5")
            .max_fraction("1.0")
            .failures_after(2)
            .sink("console")
            .signed_sink("http://r/hook")
            .retry("[1s]");
        assert_eq!(
            yaml.build(),
            format!(
                "schedule:\n  every: 5m\nsource:\n  url: \"http://h/items\"\n  timeout: 2s\n  \
                 headers:\n    X-A: b\n  paginate:\n    next: link\nitems:\n  select: \
                 \"$.items[*]\"\n  key: \"$.n\"\n  include: [\"$.a\"]\nemit:\n  first_poll: \
                 emit\n  deletes:\n    max_fraction: 1.0\n  failures:\n    after: 2\nsinks:\n  \
                 - url: console\n  - url: http://r/hook\n    secret: {SECRET}\n    retry: [1s]\n"
            )
        );
        assert_eq!(
            BridgeYaml::new("u").build().lines().last(),
            Some("sinks: []")
        );
    }
}

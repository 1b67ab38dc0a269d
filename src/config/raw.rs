//! The YAML as written: a serde mirror of docs/configuration.md that rejects unknown keys and wrong
//! types.
//!
//! The same types give the JSON Schema of a bridge file (`pollhook schema`,
//! docs/configuration.md#editors-and-the-json-schema), so the two cannot disagree on shape.
//!
//! Strings stay strings here (durations, URLs, JSONPath): they may hold `${…}` and are only
//! interpolated and checked in `bridge.rs`, which reports every problem, not just the first.

use schemars::JsonSchema;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawBridge {
    /// The bridge's name, `[a-z0-9][a-z0-9_-]{0,63}`; default: the file name.
    pub name: Option<String>,
    /// Free text, shown by the admin API and given to templates.
    pub description: Option<String>,
    /// When to poll: `every` or `cron`, and optionally `jitter`.
    pub schedule: RawSchedule,
    /// What to poll: the request, its format, pagination, logging in.
    pub source: RawSource,
    /// Optional as a whole for `format: feed`, whose select and key have defaults.
    #[serde(default)]
    pub items: RawItems,
    /// Which changes become events.
    #[serde(default)]
    pub emit: RawEmit,
    /// Where the events go: webhook URLs, or `console`.
    pub sinks: Vec<RawSink>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSchedule {
    /// A duration from `500ms` to `7d`, e.g. `10m`.
    pub every: Option<String>,
    /// A cron expression in UTC, e.g. `0 9 * * 1`.
    pub cron: Option<String>,
    /// A random delay up to this (at most `1d`) added to each run.
    pub jitter: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum Method {
    #[default]
    #[serde(alias = "get")]
    GET,
    #[serde(alias = "post")]
    POST,
}

/// The schema `method` has: serde's aliases (`get`, `post`) are no part of what schemars
/// derives, and a schema without them would refuse what `check` accepts.
impl JsonSchema for Method {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Method".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "The HTTP method (default GET).",
            "type": "string",
            "enum": ["GET", "POST", "get", "post"]
        })
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    /// `http` or `https`; may hold `${…}` anywhere.
    pub url: String,
    #[serde(default)]
    pub method: Method,
    /// Header names to values.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// With `method: POST` only: any value, sent as JSON.
    #[schemars(with = "Option<serde_json::Value>")]
    pub body: Option<serde_yaml::Value>,
    /// The whole request, body included (default `30s`).
    pub timeout: Option<String>,
    /// A larger body fails the poll (default `16MiB`).
    pub max_body: Option<String>,
    /// `If-None-Match` / `If-Modified-Since` on GET sources (default true).
    pub conditional: Option<bool>,
    /// How to find the next page.
    pub paginate: Option<RawPaginate>,
    /// An incremental listing: a value from each answer carried to the next request.
    pub cursor: Option<RawCursor>,
    /// How the body is written, and the CSV options (only with `csv`):
    /// docs/configuration.md#formats.
    pub format: Option<RawFormat>,
    pub csv: Option<RawCsv>,
    /// How to log in (docs/configuration.md#logging-in); checked in `bridge/login.rs`.
    pub auth: Option<RawAuth>,
    /// The proxy for this source's requests, token requests included.
    pub proxy: Option<String>,
}

/// `cursor: {param: NAME | variable: NAME, from: JSONPATH, initial: VALUE, keep: DURATION}`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCursor {
    pub param: Option<String>,
    pub variable: Option<String>,
    pub from: String,
    #[schemars(with = "Option<serde_json::Value>")]
    pub initial: Option<serde_yaml::Value>,
    pub keep: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RawFormat {
    Json,
    Ndjson,
    Csv,
    Feed,
    Xml,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCsv {
    pub delimiter: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPaginate {
    pub next: RawNext,
    pub max_pages: Option<u32>,
    pub has_more: Option<String>,
}

/// `next: link`, `next: {url: JSONPATH}`, `next: {param: NAME, from: JSONPATH}`,
/// `next: {variable: NAME, from: JSONPATH}`, `next: {page: NAME, start: N}` or
/// `next: {offset: NAME, start: N}`.
/// Unknown keys refused, so that a mapping of two forms (`{page: p, offset: o}`) is an error,
/// not the first form that fits.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged, deny_unknown_fields)]
pub enum RawNext {
    Word(String),
    Url { url: String },
    Param { param: String, from: String },
    Variable { variable: String, from: String },
    Page { page: String, start: Option<u64> },
    Offset { offset: String, start: Option<u64> },
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawItems {
    /// JSONPath of the collection. Required, except for `format: feed` (default `$.entries[*]`).
    pub select: Option<String>,
    /// JSONPath inside one item to its unique key (a string or a number); omitted: document mode.
    pub key: Option<String>,
    /// JSONPaths: only these parts of an item count and are sent (default: all of it).
    pub include: Option<Vec<String>>,
    /// JSONPaths: these parts never count and are not sent.
    pub exclude: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Created,
    Updated,
    Deleted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FirstPoll {
    #[default]
    Baseline,
    Emit,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawEmit {
    /// Which changes are emitted (default: all three).
    pub events: Option<Vec<EventKind>>,
    /// `baseline` (default: the first poll stores, emits nothing) or `emit`.
    #[serde(default)]
    pub first_poll: FirstPoll,
    #[serde(default)]
    pub deletes: RawDeletes,
    /// A MiniJinja rule (docs/configuration.md#rules); a change it rejects is stored but not
    /// emitted.
    pub when: Option<String>,
    pub failures: Option<RawFailures>,
    /// A change is emitted only once it has held: on N polls in a row (an integer, at least
    /// 1), or for a duration (`10m`) (docs/configuration.md#settle).
    pub settle: Option<RawSettle>,
    /// `bridge.quiet` when the data has not changed for this long although polls succeed,
    /// `bridge.active` when it changes again (docs/configuration.md#quiet).
    pub quiet: Option<String>,
    /// What a drift of the items' shape does: `warn` (default: `bridge.shape_changed` and a
    /// WARN), `hold` (also hold the poll until `pollhook accept-shape`) or `off`
    /// (docs/configuration.md#shape).
    #[serde(default)]
    pub shape: ShapeMode,
}

/// `emit.shape`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ShapeMode {
    #[default]
    Warn,
    Hold,
    Off,
}

/// `settle: 3` (polls) or `settle: 10m` (a duration).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RawSettle {
    Polls(u32),
    Duration(String),
}

/// `failures: {after: N}`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawFailures {
    pub after: u32,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDeletes {
    pub after_missing: Option<u32>,
    pub max_fraction: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SignatureKind {
    #[default]
    Standard,
    Github,
    None,
}

/// One secret, or a list `[new, old]` for rotation.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RawSecret {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSink {
    /// An `http(s)` URL, or `console` (stdout).
    pub url: String,
    /// The signing secret (`whsec_…`), or a list `[new, old]` while rotating.
    pub secret: Option<RawSecret>,
    /// `standard` (default), `github` or `none`.
    #[serde(default)]
    pub signature: SignatureKind,
    /// Header names to values, sent with every webhook.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// One delivery attempt (default `10s`).
    pub timeout: Option<String>,
    /// The delays between attempts, e.g. `[5s, 30s, 2m]`.
    pub retry: Option<Vec<String>>,
    // What the sink speaks and what it receives (docs/configuration.md#sinks).
    #[serde(default)]
    pub format: SinkFormat,
    pub message: Option<String>,
    /// Whether the chat message's own mentions notify (`<!channel>` in a `message`); what
    /// came from the source never does.
    pub mentions: Option<bool>,
    pub template: Option<String>,
    pub content_type: Option<String>,
    pub events: Option<Vec<SinkEvent>>,
    pub when: Option<String>,
    pub batch: Option<RawBatch>,
}

/// The body a sink sends (docs/configuration.md#presets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SinkFormat {
    #[default]
    Event,
    Slack,
    Mattermost,
    Discord,
    GoogleChat,
    Teams,
    Ntfy,
    Template,
}

impl SinkFormat {
    /// The chat receiver a preset speaks to; None for `event` and `template`.
    pub fn receiver(self) -> Option<crate::chat::Receiver> {
        use crate::chat::Receiver;
        Some(match self {
            SinkFormat::Slack => Receiver::Slack,
            SinkFormat::Mattermost => Receiver::Mattermost,
            SinkFormat::Discord => Receiver::Discord,
            SinkFormat::GoogleChat => Receiver::GoogleChat,
            SinkFormat::Teams => Receiver::Teams,
            SinkFormat::Ntfy => Receiver::Ntfy,
            SinkFormat::Event | SinkFormat::Template => return None,
        })
    }
}

/// The event types a sink's `events` list names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SinkEvent {
    Created,
    Updated,
    Deleted,
    Snapshot,
    Failing,
    Recovered,
    Quiet,
    Active,
    #[serde(rename = "shape_changed")]
    ShapeChanged,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawBatch {
    pub max: u32,
    pub window: String,
}

/// `source.auth`: one of `oauth2`, `login`, `basic` (docs/configuration.md#logging-in).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub oauth2: Option<RawOAuth2>,
    pub login: Option<RawLogin>,
    pub basic: Option<RawBasic>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawOAuth2 {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub client_auth: ClientAuth,
}

/// How the client authenticates to the token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// HTTP Basic with the form-encoded id and secret.
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Post,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLogin {
    pub url: String,
    pub method: Option<Method>,
    #[schemars(with = "Option<serde_json::Value>")]
    pub body: Option<serde_yaml::Value>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub token: String,
    pub expires_in: Option<String>,
    pub header: Option<String>,
    pub prefix: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawBasic {
    pub username: String,
    #[serde(default)]
    pub password: String,
}

/// The JSON Schema of a bridge file (draft-07, which editors' YAML plugins all read), as
/// pretty JSON with a final newline: what `pollhook schema` prints and
/// `schema/bridge.schema.json` holds.
pub fn json_schema() -> String {
    let generator = schemars::generate::SchemaSettings::draft07().into_generator();
    let mut schema = generator.into_root_schema_for::<RawBridge>();
    schema.insert("title".into(), "pollhook bridge file".into());
    schema.insert(
        "description".into(),
        "One bridge: what to poll, which items, what to emit, where to send it \
         (docs/configuration.md in pollhook's repository)."
            .into(),
    );
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

//! The state document (docs/scaling.md#the-state-document): one bridge's whole state
//! ([`BridgeState`]) with its name, a format version and a SHA-256 over the canonical JSON of
//! both, so that a document damaged or edited on its way is refused, not imported. It holds
//! secrets (the refresh token a login keeps, item values): it is never logged.

use crate::store::handoff::BridgeState;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The version this pollhook writes and reads.
pub const VERSION: u64 = 1;

/// What the checksum is taken over: the name and the state, serialised as below.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    bridge: String,
    state: BridgeState,
}

/// One bridge's state, ready to travel.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub bridge: String,
    pub state: BridgeState,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DocError {
    #[error("not a state document: {0}")]
    NotADocument(String),
    #[error(
        "state document of bridge `{bridge}`: version {version} is not supported (this pollhook reads version {VERSION})"
    )]
    Version { bridge: String, version: String },
    #[error(
        "state document of bridge `{0}`: the checksum does not match: the document was changed or damaged"
    )]
    Checksum(String),
}

/// The canonical form of a body: serde_json of its typed fields, in their declared order.
#[expect(
    clippy::expect_used,
    reason = "typed fields with string keys always serialise"
)]
fn checksum(body: &Body) -> String {
    let bytes = serde_json::to_vec(body).expect("a state serialises");
    hex::encode(Sha256::digest(&bytes))
}

impl Document {
    /// The document as one line of JSON (no newline in it):
    /// `{"version":1,"bridge":…,"sha256":…,"state":{…}}`.
    pub fn to_line(&self) -> String {
        let body = Body {
            bridge: self.bridge.clone(),
            state: self.state.clone(),
        };
        let line = serde_json::json!({
            "version": VERSION,
            "bridge": body.bridge,
            "sha256": checksum(&body),
            "state": body.state,
        });
        line.to_string()
    }

    /// Reads a document, checking its version first (a later format is named as such, not
    /// taken for a damaged one), then its checksum.
    pub fn parse(text: &str) -> Result<Document, DocError> {
        let not = |e: String| DocError::NotADocument(e);
        let mut v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| not(e.to_string()))?;
        let obj = v
            .as_object_mut()
            .ok_or_else(|| not("not a JSON object".into()))?;
        let bridge = match obj.remove("bridge") {
            Some(serde_json::Value::String(b)) => b,
            _ => return Err(not("no `bridge` name".into())),
        };
        match obj.remove("version") {
            Some(n) if n.as_u64() == Some(VERSION) => {}
            Some(n) => {
                let version = n.to_string();
                return Err(DocError::Version { bridge, version });
            }
            None => return Err(not(format!("bridge `{bridge}`: no `version`"))),
        }
        let sum = match obj.remove("sha256") {
            Some(serde_json::Value::String(s)) => s,
            _ => return Err(not(format!("bridge `{bridge}`: no `sha256`"))),
        };
        let state = obj
            .remove("state")
            .ok_or_else(|| not(format!("bridge `{bridge}`: no `state`")))?;
        if let Some(k) = obj.keys().next() {
            return Err(not(format!("bridge `{bridge}`: unknown field `{k}`")));
        }
        let state: BridgeState =
            serde_json::from_value(state).map_err(|e| not(format!("bridge `{bridge}`: {e}")))?;
        let body = Body { bridge, state };
        if checksum(&body) != sum {
            return Err(DocError::Checksum(body.bridge));
        }
        Ok(Document {
            bridge: body.bridge,
            state: body.state,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::BridgeMeta;
    use crate::store::handoff::ItemState;

    fn doc() -> Document {
        Document {
            bridge: "orders".into(),
            state: BridgeState {
                meta: BridgeMeta {
                    seq: 41,
                    // Beyond f64, kept exactly.
                    cursor: Some(serde_json::from_str(r#"{"b":1e400,"a":"x"}"#).unwrap()),
                    ..Default::default()
                },
                items: vec![ItemState {
                    key: "k".into(),
                    hash: "00".repeat(16),
                    missing: 0,
                    value: r#"{"id":"k","n":1.10}"#.into(),
                    pending: None,
                }],
                pages: vec![],
                outbox: vec![],
                dead: vec![],
                auth: None,
            },
        }
    }

    #[test]
    fn a_document_reads_back_as_written() {
        let line = doc().to_line();
        assert!(!line.contains('\n'));
        assert!(
            line.starts_with(r#"{"#) && line.contains(r#""version":1"#),
            "{line}"
        );
        assert_eq!(Document::parse(&line), Ok(doc()));
        // Pretty-printed by hand, it is still the same document.
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let pretty = serde_json::to_string_pretty(&v).unwrap();
        assert_eq!(Document::parse(&pretty), Ok(doc()));
    }

    #[test]
    fn a_changed_document_or_another_version_is_refused() {
        let line = doc().to_line();
        let changed = line.replace("\"seq\":41", "\"seq\":42");
        assert_ne!(changed, line);
        assert_eq!(
            Document::parse(&changed).unwrap_err().to_string(),
            "state document of bridge `orders`: the checksum does not match: the document was \
             changed or damaged"
        );
        let renamed = line.replace("\"bridge\":\"orders\"", "\"bridge\":\"other\"");
        assert_eq!(
            Document::parse(&renamed),
            Err(DocError::Checksum("other".into()))
        );
        let v2 = line.replace("\"version\":1", "\"version\":2");
        assert_eq!(
            Document::parse(&v2).unwrap_err().to_string(),
            "state document of bridge `orders`: version 2 is not supported (this pollhook reads \
             version 1)"
        );
        for (bad, says) in [
            (
                "",
                "not a state document: EOF while parsing a value at line 1 column 0",
            ),
            ("[]", "not a state document: not a JSON object"),
            (r#"{"version":1}"#, "not a state document: no `bridge` name"),
            (
                r#"{"bridge":"b","version":1,"sha256":"x"}"#,
                "not a state document: bridge `b`: no `state`",
            ),
            (
                r#"{"bridge":"b","version":1,"sha256":"x","state":{},"x":1}"#,
                "not a state document: bridge `b`: unknown field `x`",
            ),
        ] {
            assert_eq!(Document::parse(bad).unwrap_err().to_string(), says, "{bad}");
        }
        let extra = line.replace("\"missing\":0", "\"missing\":0,\"extra\":1");
        let e = Document::parse(&extra).unwrap_err().to_string();
        assert!(
            e.starts_with("not a state document: bridge `orders`: unknown field `extra`"),
            "{e}"
        );
    }
}

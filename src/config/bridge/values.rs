//! One value of any section checked: interpolated (docs/configuration.md#interpolation), parsed
//! (durations, sizes, JSONPaths, URLs, headers, a JSON body) and, when wrong, recorded as a
//! problem at its place in the file. A value that came from `${…}` is quoted with those parts
//! masked, and a parser's own explanation of it is left out (docs/configuration.md#secrets).

use super::Validator;
use crate::config::Problem;
use crate::config::interpolate::{Interpolated, interpolate};
use crate::jsonpath::Path as JsonPath;
use reqwest::header::{HeaderName, HeaderValue};
use std::time::Duration;
use url::Url;

impl Validator<'_> {
    pub(super) fn err(&mut self, path: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.to_path_buf(),
            pos: self.loc.value(path),
            message: message.into(),
        });
    }

    /// Interpolates a string; on failure records the problem at `path` and gives None.
    pub(super) fn text(&mut self, path: &str, s: &str) -> Option<String> {
        self.value(path, s).map(|i| i.value)
    }

    /// A query parameter's or a GraphQL variable's name: text, not empty.
    pub(super) fn param_name(&mut self, path: &str, s: &str) -> Option<String> {
        let name = self.text(path, s)?;
        if name.is_empty() {
            self.err(path, format!("{path}: give a name, not an empty string"));
            return None;
        }
        Some(name)
    }

    /// Like [`Self::text`], also giving how the value may be quoted in a message. A value
    /// that came (even in part) from `${…}` is quoted with those parts as `***`, and a parser's
    /// own explanation is left out, since it may quote a piece of it
    /// (docs/configuration.md#secrets).
    pub(super) fn value(&mut self, path: &str, s: &str) -> Option<Interpolated> {
        match interpolate(s, self.env) {
            Ok(i) => {
                self.secrets.extend(i.secrets.iter().cloned());
                Some(i)
            }
            Err(e) => {
                self.err(path, format!("{path}: {e}"));
                None
            }
        }
    }

    pub(super) fn duration(
        &mut self,
        path: &str,
        s: &str,
        min: Duration,
        max: Duration,
    ) -> Option<Duration> {
        let i = self.value(path, s)?;
        let shown = &i.shown;
        match humantime::parse_duration(i.value.trim()) {
            Ok(d) if d < min || d > max => {
                self.err(
                    path,
                    format!(
                        "{path}: `{shown}` is out of range ({} .. {})",
                        humantime::format_duration(min),
                        humantime::format_duration(max)
                    ),
                );
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                let why = detail(&i, e);
                self.err(
                    path,
                    format!(
                        "{path}: bad duration `{shown}`{why}; write e.g. 500ms, 30s, 5m, 2h, 7d"
                    ),
                );
                None
            }
        }
    }

    pub(super) fn jsonpath(&mut self, path: &str, s: &str) -> Option<JsonPath> {
        let i = self.value(path, s)?;
        match JsonPath::parse(&i.value) {
            Ok(p) => Some(p),
            Err(e) => {
                let shown = &i.shown;
                let why = if i.interpolated() {
                    String::new()
                } else {
                    format!(": {e}")
                };
                self.err(
                    path,
                    format!("{path}: JSONPath `{shown}` does not parse{why}"),
                );
                None
            }
        }
    }

    pub(super) fn headers(
        &mut self,
        path: &str,
        raw: &std::collections::BTreeMap<String, String>,
    ) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = Vec::new();
        for (k, v) in raw {
            let p = format!("{path}.{k}");
            let Some(v) = self.text(&p, v) else { continue };
            match (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(&v),
            ) {
                (Ok(name), Ok(mut value)) => {
                    if crate::redact::is_secret_header(&name) {
                        value.set_sensitive(true);
                        self.secrets.push(v.clone());
                    }
                    out.push((name, value))
                }
                (Err(_), _) => self.err(&p, format!("{path}: `{k}` is not a valid header name")),
                (_, Err(_)) => {
                    self.err(&p, format!("{path}.{k}: value is not a valid header value"))
                }
            }
        }
        out
    }

    pub(super) fn url(&mut self, path: &str, s: &str) -> Option<Url> {
        let i = self.value(path, s)?;
        match Url::parse(&i.value) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => Some(u),
            Ok(_) if i.interpolated() => {
                self.err(
                    path,
                    format!("{path}: `{}` is not an http or https URL", i.shown),
                );
                None
            }
            Ok(u) => {
                self.err(
                    path,
                    format!("{path}: scheme `{}` is not http or https", u.scheme()),
                );
                None
            }
            Err(_) if i.interpolated() => {
                self.err(path, format!("{path}: `{}` is not a URL", i.shown));
                None
            }
            Err(e) => {
                self.err(path, format!("{path}: not a URL ({e})"));
                None
            }
        }
    }

    /// The POST body: YAML to JSON, with every string interpolated.
    pub(super) fn body(&mut self, path: &str, v: &serde_yaml::Value) -> Option<serde_json::Value> {
        use serde_yaml::Value as Y;
        Some(match v {
            Y::Null => serde_json::Value::Null,
            Y::Bool(b) => serde_json::Value::Bool(*b),
            Y::Number(n) => serde_json::to_value(n).ok()?,
            Y::String(s) => serde_json::Value::String(self.text(path, s)?),
            Y::Sequence(seq) => {
                let mut out = Vec::new();
                for (i, x) in seq.iter().enumerate() {
                    out.push(self.body(&format!("{path}[{i}]"), x)?);
                }
                serde_json::Value::Array(out)
            }
            Y::Mapping(m) => {
                let mut out = serde_json::Map::new();
                for (k, x) in m {
                    let Some(k) = k.as_str() else {
                        self.err(path, format!("{path}: object keys must be strings"));
                        return None;
                    };
                    out.insert(k.to_string(), self.body(&format!("{path}.{k}"), x)?);
                }
                serde_json::Value::Object(out)
            }
            Y::Tagged(t) => self.body(path, &t.value)?,
        })
    }
}

/// A parser's explanation of why a value is wrong, as ` (…)`; nothing for a value that came
/// from `${…}`, since the explanation may quote part of it.
pub(super) fn detail(i: &Interpolated, e: impl std::fmt::Display) -> String {
    if i.interpolated() {
        String::new()
    } else {
        format!(" ({e})")
    }
}

/// `16MiB`, `512KiB`, `1MB`, `1000` (bytes).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("bad size `{s}`; write e.g. 16MiB, 512KiB, 1GB"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1000,
        "kib" => 1 << 10,
        "mb" | "m" => 1_000_000,
        "mib" => 1 << 20,
        "gb" | "g" => 1_000_000_000,
        "gib" => 1 << 30,
        u => {
            return Err(format!(
                "bad size unit `{u}` in `{s}` (B, KB, KiB, MB, MiB, GB, GiB)"
            ));
        }
    };
    let bytes = n * mult as f64;
    if !(1.0..=(4u64 << 30) as f64).contains(&bytes) {
        return Err(format!("size `{s}` is out of range (1B .. 4GiB)"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("16MiB").unwrap(), 16 << 20);
        assert_eq!(parse_size("1.5 KB").unwrap(), 1500);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert!(parse_size("5 parsecs").unwrap_err().contains("unit"));
        assert!(parse_size("").is_err());
    }
}

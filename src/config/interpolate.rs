//! `${NAME}`, `${file:/path}` and `${credential:NAME}` in string values
//! (docs/configuration.md#interpolation).
//!
//! Every value that interpolation brings in is treated as a secret: it is remembered so that
//! logs and errors can redact it, because an operator puts tokens there and nothing else.

use std::path::{Path, PathBuf};

/// Where interpolation looks things up; a value, so that tests need not touch the process
/// environment.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: Option<std::collections::HashMap<String, String>>,
    credentials_dir: Option<PathBuf>,
}

impl Env {
    /// The process environment, with `$CREDENTIALS_DIRECTORY` for `${credential:…}`.
    pub fn process() -> Self {
        Env {
            vars: None,
            credentials_dir: std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from),
        }
    }

    /// A fixed set of variables (and credentials directory); nothing from the process.
    pub fn fixed(vars: &[(&str, &str)], credentials_dir: Option<&Path>) -> Self {
        Env {
            vars: Some(
                vars.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            credentials_dir: credentials_dir.map(Path::to_path_buf),
        }
    }

    fn var(&self, name: &str) -> Option<String> {
        match &self.vars {
            Some(vars) => vars.get(name).cloned(),
            None => std::env::var(name).ok(),
        }
    }
}

/// What one string became, and the secrets it took in.
pub struct Interpolated {
    pub value: String,
    /// The value fit for a message: each interpolated part as `***`, the rest as written, so
    /// that an error can say which field is wrong without quoting what `${…}` brought in.
    pub shown: String,
    pub secrets: Vec<String>,
}

impl Interpolated {
    /// Whether any part of the value came from `${…}`.
    pub fn interpolated(&self) -> bool {
        self.shown != self.value || !self.secrets.is_empty()
    }
}

/// Writes a literal `${`.
const ESCAPED: &str = "$${";
/// Opens a reference, which the next [`CLOSE`] ends.
const OPEN: &str = "${";
const CLOSE: char = '}';
const UNCLOSED: &str = "unclosed `${` (write `$${` for a literal `${`)";

/// Expands one string. Errors name what is missing, never a value.
pub fn interpolate(s: &str, env: &Env) -> Result<Interpolated, String> {
    let mut out = Interpolated {
        value: String::with_capacity(s.len()),
        shown: String::with_capacity(s.len()),
        secrets: Vec::new(),
    };
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.literal(&rest[..i]);
        rest = out.dollar(&rest[i..], env)?;
    }
    out.literal(rest);
    Ok(out)
}

impl Interpolated {
    /// Text as written: the same in the value and as shown.
    fn literal(&mut self, text: &str) {
        self.value.push_str(text);
        self.shown.push_str(text);
    }

    /// At a `$`: an escaped `${`, a reference (its value taken in, shown masked), or a `$` of
    /// its own. Gives the text after it.
    fn dollar<'s>(&mut self, at: &'s str, env: &Env) -> Result<&'s str, String> {
        if let Some(tail) = at.strip_prefix(ESCAPED) {
            self.literal(OPEN);
            return Ok(tail);
        }
        let Some(body) = at.strip_prefix(OPEN) else {
            self.literal("$");
            return Ok(&at[1..]);
        };
        let end = body.find(CLOSE).ok_or_else(|| UNCLOSED.to_string())?;
        let value = resolve(&body[..end], env)?;
        self.value.push_str(&value);
        self.shown.push_str(crate::redact::MASK);
        if !value.is_empty() {
            self.secrets.push(value);
        }
        Ok(&body[end + 1..])
    }
}

fn resolve(reference: &str, env: &Env) -> Result<String, String> {
    if let Some(path) = reference.strip_prefix("file:") {
        return read_trimmed(Path::new(path))
            .map_err(|e| format!("cannot read `${{file:{path}}}`: {e}"));
    }
    if let Some(name) = reference.strip_prefix("credential:") {
        let dir = env.credentials_dir.as_ref().ok_or_else(|| {
            format!("`${{credential:{name}}}` needs $CREDENTIALS_DIRECTORY (systemd LoadCredential=), which is not set")
        })?;
        if name.is_empty() || name.contains('/') {
            return Err(format!("`${{credential:{name}}}` is not a credential name"));
        }
        return read_trimmed(&dir.join(name))
            .map_err(|e| format!("cannot read credential `{name}`: {e}"));
    }
    let valid = !reference.is_empty()
        && reference
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!("`${{{reference}}}` is not a variable name"));
    }
    env.var(reference)
        .ok_or_else(|| format!("environment variable `{reference}` is not set"))
}

fn read_trimmed(path: &Path) -> std::io::Result<String> {
    let mut s = std::fs::read_to_string(path)?;
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_vars_files_credentials_and_escapes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tok"), "s3cret\n").unwrap();
        let env = Env::fixed(&[("A", "x1")], Some(dir.path()));
        let file = dir.path().join("tok");
        let s = format!(
            "a=${{A}} f=${{file:{}}} c=${{credential:tok}} lit=$${{A}} $5",
            file.display()
        );
        let r = interpolate(&s, &env).unwrap();
        assert_eq!(r.value, "a=x1 f=s3cret c=s3cret lit=${A} $5");
        assert_eq!(r.shown, "a=*** f=*** c=*** lit=${A} $5");
        assert!(r.interpolated());
        let plain = interpolate("5m $${X}", &env).unwrap();
        assert_eq!(
            (plain.value.as_str(), plain.shown.as_str()),
            ("5m ${X}", "5m ${X}")
        );
        assert!(!plain.interpolated());
        assert_eq!(r.secrets, vec!["x1", "s3cret", "s3cret"]);
    }

    #[test]
    fn missing_things_are_named() {
        let env = Env::fixed(&[], None);
        assert_eq!(
            interpolate("${NOPE}", &env).err().unwrap(),
            "environment variable `NOPE` is not set"
        );
        assert!(
            interpolate("${credential:x}", &env)
                .err()
                .unwrap()
                .contains("CREDENTIALS_DIRECTORY")
        );
        assert!(
            interpolate("${file:/no/such}", &env)
                .err()
                .unwrap()
                .contains("/no/such")
        );
        assert!(interpolate("${A", &env).err().unwrap().contains("unclosed"));
    }
}

//! Keeping secrets out of logs, errors and the admin API (SPEC §7).

use reqwest::header::HeaderName;
use url::Url;

const MASK: &str = "***";

/// Headers whose values are credentials.
pub fn is_secret_header(name: &HeaderName) -> bool {
    let n = name.as_str();
    matches!(n, "authorization" | "proxy-authorization" | "cookie")
        || [
            "token",
            "secret",
            "key",
            "auth",
            "password",
            "signature",
            "session",
        ]
        .iter()
        .any(|w| n.contains(w))
}

fn is_secret_param(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "token",
        "key",
        "secret",
        "password",
        "passwd",
        "auth",
        "signature",
        "sig",
        "session",
        "code",
    ]
    .iter()
    .any(|w| n.contains(w))
}

/// A URL fit for a log line: password and token/key-like query values masked.
pub fn url(u: &Url) -> String {
    let mut u = u.clone();
    if u.password().is_some() {
        let _ = u.set_password(Some(MASK));
    }
    if u.query().is_some() {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let v = if is_secret_param(&k) {
                    MASK.to_string()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.to_string()
}

/// Masks every known secret value inside a text.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    pub fn new(secrets: &[String]) -> Self {
        let mut secrets: Vec<String> = secrets.iter().filter(|s| s.len() >= 3).cloned().collect();
        // Longest first, so a secret that contains another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Redactor { secrets }
    }

    pub fn clean(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), MASK);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_passwords_and_tokens() {
        let u =
            Url::parse("https://user:pw@example.com/x?api_key=abc&page=2&access_token=t").unwrap();
        let s = url(&u);
        assert!(
            !s.contains("pw@") && !s.contains("abc") && !s.contains("=t"),
            "{s}"
        );
        assert!(s.contains("page=2"), "{s}");
    }

    #[test]
    fn headers_and_texts() {
        assert!(is_secret_header(&HeaderName::from_static("authorization")));
        assert!(is_secret_header(&HeaderName::from_static("x-api-key")));
        assert!(!is_secret_header(&HeaderName::from_static("accept")));
        let r = Redactor::new(&["s3cr3t-token".into(), "ab".into()]);
        assert_eq!(r.clean("got s3cr3t-token in ab"), "got *** in ab");
    }
}

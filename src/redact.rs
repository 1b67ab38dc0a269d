//! Keeping secrets out of logs, errors and the admin API (docs/configuration.md#secrets).

use reqwest::header::HeaderName;
use url::Url;

pub const MASK: &str = "***";

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

/// Query parameters (and login body keys) whose values are credentials.
pub fn is_secret_param(name: &str) -> bool {
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
    // Nearly every source URL: nothing to mask, and no copy of the URL to make.
    if u.password().is_none() && u.query().is_none() {
        return u.as_str().to_string();
    }
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

/// A sink URL as shown anywhere (logs, status, the admin API, errors): its origin only, since
/// for Slack, Discord and most chat webhooks the path and query *are* the credential
/// (docs/configuration.md#secrets).
pub fn origin(u: &Url) -> String {
    let o = u.origin().ascii_serialization();
    if u.path() == "/" && u.query().is_none() && u.fragment().is_none() {
        format!("{o}/")
    } else {
        format!("{o}/…")
    }
}

/// Masks every known secret value inside a text.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// The secrets given (3 bytes or more).
    given: Vec<String>,
    /// Those and their spellings in a URL, longest first: worked out the first time a text is
    /// cleaned. Most redactors never clean anything (a poll's, unless it fails), and working
    /// them out takes several URL parses per secret.
    all: std::sync::OnceLock<Vec<String>>,
}

impl Redactor {
    /// Secrets shorter than 3 bytes are not masked in free text (every `ab` of a message would
    /// go); the config loader never quotes an interpolated value, whatever its length.
    /// Each secret is kept once: the panic hook's holds every running bridge's, and
    /// thousands of bridges often share one sink and its signing secret.
    pub fn new(secrets: &[String]) -> Self {
        let mut seen = std::collections::HashSet::new();
        Redactor {
            given: (secrets.iter())
                .filter(|s| s.len() >= 3 && seen.insert(s.as_str()))
                .cloned()
                .collect(),
            all: std::sync::OnceLock::new(),
        }
    }

    /// Every spelling to mask, longest first.
    fn masks(&self) -> &[String] {
        self.all.get_or_init(|| {
            let mut all: Vec<String> = Vec::new();
            // Every running bridge's secrets go into the panic hook's: 100,000 bridges must
            // not cost a comparison of each with each.
            let mut seen = std::collections::HashSet::new();
            for s in &self.given {
                // A secret inside a URL is written percent-encoded (path, userinfo) or
                // form-encoded (query): mask those spellings too.
                for v in std::iter::once(s.clone()).chain(encoded(s)) {
                    if seen.insert(v.clone()) {
                        all.push(v);
                    }
                }
            }
            // Longest first, so a secret that contains another is masked whole.
            all.sort_by_key(|s| std::cmp::Reverse(s.len()));
            all
        })
    }

    /// The text with every secret of this redactor, and every one [`learn`]t while running,
    /// masked.
    pub fn clean(&self, text: &str) -> String {
        let out = self.clean_own(text);
        match &*LEARNED_ALL.read().unwrap_or_else(|p| p.into_inner()) {
            Some(learned) => learned.clean_own(&out),
            None => out,
        }
    }

    fn clean_own(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in self.masks() {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), MASK);
            }
        }
        out
    }

    /// A source URL fit for a message: [`url`], then every known secret masked wherever it
    /// stands (path, a query parameter off the list, the host).
    pub fn url(&self, u: &Url) -> String {
        self.clean(&url(u))
    }
}

/// Secrets that no file holds but the daemon learns while it runs (the tokens a source's
/// login hands out), by owner (a bridge): the newest [`LEARNED_PER_OWNER`] of each. Every
/// [`Redactor`] masks them too, so a token never shows wherever a configured secret would not.
static LEARNED: std::sync::Mutex<Vec<(String, Vec<String>)>> = std::sync::Mutex::new(Vec::new());
static LEARNED_ALL: std::sync::RwLock<Option<Redactor>> = std::sync::RwLock::new(None);

/// A token lives a while after the next one came (requests in flight, a log line about the
/// last poll); older ones are no longer in anything pollhook says.
pub const LEARNED_PER_OWNER: usize = 4;

/// Masks `secret` from now on, everywhere, as a secret of `owner`.
pub fn learn(owner: &str, secret: &str) {
    let mut all = LEARNED.lock().unwrap_or_else(|p| p.into_inner());
    let i = match all.iter().position(|(o, _)| o == owner) {
        Some(i) => i,
        None => {
            all.push((owner.to_string(), Vec::new()));
            all.len() - 1
        }
    };
    let mine = &mut all[i].1;
    if mine.iter().any(|s| s == secret) {
        return;
    }
    mine.push(secret.to_string());
    if mine.len() > LEARNED_PER_OWNER {
        mine.remove(0);
    }
    let every: Vec<String> = all.iter().flat_map(|(_, s)| s.iter().cloned()).collect();
    *LEARNED_ALL.write().unwrap_or_else(|p| p.into_inner()) = Some(Redactor::new(&every));
}

/// How a value is spelled once it is part of a URL.
/// What a panic said, for a log line.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_string())
}

/// Every secret of the running bridges, for what no bridge's own [`Redactor`] sees: the
/// panic hook's line.
static PROCESS: std::sync::RwLock<Option<std::sync::Arc<Redactor>>> = std::sync::RwLock::new(None);

/// Sets the secrets the panic hook masks: every running bridge's (at start and each reload).
pub fn set_process_secrets(secrets: Vec<String>) {
    let r = std::sync::Arc::new(Redactor::new(&secrets));
    *PROCESS.write().unwrap_or_else(|p| p.into_inner()) = Some(r);
}

/// Replaces Rust's default panic message (which prints the panic's text as it is, and a task's
/// panic text may hold anything it was given) by one with every running bridge's secrets
/// masked. The task's supervisor logs the same, masked, at ERROR.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let msg = panic_message(info.payload());
        let masked = match &*PROCESS.read().unwrap_or_else(|p| p.into_inner()) {
            Some(r) => r.clean(&msg),
            None => msg,
        };
        let thread = std::thread::current();
        let at = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_default();
        eprintln!(
            "thread '{}' panicked at {at}:\n{masked}",
            thread.name().unwrap_or("<unnamed>")
        );
    }));
}

fn encoded(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let form: String = url::form_urlencoded::byte_serialize(s.as_bytes()).collect();
    out.push(form);
    // Written raw into a query (`?access=${TOKEN}`), a value is read back by `url` with `+`
    // as a space and re-encoded: `ab+c/d=` shows as `ab+c%2Fd%3D`.
    let raw_in_query = format!("x={}", s.replace('&', "%26"));
    if let Some((_, read)) = url::form_urlencoded::parse(raw_in_query.as_bytes()).next() {
        out.push(url::form_urlencoded::byte_serialize(read.as_bytes()).collect());
    }
    if let Ok(mut u) = Url::parse("http://h/") {
        u.set_path(s);
        out.push(u.path().trim_start_matches('/').to_string());
        if let Ok(mut segs) = u.path_segments_mut() {
            segs.clear().push(s);
        }
        out.push(u.path().trim_start_matches('/').to_string());
        if u.set_password(Some(s)).is_ok() {
            out.extend(u.password().map(str::to_string));
        }
        u.set_query(Some(s));
        out.extend(u.query().map(str::to_string));
        if u.set_username(s).is_ok() {
            out.push(u.username().to_string());
        }
    }
    out.retain(|v| v != s && v.len() >= 3);
    out
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

    #[test]
    fn secrets_are_masked_in_every_spelling_a_url_gives_them() {
        let r = Redactor::new(&["p a/th?x".into(), "q&v=1 ü".into(), "us:er".into()]);
        let mut u = Url::parse("https://h.example/a/b?access=1").unwrap();
        u.path_segments_mut().unwrap().push("p a/th?x");
        u.query_pairs_mut().append_pair("access", "q&v=1 ü");
        let _ = u.set_username("us:er");
        let shown = r.url(&u);
        assert!(
            !shown.contains("th") && !shown.contains("v%3D1") && !shown.contains("er@"),
            "{shown}"
        );
        assert!(
            shown.starts_with("https://***@h.example/a/b/***?access=1&access=***"),
            "{shown}"
        );
    }

    #[test]
    fn a_base64_token_written_raw_into_a_query_is_masked() {
        let token = "Ab+c/d=e9";
        let r = Redactor::new(&[token.to_string()]);
        let u = Url::parse(&format!("https://h.example/x?access={token}&page=2")).unwrap();
        assert_eq!(r.url(&u), "https://h.example/x?access=***&page=2");
    }

    #[test]
    fn learned_secrets_are_masked_by_every_redactor() {
        let r = Redactor::new(&["configured-1".into()]);
        learn("learning-test", "tok-learned-Zq9");
        assert_eq!(
            r.clean("a configured-1 and tok-learned-Zq9"),
            "a *** and ***"
        );
        for n in 0..LEARNED_PER_OWNER {
            learn("learning-test", &format!("tok-later-{n}"));
        }
        assert_eq!(r.clean("tok-learned-Zq9"), "tok-learned-Zq9");
    }

    #[test]
    fn sink_urls_show_their_origin_only() {
        let u = Url::parse("https://hooks.slack.com/services/T0/B0/XyZ?x=1").unwrap();
        assert_eq!(origin(&u), "https://hooks.slack.com/…");
        let u = Url::parse("http://user:pw@127.0.0.1:8080/").unwrap();
        assert_eq!(origin(&u), "http://127.0.0.1:8080/");
    }

    #[test]
    fn a_secret_many_bridges_share_is_held_once() {
        let shared = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_string();
        let mut all = vec![shared.clone(); 10_000];
        all.push("another-one".into());
        let r = Redactor::new(&all);
        assert_eq!(r.given, [shared.clone(), "another-one".to_string()]);
        assert_eq!(r.clean(&format!("k={shared} o=another-one")), "k=*** o=***");
    }
}

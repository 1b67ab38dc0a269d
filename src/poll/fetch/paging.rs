//! Where a listing's next page is (`source.paginate`, docs/configuration.md#pagination): an RFC
//! 8288 `Link` header, a URL in the body, a cursor in the body sent as a query parameter or as a
//! GraphQL variable, or page numbers and offsets that run until an empty page; `has_more` in the
//! body ends any of them. Pure: values in, the next request or the end out. (Incremental
//! listings build their first request with [`with_param`] and [`with_variable`] too.)

use crate::config::{Next, Paginate, Source};
use crate::jsonpath::Path as JsonPath;
use crate::redact;
use serde_json::Value;
use url::Url;

/// One page's request: its URL, and its JSON body when the page sets a variable in it.
#[derive(Debug, Clone, PartialEq)]
pub struct PageRequest {
    pub url: Url,
    /// None: the source's own body.
    pub body: Option<Value>,
    /// The page number or offset this page was asked for with (page and offset forms).
    at: u64,
}

impl PageRequest {
    /// The first page of the source's listing.
    pub fn first(src: &Source) -> PageRequest {
        let (url, at) = match src.paginate.as_ref().map(|p| &p.next) {
            Some(Next::Page { param, start } | Next::Offset { param, start }) => {
                (with_param(&src.url, param, &start.to_string()), *start)
            }
            _ => (src.url.clone(), 0),
        };
        PageRequest {
            url,
            body: None,
            at,
        }
    }

    /// What tells two pages apart: asked for twice in one listing, a page means a loop.
    pub fn identity(&self) -> String {
        match &self.body {
            Some(b) => format!("{} {b}", self.url),
            None => self.url.to_string(),
        }
    }
}

/// Whether the next page is read from the body (every form but `link`, and `has_more`).
pub fn reads_body(p: &Paginate) -> bool {
    p.has_more.is_some() || !matches!(p.next, Next::Link)
}

/// The page after `page`, or None at the end of the listing. `body` is the page's document
/// (Null when [`reads_body`] is false), `select` the items' path (page and offset forms
/// count the items on the page). The reason, lowercase and naming no secret, when the next
/// page cannot be followed.
pub fn next_page(
    p: &Paginate,
    src: &Source,
    page: &PageRequest,
    link: Option<&str>,
    body: &Value,
    select: &JsonPath,
) -> Result<Option<PageRequest>, String> {
    if let Some(h) = &p.has_more {
        match h.select(body).as_slice() {
            [] | [Value::Null] | [Value::Bool(true)] => {}
            [Value::Bool(false)] => return Ok(None),
            _ => return Err(format!("has_more at `{}` is not true or false", h.as_str())),
        }
    }
    let url = |url| PageRequest {
        url,
        body: None,
        at: 0,
    };
    let numbered = |param: &str, at: u64| {
        Ok(Some(PageRequest {
            url: with_param(&src.url, param, &at.to_string()),
            body: None,
            at,
        }))
    };
    match &p.next {
        Next::Link | Next::Url(_) | Next::Param { .. } => {
            Ok(next_url(&p.next, src, &page.url, link, body)?.map(url))
        }
        Next::Variable { name, from } => {
            let Some(cursor) = single_value(from.select(body), from.as_str(), "cursor")? else {
                return Ok(None);
            };
            let base = page.body.as_ref().or(src.body.as_deref());
            Ok(Some(PageRequest {
                url: src.url.clone(),
                body: Some(with_variable(base, name, cursor)),
                at: 0,
            }))
        }
        Next::Page { param, .. } => match select.select(body).len() {
            0 => Ok(None),
            _ => numbered(param, page.at.saturating_add(1)),
        },
        Next::Offset { param, .. } => match select.select(body).len() {
            0 => Ok(None),
            n => numbered(param, page.at.saturating_add(n as u64)),
        },
    }
}

/// The next page's URL for the forms that give one: the `Link` header, a URL in the body, or
/// a cursor in the body sent as a query parameter. Only on the source's origin.
fn next_url(
    next: &Next,
    source: &Source,
    page: &Url,
    link: Option<&str>,
    body: &Value,
) -> Result<Option<Url>, String> {
    let found = match next {
        Next::Link => match link.and_then(link_next) {
            None => return Ok(None),
            Some(target) => page
                .join(&target)
                .map_err(|e| format!("Link rel=\"next\" is not a URL ({e})"))?,
        },
        Next::Url(path) => match single(path.select(body), path.as_str(), "URL")? {
            None => return Ok(None),
            Some(target) => page
                .join(&target)
                .map_err(|e| format!("next page at `{}` is not a URL ({e})", path.as_str()))?,
        },
        Next::Param { param, from } => match single(from.select(body), from.as_str(), "cursor")? {
            None => return Ok(None),
            Some(cursor) => with_param(&source.url, param, &cursor),
        },
        Next::Variable { .. } | Next::Page { .. } | Next::Offset { .. } => return Ok(None),
    };
    // The source's headers carry its credentials: they go to the source's origin only.
    if found.origin() != source.url.origin() {
        return Err(format!(
            "next page {} is not on the source's origin; refusing to send the source's headers there",
            redact::url(&found)
        ));
    }
    Ok(Some(found))
}

/// A string or number at a path, as JSON; None when absent, null or empty.
fn single_value(found: Vec<&Value>, path: &str, what: &str) -> Result<Option<Value>, String> {
    Ok(single(found.clone(), path, what)?.map(|_| found[0].clone()))
}

/// `body` (an object, or none) with `variables.NAME` set to `value`.
pub fn with_variable(body: Option<&Value>, name: &str, value: Value) -> Value {
    let mut body = match body {
        Some(Value::Object(o)) => o.clone(),
        _ => serde_json::Map::new(),
    };
    let vars = body
        .entry("variables")
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
    if !vars.is_object() {
        *vars = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(vars) = vars {
        vars.insert(name.to_string(), value);
    }
    Value::Object(body)
}

/// A string (or number) at a path, None when absent, null or empty.
fn single(found: Vec<&Value>, path: &str, what: &str) -> Result<Option<String>, String> {
    match found.as_slice() {
        [] | [Value::Null] => Ok(None),
        [Value::String(s)] if s.is_empty() => Ok(None),
        [Value::String(s)] => Ok(Some(s.clone())),
        [Value::Number(n)] => Ok(Some(n.to_string())),
        [_] => Err(format!("next page {what} at `{path}` is not a string")),
        many => Err(format!(
            "next page {what} at `{path}` gives {} values, not one",
            many.len()
        )),
    }
}

/// `url` with query parameter `name` set to `value` (replacing any it had).
pub fn with_param(url: &Url, name: &str, value: &str) -> Url {
    let mut u = url.clone();
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != name)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    u.query_pairs_mut()
        .clear()
        .extend_pairs(kept)
        .append_pair(name, value);
    u
}

/// The target of the first link with relation type `next` in a `Link` header value (several
/// header lines joined with `,`), as written (maybe relative).
pub fn link_next(header: &str) -> Option<String> {
    parse_links(header)
        .into_iter()
        .find(|(_, rels)| rels.iter().any(|r| r == "next"))
        .map(|(target, _)| target)
}

/// RFC 8288 link-values: `<target>; rel="a b"; other=x, <target2>; rel=c`. Relation types are
/// lowercased; the first `rel` parameter of a link counts (RFC 8288 §3.3).
fn parse_links(header: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut chars = header.chars().peekable();
    loop {
        // Up to the next `<`; anything else before it is noise between link-values.
        if !chars.by_ref().any(|c| c == '<') {
            return out;
        }
        let target: String = chars.by_ref().take_while(|c| *c != '>').collect();
        let mut rels: Option<Vec<String>> = None;
        // Parameters until a `,` outside quotes, or the end.
        loop {
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
            match chars.next() {
                Some(';') => {
                    let mut name = String::new();
                    while let Some(c) = chars.next_if(|c| !matches!(c, '=' | ';' | ',')) {
                        name.push(c);
                    }
                    let mut value = String::new();
                    if chars.next_if_eq(&'=').is_some() {
                        while chars.next_if(|c| c.is_whitespace()).is_some() {}
                        if chars.next_if_eq(&'"').is_some() {
                            while let Some(c) = chars.next() {
                                match c {
                                    '"' => break,
                                    '\\' => value.extend(chars.next()),
                                    c => value.push(c),
                                }
                            }
                        } else {
                            while let Some(c) = chars.next_if(|c| !matches!(c, ';' | ',')) {
                                value.push(c);
                            }
                        }
                    }
                    if name.trim().eq_ignore_ascii_case("rel") && rels.is_none() {
                        rels = Some(
                            value
                                .split_whitespace()
                                .map(|r| r.to_ascii_lowercase())
                                .collect(),
                        );
                    }
                }
                Some(',') | None => break,
                Some(_) => {}
            }
        }
        out.push((target.trim().to_string(), rels.unwrap_or_default()));
        if chars.peek().is_none() {
            return out;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonpath::Path;
    use serde_json::json;
    use std::time::Duration;

    fn source(url: &str) -> Source {
        Source {
            url: url.parse().unwrap(),
            method: crate::config::raw::Method::GET,
            headers: vec![],
            body: None,
            timeout: Duration::from_secs(1),
            max_body: 1000,
            conditional: true,
            paginate: None,
            cursor: None,
            format: Default::default(),
            auth: None,
            proxy: None,
        }
    }

    #[test]
    fn link_picks_next_among_prev_last_first() {
        // GitHub's header, from the recorded fixture.
        let gh = r#"<https://api.github.com/repositories/1000/issues?per_page=3&page=1>; rel="prev", <https://api.github.com/repositories/1000/issues?per_page=3&page=3>; rel="next", <https://api.github.com/repositories/1000/issues?per_page=3&page=5>; rel="last", <https://api.github.com/repositories/1000/issues?per_page=3&page=1>; rel="first""#;
        assert_eq!(
            link_next(gh).unwrap(),
            "https://api.github.com/repositories/1000/issues?per_page=3&page=3"
        );
        let last_page = r#"<https://x/a?page=4>; rel="prev", <https://x/a?page=1>; rel="first""#;
        assert_eq!(link_next(last_page), None);
        // Unquoted, several types in one rel, commas inside the target, odd case and spacing.
        assert_eq!(
            link_next("</a?x=1,2>;rel=prev ,  </b?c=3,4> ; title=\"a, b; c\" ; REL=\"last Next\"")
                .unwrap(),
            "/b?c=3,4"
        );
        // The first rel parameter of a link counts.
        assert_eq!(link_next("</a>; rel=prev; rel=next"), None);
        assert_eq!(link_next(""), None);
        assert_eq!(link_next("garbage"), None);
    }

    #[test]
    fn next_urls_resolve_and_stay_on_the_source_origin() {
        let src = source("http://127.0.0.1:8000/items?limit=2&cursor=old");
        let page: Url = "http://127.0.0.1:8000/items?page=1".parse().unwrap();
        let body = json!({"next": "/items?page=2", "meta": {"cursor": "c2", "n": 7}, "none": null, "empty": ""});
        let link = Next::Link;
        assert_eq!(
            next_url(&link, &src, &page, Some("<?page=2>; rel=\"next\""), &body)
                .unwrap()
                .unwrap()
                .as_str(),
            "http://127.0.0.1:8000/items?page=2"
        );
        assert_eq!(next_url(&link, &src, &page, None, &body).unwrap(), None);
        let by_url = |p: &str| Next::Url(Path::parse(p).unwrap());
        assert_eq!(
            next_url(&by_url("$.next"), &src, &page, None, &body)
                .unwrap()
                .unwrap()
                .as_str(),
            "http://127.0.0.1:8000/items?page=2"
        );
        for end in ["$.none", "$.empty", "$.absent"] {
            assert_eq!(
                next_url(&by_url(end), &src, &page, None, &body).unwrap(),
                None
            );
        }
        let cursor = |from: &str| Next::Param {
            param: "cursor".into(),
            from: Path::parse(from).unwrap(),
        };
        // The cursor replaces the parameter on the source URL, whatever page we are on.
        assert_eq!(
            next_url(&cursor("$.meta.cursor"), &src, &page, None, &body)
                .unwrap()
                .unwrap()
                .as_str(),
            "http://127.0.0.1:8000/items?limit=2&cursor=c2"
        );
        assert_eq!(
            next_url(&cursor("$.meta.n"), &src, &page, None, &body)
                .unwrap()
                .unwrap()
                .query(),
            Some("limit=2&cursor=7")
        );
        assert_eq!(
            next_url(&cursor("$.none"), &src, &page, None, &body).unwrap(),
            None
        );
        let e = next_url(&cursor("$.meta"), &src, &page, None, &body).unwrap_err();
        assert_eq!(e, "next page cursor at `$.meta` is not a string");
        // Another host (or port, or scheme) would get the source's credentials: refused.
        let e = next_url(
            &link,
            &src,
            &page,
            Some("<http://localhost:8000/items?page=2&token=t0p>; rel=\"next\""),
            &body,
        )
        .unwrap_err();
        assert!(e.contains("not on the source's origin"), "{e}");
        assert!(!e.contains("t0p"), "{e}");
    }
}

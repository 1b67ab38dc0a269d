//! The bridge's 304 cache: per page URL, the validators of its last 200 answer (and its body,
//! stored apart), so that a 304 can stand for the page it confirms. Keys are hashes of the URL.

use super::*;

/// What is kept of the last 200 answer of one page of a listing, besides its body (which is
/// stored apart, in `page_bodies`, and read only when a 304 needs it): what a 304 stands for.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CachedPage {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// The `Link` header (for `paginate.next: link`).
    pub link: Option<String>,
    /// [`page_digest`] of the body when the body is stored: a 200 with the same validators
    /// and body needs no write.
    pub digest: Option<String>,
}

/// What a commit does with one cached page.
#[derive(Debug, Clone, PartialEq)]
pub enum PageWrite {
    /// Keep it as stored (a 304, or a 200 the same as the stored record).
    Keep,
    /// Store its validators only: no 304 of this listing will need the body (one page, no
    /// absences counted). Its `digest` is None.
    Head(CachedPage),
    /// Store its validators and its body.
    Full(CachedPage, Arc<String>),
}

impl PageWrite {
    /// The validators to be stored, if any are written.
    pub fn head(&self) -> Option<&CachedPage> {
        match self {
            PageWrite::Keep => None,
            PageWrite::Head(h) | PageWrite::Full(h, _) => Some(h),
        }
    }
}

/// A short content hash (the first 16 bytes of SHA-256, in hex): of a page body for its
/// digest, and of a page URL for its key.
pub fn page_digest(body: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(body.as_bytes())[..16])
}

/// A cached page's record in `pages`: a 4-byte length, then the validators as a JSON array.
/// Records written before bodies were stored apart carry the body after the array.
pub(super) fn encode_page(p: &CachedPage) -> Vec<u8> {
    let head = super::record_bytes(&(&p.etag, &p.last_modified, &p.link, &p.digest));
    let mut out = Vec::with_capacity(4 + head.len());
    out.extend_from_slice(&(head.len() as u32).to_be_bytes());
    out.extend_from_slice(&head);
    out
}

/// The record's validators, and where its body starts (old records only).
pub(super) fn decode_page(b: &[u8]) -> Option<(CachedPage, usize)> {
    let n = u32::from_be_bytes(b.get(..4)?.try_into().ok()?) as usize;
    let head = b.get(4..4 + n)?;
    let mut fields: Vec<Option<String>> = serde_json::from_slice(head).ok()?;
    fields.resize(4, None);
    let mut f = fields.into_iter();
    let page = CachedPage {
        etag: f.next()?,
        last_modified: f.next()?,
        link: f.next()?,
        digest: f.next()?,
    };
    Some((page, 4 + n))
}

/// The key of a page in the `pages` tree: a hash of its URL, so that tokens in a URL's query
/// are not written to disk as keys.
pub fn page_key(url: &str) -> String {
    page_digest(url)
}

impl Store {
    /// The cached pages of a bridge (their validators), by `page_key`.
    pub fn pages(&self, bridge: &str) -> Result<HashMap<String, CachedPage>, StoreError> {
        Ok(
            Self::scan(&self.pages, bridge, "page", |b| decode_page(b).map(|p| p.0))?
                .into_iter()
                .collect(),
        )
    }

    /// The validators of one cached page of a bridge, by its `page_key`: one read, where
    /// [`Store::pages`] scans them all.
    pub fn page(&self, bridge: &str, key: &str) -> Result<Option<CachedPage>, StoreError> {
        let mut k = prefix(&[bridge]);
        k.extend_from_slice(key.as_bytes());
        match self.pages.get(&k)? {
            Some(rec) => decode_page(&rec)
                .map(|(p, _)| Some(p))
                .ok_or_else(|| StoreError::Corrupt(format!("{bridge}/page {key}"))),
            None => Ok(None),
        }
    }

    /// Forgets the stored bodies of a bridge's cached pages, keeping their validators: what a
    /// lost body looks like (tests use it; a poll then fetches the listing again in full).
    pub fn forget_page_bodies(&self, bridge: &str) -> Result<usize, StoreError> {
        let (n, garbage) = values::remove_prefix(
            &self.page_bodies,
            &self.parts,
            Kind::PageBody,
            &prefix(&[bridge]),
        )?;
        self.collect(garbage)?;
        Ok(n)
    }

    /// The stored body of one cached page.
    pub fn page_body(&self, bridge: &str, key: &str) -> Result<Option<String>, StoreError> {
        let mut k = prefix(&[bridge]);
        k.extend_from_slice(key.as_bytes());
        let corrupt = || StoreError::Corrupt(format!("{bridge}/page {key}"));
        let stored = self.value(&self.page_bodies, Kind::PageBody, &k, || {
            format!("{bridge}/page {key}")
        })?;
        let body = match stored {
            Some(b) => b,
            // A record from before bodies were stored apart carries its own.
            None => match self.pages.get(&k)? {
                Some(rec) => {
                    let (_, at) = decode_page(&rec).ok_or_else(corrupt)?;
                    if at == rec.len() {
                        return Ok(None);
                    }
                    rec[at..].to_vec()
                }
                None => return Ok(None),
            },
        };
        String::from_utf8(body).map(Some).map_err(|_| corrupt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(url: &str, etag: &str) -> (String, PageWrite) {
        let head = CachedPage {
            etag: Some(etag.into()),
            digest: Some(page_digest("[]")),
            ..Default::default()
        };
        (
            page_key(url),
            PageWrite::Full(head, Arc::new("[]".to_string())),
        )
    }

    #[test]
    fn pages_are_replaced_with_the_state_and_forgotten_on_reset() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let mut c = Commit {
            bridge: "b".into(),
            meta: BridgeMeta {
                seq: 0,
                baselined: true,
                ..Default::default()
            },
            pages: vec![pg("u1", "e1"), pg("u2", "e2")],
            ..Default::default()
        };
        s.commit(&c).unwrap();
        // Another bridge whose name starts the same keeps its own pages.
        let other = Commit {
            bridge: "bb".into(),
            pages: vec![pg("u9", "e9")],
            ..Default::default()
        };
        s.commit(&other).unwrap();
        assert_eq!(s.pages("b").unwrap().len(), 2);
        // The next poll's set replaces the old one: u2 goes, u1 changes, u3 comes.
        c.pages = vec![pg("u1", "e1b"), pg("u3", "e3")];
        s.commit(&c).unwrap();
        let p = s.pages("b").unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[&page_key("u1")].etag.as_deref(), Some("e1b"));
        assert!(p.contains_key(&page_key("u3")));
        // One page read alone is the same record; one not stored (or another bridge's) is none.
        for key in [page_key("u1"), page_key("u3")] {
            assert_eq!(s.page("b", &key).unwrap().as_ref(), p.get(&key));
        }
        assert_eq!(s.page("b", &page_key("u2")).unwrap(), None);
        assert_eq!(s.page("b", &page_key("u9")).unwrap(), None);
        assert!(s.page("bb", &page_key("u9")).unwrap().is_some());
        assert_eq!(
            s.page_body("b", &page_key("u3")).unwrap().as_deref(),
            Some("[]")
        );
        assert_eq!(s.page_body("b", &page_key("u2")).unwrap(), None);
        // A kept page stays as stored; one not listed goes, body and all.
        c.pages = vec![(page_key("u3"), PageWrite::Keep)];
        s.commit(&c).unwrap();
        let p = s.pages("b").unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(
            s.page_body("b", &page_key("u3")).unwrap().as_deref(),
            Some("[]")
        );
        assert_eq!(s.page_body("b", &page_key("u1")).unwrap(), None);
        // Validators alone: the stored body goes.
        let head = CachedPage {
            etag: Some("e3b".into()),
            ..Default::default()
        };
        c.pages = vec![(page_key("u3"), PageWrite::Head(head.clone()))];
        s.commit(&c).unwrap();
        assert_eq!(s.pages("b").unwrap()[&page_key("u3")], head);
        assert_eq!(s.page_body("b", &page_key("u3")).unwrap(), None);
        c.pages = vec![pg("u3", "e3")];
        s.commit(&c).unwrap();
        // A refused commit writes no page either.
        c.expected_seq = 7;
        c.pages = vec![];
        assert!(matches!(s.commit(&c), Err(StoreError::Conflict(_))));
        assert_eq!(s.pages("b").unwrap().len(), 1);
        assert!(s.page_body("b", &page_key("u3")).unwrap().is_some());
        s.reset("b").unwrap();
        assert_eq!(s.page_body("b", &page_key("u3")).unwrap(), None);
        assert!(s.pages("b").unwrap().is_empty());
        assert_eq!(s.pages("bb").unwrap().len(), 1);
    }
}

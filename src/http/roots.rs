//! The CA certificates pollhook verifies https servers against: the system's store (what
//! `SSL_CERT_FILE` and `SSL_CERT_DIR` name, else the distribution's bundle, on Debian the
//! `ca-certificates` package), or, when that holds none, the copy of Mozilla's root set built
//! into pollhook, with a WARN saying so. Loaded once a process. Without it a host with no CA
//! bundle could not even build an HTTP client: the daemon panicked at start, `http://`
//! bridges and all.

use rustls::pki_types::CertificateDer;
use std::fmt;
use std::sync::OnceLock;

/// Where the roots in use come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The system's store.
    System,
    /// Built into pollhook (the system's store held none).
    Bundled,
}

/// The trust anchors every https client of this process uses.
pub struct Roots {
    pub origin: Origin,
    certs: Vec<reqwest::Certificate>,
}

impl Roots {
    /// How many certificates.
    pub fn len(&self) -> usize {
        self.certs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }

    /// The certificates, for a client builder's `tls_certs_only`.
    pub fn certificates(&self) -> Vec<reqwest::Certificate> {
        self.certs.clone()
    }
}

impl fmt::Display for Roots {
    /// `146 CA certificates from the system` or `150 CA certificates bundled with
    /// pollhook`, as the start line says it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.origin {
            Origin::System => write!(f, "{} CA certificates from the system", self.len()),
            Origin::Bundled => write!(f, "{} CA certificates bundled with pollhook", self.len()),
        }
    }
}

/// The roots of this process: loaded (and, if bundled, warned about) on the first call.
pub fn roots() -> &'static Roots {
    static ROOTS: OnceLock<Roots> = OnceLock::new();
    ROOTS.get_or_init(load)
}

fn load() -> Roots {
    let found = rustls_native_certs::load_native_certs();
    let system = usable(found.certs);
    if !system.is_empty() {
        return Roots {
            origin: Origin::System,
            certs: system,
        };
    }
    let why = match found.errors.first() {
        Some(e) => format!(" ({e})"),
        None => String::new(),
    };
    let roots = bundled();
    tracing::warn!(
        tls_roots = %"bundled",
        certificates = roots.len(),
        "no CA certificates in the system store{why}: https servers are verified against the {} \
         roots bundled with pollhook (Mozilla's, as of its build); install ca-certificates or \
         set SSL_CERT_FILE to use the system's",
        roots.len()
    );
    roots
}

/// Mozilla's root set as built into pollhook.
pub fn bundled() -> Roots {
    Roots {
        origin: Origin::Bundled,
        certs: usable(webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().cloned()),
    }
}

/// The certificates rustls takes as trust anchors; one that does not parse is left out, as
/// the system verifier leaves it out, rather than failing every client built with it.
fn usable(certs: impl IntoIterator<Item = CertificateDer<'static>>) -> Vec<reqwest::Certificate> {
    certs
        .into_iter()
        .filter(|c| rustls::RootCertStore::empty().add(c.clone()).is_ok())
        .filter_map(|c| reqwest::Certificate::from_der(&c).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_set_is_there_and_parses() {
        let b = bundled();
        assert_eq!(b.origin, Origin::Bundled);
        // Mozilla's set has well over 100 roots; all of them parse.
        assert!(b.len() > 100, "{}", b.len());
        assert_eq!(b.len(), webpki_root_certs::TLS_SERVER_ROOT_CERTS.len());
        assert_eq!(
            b.to_string(),
            format!("{} CA certificates bundled with pollhook", b.len())
        );
    }

    #[test]
    fn a_certificate_that_does_not_parse_is_left_out() {
        let good = webpki_root_certs::TLS_SERVER_ROOT_CERTS[0].clone();
        let bad = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
        assert_eq!(usable([bad.clone(), good, bad]).len(), 1);
    }
}

//! A host with no CA certificates (a Debian without `ca-certificates`): the daemon starts and
//! polls its `http://` bridges, and verifies `https://` servers against the roots bundled with
//! it, saying so in a WARN; with CA certificates in the system store it trusts those. The
//! system store is what `SSL_CERT_FILE` and `SSL_CERT_DIR` name, so the tests set both.
//!
//! fixtures/tls: a test CA (`ca.pem`) and a certificate it signed for 127.0.0.1 and localhost
//! (`server.pem`, key `server.key`), valid for 100 years, made with openssl once:
//!   openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 36500 \
//!     -subj "/CN=pollhook test CA" -addext basicConstraints=critical,CA:TRUE \
//!     -addext keyUsage=critical,keyCertSign,cRLSign -keyout ca.key -out ca.pem
//!   then a CSR for CN=localhost signed with `openssl x509 -req -CA ca.pem -CAkey ca.key` and
//!   subjectAltName=IP:127.0.0.1,DNS:localhost, extendedKeyUsage=serverAuth; the key as PKCS#8.

use crate::support::*;
use axum::Router;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const NO_SYSTEM_ROOTS: &str = "no CA certificates in the system store";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/fixtures/tls")
        .join(name)
}

/// `SSL_CERT_FILE` and `SSL_CERT_DIR` naming an empty file and an empty directory in `dir`:
/// a system store with nothing in it.
fn empty_store(dir: &Path) -> Vec<(&'static str, String)> {
    let (file, certs) = (dir.join("no-certs.pem"), dir.join("no-certs.d"));
    std::fs::write(&file, "").unwrap();
    std::fs::create_dir_all(&certs).unwrap();
    vec![
        ("SSL_CERT_FILE", file.display().to_string()),
        ("SSL_CERT_DIR", certs.display().to_string()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_system_ca_certificates_an_http_bridge_starts_polls_and_delivers() {
    let up = Upstream::start().await;
    let rx = Receiver::start().await;
    up.set_json(&json!({"items": [{"id": 1}]}));
    let dir = tempfile::tempdir().unwrap();
    BridgeYaml::new(&up.url())
        .first_poll("emit")
        .signed_sink(&rx.url())
        .write(dir.path(), "plain");
    let env = empty_store(dir.path());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let d = Daemon::start(dir.path(), &env);
    until("the event delivered over http", || rx.received().len() == 1).await;
    let logs = d.logs();
    let warn = logs
        .lines()
        .find(|l| l.contains(NO_SYSTEM_ROOTS))
        .unwrap_or_else(|| panic!("no WARN about the roots in {logs}"));
    assert!(
        warn.starts_with(" WARN ") || warn.contains(" WARN "),
        "{warn}"
    );
    assert!(
        warn.contains("roots bundled with pollhook") && warn.contains("install ca-certificates"),
        "{warn}"
    );
    assert_eq!(logs.matches(NO_SYSTEM_ROOTS).count(), 1, "once: {logs}");
    let started = logs
        .lines()
        .find(|l| l.contains("pollhook started"))
        .unwrap_or_else(|| panic!("{logs}"));
    assert!(started.contains("tls_roots=bundled"), "{started}");
    let (code, _, err) = d.terminate().await;
    assert_eq!(code, 0, "{}", err.join("\n"));
    assert!(!err.join("\n").contains("panicked"), "{}", err.join("\n"));
}

/// A TLS listener for axum: accepts TCP, then the handshake with `server.pem`.
struct Tls {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for Tls {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            // A client that refuses the certificate ends its handshake: wait for the next.
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// An https server on 127.0.0.1 answering every request with `body`; its URL.
async fn https_source(body: serde_json::Value) -> String {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certs = vec![CertificateDer::from_pem_file(fixture("server.pem")).unwrap()];
    let key = PrivateKeyDer::from_pem_file(fixture("server.key")).unwrap();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let app = Router::new().fallback(move || {
        let body = body.clone();
        async move { axum::Json(body) }
    });
    tokio::spawn(async move { axum::serve(Tls { tcp, acceptor }, app).await });
    format!("https://127.0.0.1:{port}/items")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_source_is_verified_against_the_system_store_else_the_bundled_roots() {
    let url = https_source(json!({"items": [{"id": 7}]})).await;
    let dir = tempfile::tempdir().unwrap();
    BridgeYaml::new(&url)
        .first_poll("emit")
        .sink("console")
        .write(dir.path(), "secure");
    let poll = |env: Vec<(&'static str, String)>| {
        let mut c = pollhook_in(dir.path(), &["poll", "secure", "--admin", "127.0.0.1:1"]);
        c.env("RUST_LOG", "info").envs(env);
        output_apart(c)
    };
    // The test CA in the system store: trusted, the item read.
    let ca = fixture("ca.pem").display().to_string();
    let empty = dir.path().join("empty.d");
    std::fs::create_dir_all(&empty).unwrap();
    let store = vec![
        ("SSL_CERT_FILE", ca),
        ("SSL_CERT_DIR", empty.display().to_string()),
    ];
    let (code, out, err) = poll(store).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"id\":7") || out.contains("\"7\""), "{out}");
    assert!(!err.contains(NO_SYSTEM_ROOTS), "{err}");
    // None in the system store: the bundled roots, which do not hold the test CA. The poll
    // fails on the certificate (it is not accepted unverified), and a WARN says why.
    let (code, out, err) = poll(empty_store(dir.path())).await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    let warn = err
        .lines()
        .find(|l| l.contains(NO_SYSTEM_ROOTS))
        .unwrap_or_else(|| panic!("no WARN about the roots in {err}"));
    assert!(warn.contains(" WARN "), "{warn}");
    assert!(warn.contains("roots bundled with pollhook"), "{warn}");
    assert!(
        err.contains("bridge secure:") && err.contains("UnknownIssuer"),
        "the certificate is what fails: {err}"
    );
    assert!(out.is_empty(), "{out}");
}

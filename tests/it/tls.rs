//! Real TLS on loopback: the GitHub client (octocrab over agentctl's reqwest client, one rustls
//! config for the process: `src/tls.rs`) trusts a CA from the system store — here given by
//! `SSL_CERT_FILE`, as a corporate CA on a self-hosted runner would be installed — and refuses a
//! server whose certificate is under no trusted root, before sending any request.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::common::agentctl;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls").join(name)
}

/// A one-connection HTTPS server on 127.0.0.1 answering `204 No Content`; the join handle
/// gives the request head it read (`None` when the handshake failed).
fn https_once() -> (u16, std::thread::JoinHandle<Option<String>>) {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(fixture("server.pem")).unwrap().map(Result::unwrap).collect();
    let key = PrivateKeyDer::from_pem_file(fixture("server-key.pem")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        tcp.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
        let conn = rustls::ServerConnection::new(config).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match tls.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => return None,
            }
        }
        tls.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n").ok()?;
        tls.conn.send_close_notify();
        tls.flush().ok()?;
        Some(String::from_utf8_lossy(&head).into_owned())
    });
    (port, handle)
}

#[test]
fn the_github_client_trusts_a_ca_from_the_system_store() {
    let (port, server) = https_once();
    let out = agentctl()
        .env("SSL_CERT_FILE", fixture("ca.pem"))
        .env("GITHUB_API_URL", format!("https://localhost:{port}"))
        .env("GITHUB_TOKEN", "ghs_tlstest0000000000000000000000000000")
        .args(["token-refresh", "revoke"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let head = server.join().unwrap().expect("a request over TLS");
    assert!(head.starts_with("DELETE /installation/token HTTP/1.1\r\n"), "{head}");
    let auth = head.lines().find(|l| l.to_ascii_lowercase().starts_with("authorization:")).unwrap_or_default();
    assert!(auth.ends_with(" ghs_tlstest0000000000000000000000000000"), "{head}");
}

#[test]
fn a_certificate_under_no_trusted_root_is_refused_before_any_request() {
    let (port, server) = https_once();
    // The machine's own trust store (no SSL_CERT_FILE): the test CA is not in it.
    let out = agentctl()
        .env("GITHUB_API_URL", format!("https://localhost:{port}"))
        .env("GITHUB_TOKEN", "ghs_tlstest0000000000000000000000000000")
        .args(["token-refresh", "revoke"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.to_ascii_lowercase().contains("certificate"), "{stderr}");
    assert!(!stderr.contains("ghs_tlstest"), "{stderr}");
    assert_eq!(server.join().unwrap(), None, "no request may be read over an untrusted connection");
}

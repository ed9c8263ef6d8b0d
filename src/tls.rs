//! HTTPS for the listener: the PEM certificate chain and private key named
//! in `[server.tls]` become a rustls 0.23 server configuration (ring
//! provider, TLS 1.2 and 1.3). actix-web adds the ALPN protocols (`h2`,
//! `http/1.1`) when it binds, so clients that speak HTTP/2 get it.
//!
//! Every way the files can be wrong is a start-up error naming the file and
//! what is wrong with it; nothing from a key file is ever echoed.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsSettings;

/// Builds the server configuration from the certificate and key files.
pub fn server_config(tls: &TlsSettings) -> anyhow::Result<rustls::ServerConfig> {
    let certs = load_certs(&tls.cert)?;
    let key = load_key(&tls.key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .with_context(|| {
            format!(
                "TLS: the key {} does not go with the certificate {}",
                tls.key.display(),
                tls.cert.display()
            )
        })
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading the TLS {what} {}", path.display()))
}

fn load_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = read(path, "certificate")?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("TLS certificate {}: {}", path.display(), describe(&e)))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "TLS certificate {}: no PEM certificate (-----BEGIN CERTIFICATE-----) in the file",
        path.display()
    );
    Ok(certs)
}

fn load_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let pem = read(path, "key")?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        pem::Error::NoItemsFound => anyhow::anyhow!(
            "TLS key {}: no PEM private key (PKCS#8, PKCS#1 or SEC1) in the file",
            path.display()
        ),
        e => anyhow::anyhow!("TLS key {}: {}", path.display(), describe(&e)),
    })
}

/// A PEM error in words, without the file's content.
fn describe(e: &pem::Error) -> &'static str {
    match e {
        pem::Error::NoItemsFound => "nothing PEM-encoded in the file",
        pem::Error::Base64Decode(_) => "a PEM section is not valid base64",
        pem::Error::MissingSectionEnd { .. } => "a PEM section has no END line",
        pem::Error::IllegalSectionStart { .. } => "a PEM section has a malformed BEGIN line",
        pem::Error::Io(_) => "unreadable",
        _ => "not a valid PEM file",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn settings(cert: std::path::PathBuf, key: std::path::PathBuf) -> TlsSettings {
        TlsSettings { cert, key }
    }

    #[test]
    fn a_generated_certificate_and_key_load() {
        let dir = tempfile::tempdir().unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = write(dir.path(), "c.pem", &ck.cert.pem());
        let key = write(dir.path(), "k.pem", &ck.signing_key.serialize_pem());
        server_config(&settings(cert, key)).unwrap();
    }

    #[test]
    fn bad_files_are_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = write(dir.path(), "c.pem", &ck.cert.pem());
        let key = write(dir.path(), "k.pem", &ck.signing_key.serialize_pem());
        let other_key = write(dir.path(), "o.pem", &other.signing_key.serialize_pem());
        let junk = write(dir.path(), "junk.pem", "not a certificate\n");
        let missing = dir.path().join("missing.pem");
        let err = |c: &Path, k: &Path| {
            format!(
                "{:#}",
                server_config(&settings(c.to_path_buf(), k.to_path_buf())).unwrap_err()
            )
        };
        let e = err(&missing, &key);
        assert!(
            e.contains("reading the TLS certificate") && e.contains("missing.pem"),
            "{e}"
        );
        let e = err(&junk, &key);
        assert!(
            e.contains("junk.pem") && e.contains("no PEM certificate"),
            "{e}"
        );
        let e = err(&cert, &junk);
        assert!(
            e.contains("junk.pem") && e.contains("no PEM private key"),
            "{e}"
        );
        // A certificate where the key belongs is no key either.
        let e = err(&cert, &cert);
        assert!(e.contains("no PEM private key"), "{e}");
        let e = err(&cert, &other_key);
        assert!(e.contains("does not go with the certificate"), "{e}");
        // The key's content never appears in an error.
        let secret = ck.signing_key.serialize_pem();
        let body = secret.lines().nth(1).unwrap();
        assert!(!err(&key, &key).contains(body));
    }
}

//! TLS for NATS connections (rustls): the trusted roots (the config's CAs, else those of
//! the `client::tls` module), the optional client certificate, and the switch to TLS right after the
//! server's INFO.

use std::io::BufReader;
use std::sync::Arc;

use super::proto::{Conn, Stream};
use super::NatsConfig;
use crate::error::{Error, Result};

/// The TLS client settings of `cfg`: its CAs (else the trusted roots) and client key.
pub(super) fn tls_config(cfg: &NatsConfig) -> Result<Arc<rustls::ClientConfig>> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: String| Error::Invalid(format!("nats tls: {what}"));
    let mut roots = rustls::RootCertStore::empty();
    if cfg.root_cas.is_empty() {
        crate::client::tls::add_to(&mut roots)?;
    }
    for p in &cfg.root_cas {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(p)
            .and_then(|it| it.collect())
            .map_err(|e| bad(format!("root CA file {}: {e}", p.display())))?;
        if certs.is_empty() {
            return Err(bad(format!(
                "root CA file {} holds no certificate",
                p.display()
            )));
        }
        for c in certs {
            roots
                .add(c)
                .map_err(|e| bad(format!("root CA file {}: {e}", p.display())))?;
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| bad(e.to_string()))?
    .with_root_certificates(roots);
    let config = match &cfg.client_cert {
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect())
                .map_err(|e| bad(format!("client certificate {}: {e}", cert.display())))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| bad(format!("client key {}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| bad(format!("client certificate: {e}")))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The host part of `host:port` (brackets of an IPv6 address removed).
pub(super) fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr);
    host.trim_start_matches('[').trim_end_matches(']')
}

impl Conn {
    /// Starts TLS on the connection, right after the server's INFO.
    pub(super) fn upgrade(self, cfg: &NatsConfig) -> Result<Conn> {
        if !self.io.buffer().is_empty() {
            return Err(Error::State(format!(
                "nats server {} sent more than INFO before TLS started",
                cfg.addr
            )));
        }
        let Stream::Plain(tcp) = self.io.into_inner() else {
            return Err(Error::State("nats: TLS started twice".into()));
        };
        let name = rustls_pki_types::ServerName::try_from(host_of(&cfg.addr).to_string())
            .map_err(|e| Error::Invalid(format!("nats tls: server name {}: {e}", cfg.addr)))?;
        let session = rustls::ClientConnection::new(tls_config(cfg)?, name)
            .map_err(|e| Error::Invalid(format!("nats tls: {e}")))?;
        Ok(Conn {
            io: BufReader::with_capacity(
                256 << 10,
                Stream::Tls(Box::new(rustls::StreamOwned::new(session, tcp))),
            ),
            server: self.server,
            inbox: self.inbox,
            next: self.next,
        })
    }
}

//! Which certificate authorities TLS connections trust, for HTTPS and NATS alike:
//! `SSL_CERT_FILE` / `SSL_CERT_DIR` when set (the variables Go's crypto/x509 reads, so the
//! official binary honours the same ones), else the system's CA bundle (the paths Go
//! reads on Linux), else Mozilla's roots built into the binary (the `webpki-roots` feature;
//! without it, a clear error); plus the certificates of `AWS_CA_BUNDLE` when set (the AWS
//! SDKs' variable, which adds to those roots).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::error::{Error, Result};

/// Bundles of the Linux distributions Go knows, in its order.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/tls/cacert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// The trusted roots.
#[derive(Clone, Debug)]
pub(crate) enum Roots {
    /// Certificates read from PEM files.
    Certs(Arc<Vec<CertificateDer<'static>>>),
    /// Mozilla's roots, built in (no bundle on this system).
    #[cfg(feature = "webpki-roots")]
    Mozilla,
}

/// The trusted roots, read once per process.
pub(crate) fn roots() -> Result<Roots> {
    static ROOTS: OnceLock<std::result::Result<Roots, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            load(|k| {
                std::env::var_os(k)
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            })
        })
        .clone()
        .map_err(Error::Invalid)
}

fn load(env: impl Fn(&str) -> Option<PathBuf>) -> std::result::Result<Roots, String> {
    load_with(env, SYSTEM_BUNDLES)
}

/// [`load`] with the system bundles to look for.
fn load_with(
    env: impl Fn(&str) -> Option<PathBuf>,
    bundles: &[&str],
) -> std::result::Result<Roots, String> {
    let base = load_base(&env, bundles);
    let Some(bundle) = env("AWS_CA_BUNDLE") else {
        return base.map_err(|e| e.to_string());
    };
    if let Err(Base::Invalid(e)) = base {
        return Err(e);
    }
    let extra = read_pem(&bundle).map_err(|e| format!("AWS_CA_BUNDLE: {e}"))?;
    if extra.is_empty() {
        return Err(format!(
            "no CA certificate found in AWS_CA_BUNDLE={}",
            bundle.display()
        ));
    }
    log::debug!(
        "tls: also trusting the {} CA certificates of AWS_CA_BUNDLE",
        extra.len()
    );
    // Without a system bundle the bundle stands alone, as Go's empty system pool does.
    let mut certs = match base {
        Ok(Roots::Certs(c)) => c.as_ref().clone(),
        #[cfg(feature = "webpki-roots")]
        Ok(Roots::Mozilla) => Vec::new(),
        Err(_) => Vec::new(),
    };
    certs.extend(extra);
    Ok(Roots::Certs(Arc::new(certs)))
}

/// Why there are no roots before `AWS_CA_BUNDLE`.
#[derive(Debug)]
enum Base {
    /// `SSL_CERT_FILE` / `SSL_CERT_DIR` are set but unusable.
    Invalid(String),
    /// No system bundle, and no built-in roots in this build (an `AWS_CA_BUNDLE` may
    /// still stand alone).
    #[cfg_attr(feature = "webpki-roots", allow(dead_code))]
    NoBundle,
}

impl std::fmt::Display for Base {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Base::Invalid(e) => f.write_str(e),
            Base::NoBundle => write!(
                f,
                "no CA certificates to trust: none of {} exists and SSL_CERT_FILE, SSL_CERT_DIR \
                 and AWS_CA_BUNDLE are unset; install the system's CA bundle \
                 (ca-certificates), point SSL_CERT_FILE at one, or build with the \
                 `webpki-roots` feature",
                SYSTEM_BUNDLES.join(", ")
            ),
        }
    }
}

/// The roots before `AWS_CA_BUNDLE` (see the module docs).
fn load_base(
    env: &impl Fn(&str) -> Option<PathBuf>,
    bundles: &[&str],
) -> std::result::Result<Roots, Base> {
    let (file, dirs) = (env("SSL_CERT_FILE"), env("SSL_CERT_DIR"));
    if file.is_some() || dirs.is_some() {
        let mut certs = Vec::new();
        if let Some(f) = &file {
            certs.extend(read_pem(f).map_err(Base::Invalid)?);
        }
        for dir in dirs
            .iter()
            .flat_map(|d| std::env::split_paths(d).collect::<Vec<_>>())
        {
            let rd = std::fs::read_dir(&dir)
                .map_err(|e| Base::Invalid(format!("SSL_CERT_DIR {}: {e}", dir.display())))?;
            for e in rd.flatten() {
                // Hash links and bundles alike; files that are not PEM certificates are skipped.
                certs.extend(read_pem(&e.path()).unwrap_or_default());
            }
        }
        if certs.is_empty() {
            return Err(Base::Invalid(format!(
                "no CA certificate found in SSL_CERT_FILE={} SSL_CERT_DIR={}",
                file.as_deref().unwrap_or(Path::new("")).display(),
                dirs.as_deref().unwrap_or(Path::new("")).display()
            )));
        }
        return Ok(Roots::Certs(Arc::new(certs)));
    }
    for b in bundles {
        if let Ok(certs) = read_pem(Path::new(b)) {
            if !certs.is_empty() {
                log::debug!("tls: trusting the {} CA certificates of {b}", certs.len());
                return Ok(Roots::Certs(Arc::new(certs)));
            }
        }
    }
    #[cfg(feature = "webpki-roots")]
    {
        log::debug!("tls: no system CA bundle; trusting the built-in Mozilla roots");
        Ok(Roots::Mozilla)
    }
    #[cfg(not(feature = "webpki-roots"))]
    Err(Base::NoBundle)
}

fn read_pem(path: &Path) -> std::result::Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect())
        .map_err(|e| format!("CA certificates in {}: {e}", path.display()))
}

/// Adds the trusted roots to a rustls store.
pub(crate) fn add_to(store: &mut rustls::RootCertStore) -> Result<()> {
    match roots()? {
        Roots::Certs(certs) => {
            store.add_parsable_certificates(certs.iter().cloned());
        }
        #[cfg(feature = "webpki-roots")]
        Roots::Mozilla => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssl_cert_file_wins_and_must_hold_certificates() {
        let dir = std::env::temp_dir().join(format!("lsrs-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let env = |file: PathBuf| move |k: &str| (k == "SSL_CERT_FILE").then(|| file.clone());
        let e = load(env(empty)).unwrap_err();
        assert!(e.contains("no CA certificate"), "{e}");
        let e = load(env(dir.join("missing.pem"))).unwrap_err();
        assert!(e.contains("missing.pem"), "{e}");
        // Without the variables: the system bundle, else the built-in roots.
        match load(|_| None) {
            Ok(Roots::Certs(c)) => assert!(!c.is_empty()),
            #[cfg(feature = "webpki-roots")]
            Ok(Roots::Mozilla) => {
                assert!(SYSTEM_BUNDLES.iter().all(|b| !Path::new(b).exists()))
            }
            #[cfg(feature = "webpki-roots")]
            Err(e) => panic!("with built-in roots there is always a base: {e}"),
            #[cfg(not(feature = "webpki-roots"))]
            Err(e) => assert!(e.contains("webpki-roots"), "{e}"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn without_a_system_bundle() {
        let none = ["/nonexistent/ca-bundle.crt"];
        match load_with(|_| None, &none) {
            #[cfg(feature = "webpki-roots")]
            Ok(Roots::Mozilla) => {}
            #[cfg(not(feature = "webpki-roots"))]
            Err(e) => assert!(
                e.contains("ca-certificates") && e.contains("SSL_CERT_FILE"),
                "{e}"
            ),
            other => panic!("{other:?}"),
        }
        // An AWS_CA_BUNDLE stands alone, built-in roots or not.
        let Some(system) = SYSTEM_BUNDLES.iter().find(|b| Path::new(b).exists()) else {
            return;
        };
        let bundle = PathBuf::from(system);
        match load_with(|k| (k == "AWS_CA_BUNDLE").then(|| bundle.clone()), &none) {
            Ok(Roots::Certs(c)) => assert!(!c.is_empty()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn aws_ca_bundle_adds_to_the_roots() {
        let Some(ca) = std::env::var_os("LITESTREAM_TEST_CA").map(PathBuf::from) else {
            return;
        };
        let count = |r: std::result::Result<Roots, String>| match r {
            Ok(Roots::Certs(c)) => c.len(),
            _ => 0,
        };
        let base = count(load(|_| None));
        let both = count(load(|k| (k == "AWS_CA_BUNDLE").then(|| ca.clone())));
        assert!(
            both > base,
            "{both} roots with AWS_CA_BUNDLE, {base} without"
        );
        let e = load(|k| (k == "AWS_CA_BUNDLE").then(|| ca.with_extension("missing"))).unwrap_err();
        assert!(e.starts_with("AWS_CA_BUNDLE"), "{e}");
    }
}

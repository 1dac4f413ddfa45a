//! Serving certificates: loaded from files and reloaded when they change (Kubernetes swaps a
//! Secret volume through its `..data` symlink), or generated into the data directory when none
//! is given, so the server starts on a laptop with no flags.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A failure to load or make a certificate; names the file and the step.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("parsing {path}: {reason}")]
    Pem { path: PathBuf, reason: String },
    #[error("certificate and key do not form a usable pair")]
    Pair(#[source] rustls::Error),
    #[error("generating a certificate")]
    Generate(#[from] rcgen::Error),
    #[error("building the TLS configuration")]
    Config(#[source] rustls::Error),
}

/// Where the serving pair lives on disk.
#[derive(Debug, Clone)]
pub struct PairPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Reads and checks a PEM certificate chain and private key.
pub fn load_pair(paths: &PairPaths) -> Result<(CertifiedKey, Vec<u8>), TlsError> {
    let read = |path: &Path| {
        fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    let (cert_pem, key_pem) = (read(&paths.cert)?, read(&paths.key)?);
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: paths.cert.clone(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: paths.cert.clone(),
        });
    }
    // The key error is described without pki-types' text, which could quote key material.
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::Pem {
        path: paths.key.clone(),
        reason: "no readable PEM private key".into(),
    })?;
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    let certified = CertifiedKey::from_der(certs, key, &provider).map_err(TlsError::Pair)?;
    let mut fingerprint = cert_pem;
    fingerprint.extend_from_slice(&key_pem);
    Ok((certified, fingerprint))
}

/// Serves whatever pair was loaded last; swapped atomically by the reloader.
pub struct CertResolver {
    current: ArcSwap<CertifiedKey>,
}

impl fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CertResolver")
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The TLS side of a listener: the resolver and the files it follows.
pub struct Certificates {
    resolver: Arc<CertResolver>,
    paths: PairPaths,
    loaded: std::sync::Mutex<Vec<u8>>,
}

impl Certificates {
    /// Loads the pair; fails when the first load fails (a server without a certificate is
    /// useless), later failures keep the last good pair.
    pub fn load(paths: PairPaths) -> Result<Arc<Self>, TlsError> {
        let (key, fingerprint) = load_pair(&paths)?;
        Ok(Arc::new(Self {
            resolver: Arc::new(CertResolver {
                current: ArcSwap::from_pointee(key),
            }),
            paths,
            loaded: std::sync::Mutex::new(fingerprint),
        }))
    }

    /// A rustls server config over this pair, offering HTTP/2 and HTTP/1.1 (the apiserver
    /// uses either).
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_cert_resolver(self.resolver.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// Rereads the files; swaps in a changed pair that loads, keeps the old one otherwise.
    /// Returns whether a new pair is now served.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let (key, fingerprint) = load_pair(&self.paths)?;
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if *loaded == fingerprint {
            return Ok(false);
        }
        self.resolver.current.store(Arc::new(key));
        *loaded = fingerprint;
        Ok(true)
    }
}

/// Files of the self-managed CA and serving pair in the data directory.
pub struct Generated {
    pub ca: PathBuf,
    pub pair: PairPaths,
}

const CA_NAME: &str = "runsecrets local CA";
/// Lifetime of a generated serving certificate, and how long before expiry it is reissued.
const SERVING_LIFETIME: time::Duration = time::Duration::days(397);
const RENEW_BEFORE: time::Duration = time::Duration::days(30);

fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, CA_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(3650);
    Ok(params)
}

/// A new CA: its certificate and private key, PEM.
pub fn new_ca() -> Result<(String, zeroize::Zeroizing<String>), TlsError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let ca = ca_params()?.self_signed(&key)?;
    Ok((ca.pem(), zeroize::Zeroizing::new(key.serialize_pem())))
}

/// Puts a shared CA into `dir/tls` for [`ensure_generated`]; when it differs from the CA there,
/// the serving certificate is reissued from it.
pub fn install_ca(data_dir: &Path, ca_pem: &str, key_pem: &str) -> Result<(), TlsError> {
    let dir = data_dir.join("tls");
    fs::create_dir_all(&dir).map_err(|source| TlsError::Write {
        path: dir.clone(),
        source,
    })?;
    let ca_path = dir.join("ca.crt");
    if fs::read_to_string(&ca_path).ok().as_deref() == Some(ca_pem) {
        return Ok(());
    }
    KeyPair::from_pem(key_pem)?;
    write_file(&dir.join("ca.key"), key_pem.as_bytes(), true)?;
    write_file(&ca_path, ca_pem.as_bytes(), false)?;
    let _ = fs::remove_file(dir.join("tls.meta"));
    Ok(())
}

/// Reuses the CA and serving pair in `dir/tls`, or makes them. The serving certificate is
/// reissued from the same CA when the wanted names change, so clients keep trusting the CA.
pub fn ensure_generated(data_dir: &Path, sans: &[String]) -> Result<Generated, TlsError> {
    let dir = data_dir.join("tls");
    let files = Generated {
        ca: dir.join("ca.crt"),
        pair: PairPaths {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
        },
    };
    let ca_key_path = dir.join("ca.key");
    // What the serving certificate was issued for: its expiry, then one name per line.
    let meta_path = dir.join("tls.meta");
    fs::create_dir_all(&dir).map_err(|source| TlsError::Write {
        path: dir.clone(),
        source,
    })?;
    let read = |p: &Path| fs::read_to_string(p).ok();
    let ca_key = match (read(&ca_key_path), files.ca.exists()) {
        (Some(pem), true) => KeyPair::from_pem(&pem)?,
        _ => {
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
            let ca = ca_params()?.self_signed(&key)?;
            write_file(&ca_key_path, key.serialize_pem().as_bytes(), true)?;
            write_file(&files.ca, ca.pem().as_bytes(), false)?;
            let _ = fs::remove_file(&meta_path);
            key
        }
    };
    let now = time::OffsetDateTime::now_utc();
    let fresh = read(&meta_path)
        .filter(|_| files.pair.cert.exists() && files.pair.key.exists())
        .and_then(|meta| {
            let (expiry, names) = meta.split_once('\n').unwrap_or((meta.as_str(), ""));
            let expiry = expiry.strip_prefix("not_after=")?.parse::<i64>().ok()?;
            let renew_at = expiry - RENEW_BEFORE.whole_seconds();
            (names == sans.join("\n") && now.unix_timestamp() < renew_at).then_some(())
        })
        .is_some();
    if !fresh || load_pair(&files.pair).is_err() {
        let issuer = Issuer::new(ca_params()?, &ca_key);
        let mut params = CertificateParams::new(sans.to_vec())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "runsecrets");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + SERVING_LIFETIME;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let cert = params.signed_by(&key, &issuer)?;
        let chain = format!(
            "{}{}",
            cert.pem(),
            fs::read_to_string(&files.ca).unwrap_or_default()
        );
        let meta = format!(
            "not_after={}\n{}",
            params.not_after.unix_timestamp(),
            sans.join("\n")
        );
        write_file(&files.pair.key, key.serialize_pem().as_bytes(), true)?;
        write_file(&files.pair.cert, chain.as_bytes(), false)?;
        write_file(&meta_path, meta.as_bytes(), false)?;
    }
    Ok(files)
}

/// Through the crate's temporary-file-and-rename helper, so a reader (this server's reload, or
/// a second replica) never sees half a PEM file.
fn write_file(path: &Path, bytes: &[u8], private: bool) -> Result<(), TlsError> {
    let mode = if private { 0o600 } else { 0o644 };
    crate::atomic_file::replace(path, bytes, crate::atomic_file::NewFile::mode(mode)).map_err(
        |source| TlsError::Write {
            path: path.to_path_buf(),
            source,
        },
    )
}

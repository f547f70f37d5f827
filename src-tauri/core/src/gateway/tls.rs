//! HTTPS for a gateway on the network. The certificate is the user's (a
//! certificate and key in PEM files), or one the app makes and keeps in
//! `<config>/gateway-tls/`: a private authority (`ca.pem`, the file to
//! give clients to trust) and a server certificate it signs for this
//! machine's names and addresses and the user's host names, re-issued
//! when those change or it nears its end, so clients that trust `ca.pem`
//! keep trusting it. Its SHA-256 fingerprint is shown so a client can pin
//! it.
//!
//! A plain-HTTP request to the HTTPS port gets a plain 400 that says to
//! use `https://`, then the connection closes.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

/// The folder of the generated certificate, in the config folder.
pub const TLS_FOLDER: &str = "gateway-tls";
/// The generated authority's certificate: what clients trust.
pub const TRUST_FILE: &str = "ca.pem";
/// How long a generated server certificate is valid (under the 825 days
/// some clients allow).
const LEAF_DAYS: i64 = 800;
/// A generated certificate this close to its end is issued again.
const RENEW_DAYS: i64 = 30;
/// A TLS handshake must end within this.
const HANDSHAKE_WITHIN: Duration = Duration::from_secs(10);

/// A certificate and key the gateway serves HTTPS with.
#[derive(Clone)]
pub struct TlsIdentity {
    config: Arc<rustls::ServerConfig>,
    fingerprint: String,
    /// The file clients trust (the generated authority, or the user's
    /// certificate file).
    trust_file: PathBuf,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("fingerprint", &self.fingerprint)
            .field("trust_file", &self.trust_file)
            .finish()
    }
}

impl TlsIdentity {
    /// The user's certificate (chain) and key, PEM files.
    pub fn from_files(cert: &Path, key: &Path) -> Result<Self, String> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .map_err(|e| format!("the certificate {} cannot be read: {e}", cert.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("the certificate {} is not PEM: {e}", cert.display()))?;
        if chain.is_empty() {
            return Err(format!(
                "{} holds no certificate (a PEM file with -----BEGIN CERTIFICATE-----)",
                cert.display()
            ));
        }
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
            format!(
                "the key {} cannot be read as a PEM private key: {e}",
                key.display()
            )
        })?;
        Self::of(chain, key, cert.to_path_buf())
    }

    /// The certificate the app made in `dir` for `names` (made now when
    /// missing, issued again when `names` grew or it nears its end).
    pub fn generated(dir: &Path, names: &[String]) -> Result<Self, String> {
        let made = generate::ensure(dir, names)
            .map_err(|e| format!("the gateway's certificate in {}: {e}", dir.display()))?;
        Self::of(made.chain, made.key, dir.join(TRUST_FILE))
    }

    fn of(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        trust_file: PathBuf,
    ) -> Result<Self, String> {
        let fingerprint = fingerprint(&chain[0]);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| format!("the certificate and key do not make a TLS identity: {e}"))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            config: Arc::new(config),
            fingerprint,
            trust_file,
        })
    }

    /// The server certificate's SHA-256, as `AB:CD:...`.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The file a client trusts to reach the gateway.
    pub fn trust_file(&self) -> &Path {
        &self.trust_file
    }
}

/// The names a generated certificate is issued for: this machine's name
/// and addresses (not loopback ones, always added) and `extra`.
pub fn certificate_names(extra: &[String]) -> Vec<String> {
    let mut names: Vec<String> = super::hosts::machine_names()
        .into_iter()
        .filter(|n| {
            n.parse::<std::net::IpAddr>()
                .map_or(true, |ip| !ip.is_loopback() && !ip.is_unspecified())
        })
        .filter(|n| !n.starts_with("fe80:"))
        .chain(
            extra
                .iter()
                .map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase()),
        )
        .collect();
    names.sort();
    names.dedup();
    names
}

/// SHA-256 of a certificate, as browsers and `openssl x509 -fingerprint
/// -sha256` show it.
pub fn fingerprint(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Accepts TCP connections and hands on those whose TLS handshake ended;
/// each handshake runs on its own task, so a slow client holds up no other.
pub(crate) struct TlsListener {
    ready: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    pub(crate) fn new(listener: TcpListener, tls: &TlsIdentity, stop: CancellationToken) -> Self {
        let local = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (tx, ready) = tokio::sync::mpsc::channel(64);
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.config.clone());
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = listener.accept() => match r {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::debug!("gateway: accept failed: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                let (tx, acceptor) = (tx.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let done =
                        tokio::time::timeout(HANDSHAKE_WITHIN, handshake(tcp, acceptor)).await;
                    match done {
                        Ok(Ok(stream)) => {
                            let _ = tx.send((stream, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, "gateway: TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!(%peer, "gateway: TLS handshake too slow"),
                    }
                });
            }
        });
        Self { ready, local }
    }
}

/// The TLS handshake; a client that speaks plain HTTP gets a plain answer
/// saying to use `https://`.
async fn handshake(
    tcp: TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
) -> io::Result<TlsStream<TcpStream>> {
    let mut first = [0u8; 1];
    let n = tcp.peek(&mut first).await?;
    // 0x16: a TLS record carrying a handshake (the ClientHello).
    if n == 1 && first[0] != 0x16 {
        let mut tcp = tcp;
        let body = "400: this gateway speaks HTTPS: use https:// (and wss:// for /ws)\n";
        let answer = format!(
            "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = tcp.write_all(answer.as_bytes()).await;
        let _ = tcp.shutdown().await;
        return Err(io::Error::other("a plain-HTTP request to the HTTPS port"));
    }
    acceptor.accept(tcp).await
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accepting task ended: the gateway is stopping.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

mod generate {
    use super::*;

    pub(super) struct Made {
        pub chain: Vec<CertificateDer<'static>>,
        pub key: PrivateKeyDer<'static>,
    }

    const CA_KEY: &str = "ca-key.pem";
    const CERT: &str = "cert.pem";
    const KEY: &str = "key.pem";
    const ISSUED: &str = "issued.json";

    fn err(e: impl std::fmt::Display) -> String {
        e.to_string()
    }

    fn ca_params() -> CertificateParams {
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "StoryCore Engine gateway authority");
        p.distinguished_name = dn;
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.not_before = rcgen::date_time_ymd(2025, 1, 1);
        p.not_after = rcgen::date_time_ymd(2045, 1, 1);
        p
    }

    /// The names a certificate is issued for: `names` and the loopback ones.
    fn all_names(names: &[String]) -> Vec<String> {
        let mut all: Vec<String> = ["localhost", "127.0.0.1", "::1"]
            .iter()
            .map(|s| s.to_string())
            .chain(names.iter().cloned())
            .collect();
        all.sort();
        all.dedup();
        all
    }

    pub(super) fn ensure(dir: &Path, names: &[String]) -> Result<Made, String> {
        crate::privacy::create_private_dir(dir).map_err(err)?;
        let names = all_names(names);
        let ca_key = match std::fs::read_to_string(dir.join(CA_KEY)) {
            Ok(pem) => KeyPair::from_pem(&pem).map_err(|e| format!("{CA_KEY}: {e}"))?,
            Err(_) => {
                let key = KeyPair::generate().map_err(err)?;
                let ca = ca_params().self_signed(&key).map_err(err)?;
                write(dir, TRUST_FILE, ca.pem().as_bytes())?;
                write(dir, CA_KEY, key.serialize_pem().as_bytes())?;
                key
            }
        };
        let issued: Option<(Vec<String>, String)> = std::fs::read(dir.join(ISSUED))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| {
                let n = v["names"]
                    .as_array()?
                    .iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect();
                Some((n, v["notAfter"].as_str()?.to_string()))
            });
        let today = chrono::Utc::now().date_naive();
        let fresh = issued.as_ref().is_some_and(|(had, until)| {
            names.iter().all(|n| had.contains(n))
                && chrono::NaiveDate::parse_from_str(until, "%Y-%m-%d")
                    .is_ok_and(|u| (u - today).num_days() > RENEW_DAYS)
        });
        if !fresh || !dir.join(CERT).exists() || !dir.join(KEY).exists() {
            issue(dir, &ca_key, &names, today)?;
        }
        let chain = CertificateDer::pem_file_iter(dir.join(CERT))
            .map_err(err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        let key = PrivateKeyDer::from_pem_file(dir.join(KEY)).map_err(err)?;
        Ok(Made { chain, key })
    }

    fn issue(
        dir: &Path,
        ca_key: &KeyPair,
        names: &[String],
        today: chrono::NaiveDate,
    ) -> Result<(), String> {
        use chrono::Datelike;
        // The authority as an issuer: its name and key are what a signature
        // needs, so the kept ca.pem stays the one clients trust.
        let ca = ca_params().self_signed(ca_key).map_err(err)?;
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "StoryCore Engine gateway");
        p.distinguished_name = dn;
        p.subject_alt_names = names
            .iter()
            .filter_map(|n| match n.parse::<std::net::IpAddr>() {
                Ok(ip) => Some(SanType::IpAddress(ip)),
                Err(_) => n.clone().try_into().ok().map(SanType::DnsName),
            })
            .collect();
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.use_authority_key_identifier_extension = true;
        let start = today - chrono::Duration::days(1);
        let end = today + chrono::Duration::days(LEAF_DAYS);
        p.not_before = rcgen::date_time_ymd(start.year(), start.month() as u8, start.day() as u8);
        p.not_after = rcgen::date_time_ymd(end.year(), end.month() as u8, end.day() as u8);
        let key = KeyPair::generate().map_err(err)?;
        let leaf = p.signed_by(&key, &ca, ca_key).map_err(err)?;
        let ca_pem = std::fs::read_to_string(dir.join(TRUST_FILE)).map_err(err)?;
        write(dir, KEY, key.serialize_pem().as_bytes())?;
        write(dir, CERT, format!("{}{}", leaf.pem(), ca_pem).as_bytes())?;
        let issued =
            serde_json::json!({"names": names, "notAfter": end.format("%Y-%m-%d").to_string()});
        write(dir, ISSUED, issued.to_string().as_bytes())?;
        tracing::info!(?names, until = %end, "gateway: a certificate issued for this machine");
        Ok(())
    }

    /// Atomic, 0600.
    fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), String> {
        crate::store::atomic_write(&dir.join(name), bytes).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_is_made_once_and_issued_again_for_new_names() {
        let dir = tempfile::tempdir().unwrap();
        let a = TlsIdentity::generated(dir.path(), &["box.lan".into()]).unwrap();
        assert_eq!(a.fingerprint().len(), 32 * 3 - 1);
        assert_eq!(a.trust_file(), dir.path().join(TRUST_FILE));
        let ca = std::fs::read(dir.path().join(TRUST_FILE)).unwrap();
        // The same names: the same certificate.
        let b = TlsIdentity::generated(dir.path(), &["box.lan".into()]).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        // A new name: a new certificate, from the same authority.
        let c = TlsIdentity::generated(dir.path(), &["box.lan".into(), "10.1.2.3".into()]).unwrap();
        assert_ne!(a.fingerprint(), c.fingerprint());
        assert_eq!(std::fs::read(dir.path().join(TRUST_FILE)).unwrap(), ca);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for f in ["ca-key.pem", "key.pem"] {
                let mode = std::fs::metadata(dir.path().join(f))
                    .unwrap()
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o077, 0, "{f} is the user's alone");
            }
        }
    }

    #[test]
    fn bad_files_are_refused_with_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("c.pem");
        std::fs::write(&cert, "not a certificate").unwrap();
        let e = TlsIdentity::from_files(&cert, &dir.path().join("none.pem")).unwrap_err();
        assert!(e.contains("no certificate"), "{e}");
        let e = TlsIdentity::from_files(&dir.path().join("missing.pem"), &cert).unwrap_err();
        assert!(e.contains("cannot be read"), "{e}");
    }
}

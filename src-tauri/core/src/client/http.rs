//! The transport under the clients: one pooled HTTP client
//! for the whole app, and the mapping of transport failures and non-2xx answers
//! to [`ClientError`] with the server and the action named.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

/// Connections to a server are reused across requests and instances (a health
/// probe every second per instance should not cost a TCP handshake each time).
/// Timeouts are set per request, since a probe and a workflow upload need very
/// different ones.
pub(crate) fn shared_http() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .user_agent(concat!("storycore-engine/", env!("CARGO_PKG_VERSION")))
            .build()
            // Only fails when the TLS backend cannot start, which makes the app useless.
            .expect("the HTTP client could not be initialised (TLS backend)")
    })
}

/// A client that also trusts the certificates in the PEM file `path` (an
/// instance's own CA, or its self-signed certificate), for HTTP and for
/// `wss://`. Clients are kept per file and its modification time, so the
/// probes of an instance share one pool and an edited file is read again.
pub(crate) fn with_ca_file(
    path: &str,
) -> Result<(reqwest::Client, native_tls::TlsConnector), String> {
    type Cache =
        Mutex<HashMap<(PathBuf, Option<SystemTime>), (reqwest::Client, native_tls::TlsConnector)>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let file = PathBuf::from(path);
    let modified = std::fs::metadata(&file).and_then(|m| m.modified()).ok();
    let key = (file.clone(), modified);
    let mut cache = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(found) = cache.get(&key) {
        return Ok(found.clone());
    }
    let pem =
        std::fs::read(&file).map_err(|e| format!("its CA file {path} cannot be read ({e})"))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("its CA file {path} holds no usable PEM certificate ({e})"))?;
    if certs.is_empty() {
        return Err(format!("its CA file {path} holds no PEM certificate"));
    }
    let mut builder = reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(60))
        .tcp_nodelay(true)
        .user_agent(concat!("storycore-engine/", env!("CARGO_PKG_VERSION")));
    for c in certs {
        builder = builder.add_root_certificate(c);
    }
    let http = builder
        .build()
        .map_err(|e| format!("its CA file {path} could not be used ({e})"))?;
    let mut tls = native_tls::TlsConnector::builder();
    let mut rest = pem.as_slice();
    while let Some(start) = find(rest, b"-----BEGIN CERTIFICATE-----") {
        let end_marker = b"-----END CERTIFICATE-----";
        let Some(end) = find(&rest[start..], end_marker) else {
            break;
        };
        let block = &rest[start..start + end + end_marker.len()];
        let cert = native_tls::Certificate::from_pem(block)
            .map_err(|e| format!("its CA file {path} holds an unreadable certificate ({e})"))?;
        tls.add_root_certificate(cert);
        rest = &rest[start + end + end_marker.len()..];
    }
    let tls = tls
        .build()
        .map_err(|e| format!("its CA file {path} could not be used ({e})"))?;
    cache.retain(|(p, _), _| *p != file);
    cache.insert(key, (http.clone(), tls.clone()));
    Ok((http, tls))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

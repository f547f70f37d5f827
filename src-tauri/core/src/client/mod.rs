//! One ComfyUI server: its HTTP API (`api.rs`) and its `/ws` event stream
//! (`ws.rs`, messages in `messages.rs`).
//!
//! A [`ComfyClient`] is cheap to clone: it holds the server's address, a request
//! timeout and a handle on the app-wide connection pool.

mod api;
mod binary;
pub mod editor_proxy;
mod error;
mod http;
pub mod messages;
mod requests;
mod responses;
pub mod ws;

pub use error::{ClientError, ComfyErrorBody, ComfyErrorDetail, ErrorBody, NodeError};
pub use messages::{BinaryFrame, MessageError, WsMessage};
pub use responses::{
    Device, HistoryEntry, HistoryStatus, ImageRef, NodeOutput, PromptAccepted, QueueItem,
    QueueSnapshot, SystemInfo, SystemStatsResponse,
};
pub use ws::{WsEvent, WsOptions};

use reqwest::header::{HeaderName, HeaderValue};
use reqwest::Url;
use std::sync::Arc;
use std::time::Duration;
use storycore_types::{InstanceConfig, KeyAuth};

/// The default request timeout of a client made from a bare endpoint: the
/// seed's `timeoutMs` default.
pub const DEFAULT_TIMEOUT: Duration =
    Duration::from_millis(storycore_types::instance::DEFAULT_TIMEOUT_MS);

#[derive(Debug, Clone)]
pub struct ComfyClient {
    /// `scheme://host:port[/prefix]`, without a trailing slash.
    base: String,
    http: reqwest::Client,
    timeout: Duration,
    /// The API key's header, on every request and on `/ws` (its value is
    /// marked sensitive: `Debug` and the HTTP stack's logs never show it).
    auth: Option<Arc<(HeaderName, HeaderValue)>>,
    /// The instance's own certificate authority, for `wss://` (HTTP requests
    /// carry it in `http`).
    tls: Option<native_tls::TlsConnector>,
}

impl ComfyClient {
    /// A client for an instance of the fleet, with the instance's timeout.
    /// Its API key is the one [`crate::secrets`] knows under `apiKeyRef`
    /// (none known: requests go without, and a server that wants one answers
    /// 401, reported as "check the API key").
    pub fn for_instance(config: &InstanceConfig) -> Result<Self, ClientError> {
        let mut client = Self::from_endpoint(&config.base_url())?
            .with_timeout(Duration::from_millis(config.timeout()));
        if let Some(ca) = config.ca_file.as_deref() {
            let (http, tls) =
                http::with_ca_file(ca).map_err(|reason| ClientError::InvalidEndpoint {
                    endpoint: config.base_url(),
                    reason,
                })?;
            client.http = http;
            client.tls = Some(tls);
        }
        if let Some(key) = config
            .api_key_ref
            .as_deref()
            .and_then(crate::secrets::known)
        {
            client = client.with_api_key(&config.key_auth(), &key)?;
        }
        Ok(client)
    }

    /// The same server, sending `key` as `auth` says.
    pub fn with_api_key(mut self, auth: &KeyAuth, key: &str) -> Result<Self, ClientError> {
        use base64::Engine as _;
        let bad = |reason: String| ClientError::InvalidEndpoint {
            endpoint: self.base.clone(),
            reason,
        };
        let (name, value) = match auth {
            KeyAuth::Bearer => (reqwest::header::AUTHORIZATION, format!("Bearer {key}")),
            KeyAuth::Basic => {
                if !key.contains(':') {
                    return Err(bad(
                        "basic authentication needs the key written as user:password".into(),
                    ));
                }
                let encoded = base64::engine::general_purpose::STANDARD.encode(key);
                (reqwest::header::AUTHORIZATION, format!("Basic {encoded}"))
            }
            KeyAuth::Header(h) => (
                HeaderName::from_bytes(h.as_bytes())
                    .map_err(|_| bad(format!("'{h}' is not a valid header name")))?,
                key.to_string(),
            ),
        };
        let mut value = HeaderValue::from_str(&value)
            .map_err(|_| bad("the API key holds characters an HTTP header cannot carry".into()))?;
        value.set_sensitive(true);
        self.auth = Some(Arc::new((name, value)));
        Ok(self)
    }

    /// True when requests carry an API key.
    pub fn has_api_key(&self) -> bool {
        self.auth.is_some()
    }

    /// A client for a bare address such as `http://localhost:8188` (the seed's
    /// `createComfyUIClient(endpoint)`). A path is kept as a prefix, for servers
    /// behind a reverse proxy.
    pub fn from_endpoint(endpoint: &str) -> Result<Self, ClientError> {
        let bad = |reason: &str| ClientError::InvalidEndpoint {
            endpoint: endpoint.to_string(),
            reason: reason.to_string(),
        };
        let trimmed = endpoint.trim();
        if trimmed.is_empty() {
            return Err(bad("it is empty; expected e.g. http://localhost:8188"));
        }
        if !trimmed.contains("://") {
            return Err(bad(
                "it has no scheme; write it as http://host:port (e.g. http://localhost:8188)",
            ));
        }
        let url = Url::parse(trimmed).map_err(|e| bad(&format!("{e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad(&format!(
                "the scheme '{}' is not supported; use http or https",
                url.scheme()
            )));
        }
        let Some(host) = url.host_str() else {
            return Err(bad("it has no host name"));
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad(
                "it contains credentials; store the API key in the instance's settings instead",
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad(
                "it has a query or fragment; give only scheme, host, port and path",
            ));
        }
        let port = url
            .port_or_known_default()
            .ok_or_else(|| bad("it has no port"))?;
        let path = url.path().trim_end_matches('/');
        let base = format!("{}://{host}:{port}{path}", url.scheme());
        Ok(Self {
            base,
            http: http::shared_http().clone(),
            timeout: DEFAULT_TIMEOUT,
            auth: None,
            tls: None,
        })
    }

    /// The same server with another per-request timeout (e.g. a short one for
    /// health probes).
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        Self {
            timeout,
            ..self.clone()
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_normalised() {
        let cases = [
            ("http://localhost:8188", "http://localhost:8188"),
            ("http://localhost:8188/", "http://localhost:8188"),
            (" https://gpu.example.com ", "https://gpu.example.com:443"),
            ("http://[::1]:8190", "http://[::1]:8190"),
            ("http://10.0.0.2:8188/comfy/", "http://10.0.0.2:8188/comfy"),
        ];
        for (input, want) in cases {
            let c = ComfyClient::from_endpoint(input).unwrap();
            assert_eq!(c.base_url(), want, "{input}");
        }
    }

    #[test]
    fn bad_endpoints_say_why() {
        let cases = [
            ("", "empty"),
            ("localhost:8188", "no scheme"),
            ("ftp://localhost:8188", "'ftp' is not supported"),
            ("http://user:pw@localhost:8188", "credentials"),
            ("http://localhost:8188/?x=1", "query"),
            ("http://localhost:99999", "invalid port"),
        ];
        for (input, want) in cases {
            let e = ComfyClient::from_endpoint(input).unwrap_err();
            assert!(matches!(e, ClientError::InvalidEndpoint { .. }), "{input}");
            assert!(e.to_string().contains(want), "{input}: {e}");
        }
    }

    #[test]
    fn instance_config_gives_url_and_timeout() {
        let mut c = InstanceConfig::new("a", "A", 8190);
        c.host = Some("127.0.0.1".into());
        c.timeout_ms = Some(1500);
        let client = ComfyClient::for_instance(&c).unwrap();
        assert_eq!(client.base_url(), "http://127.0.0.1:8190");
        assert_eq!(client.timeout(), Duration::from_millis(1500));
    }
}

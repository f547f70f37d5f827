//! Requests of a [`ComfyClient`](super::ComfyClient) over the shared pool:
//! the mapping of transport failures and non-2xx answers to
//! [`ClientError`] with the server and the action named.

use super::error::{ClientError, ErrorBody};
use super::ComfyClient;
use reqwest::{RequestBuilder, Response};
use serde::de::DeserializeOwned;
use std::error::Error as _;
use std::io;

impl ComfyClient {
    /// Sends the request with this client's timeout and returns the answer when
    /// it is a 2xx; anything else becomes a [`ClientError`].
    pub(crate) async fn send(
        &self,
        action: &str,
        req: RequestBuilder,
    ) -> Result<Response, ClientError> {
        let req = match &self.auth {
            Some(auth) => req.header(auth.0.clone(), auth.1.clone()),
            None => req,
        };
        let resp = req
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| self.transport_error(action, e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        // The error body is small (ComfyUI's JSON error or aiohttp's text page);
        // if it cannot be read, the status alone still says what happened.
        let text = resp.text().await.unwrap_or_default();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(ClientError::Unauthorized {
                url: self.base_url().to_string(),
                action: action.to_string(),
                sent_key: self.auth.is_some(),
            });
        }
        Err(ClientError::Http {
            url: self.base_url().to_string(),
            action: action.to_string(),
            status: status.as_u16(),
            body: Box::new(ErrorBody::parse(&text)),
        })
    }

    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        action: &str,
    ) -> Result<T, ClientError> {
        let resp = self.send(action, self.http.get(self.url(path))).await?;
        self.read_json(action, resp).await
    }

    pub(crate) async fn read_json<T: DeserializeOwned>(
        &self,
        action: &str,
        resp: Response,
    ) -> Result<T, ClientError> {
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| self.transport_error(action, e))?;
        serde_json::from_slice(&bytes).map_err(|e| self.malformed(action, "JSON answer", e))
    }

    /// POSTs a JSON body to a route that answers 200 with an empty body.
    pub(crate) async fn post_for_nothing(
        &self,
        path: &str,
        body: &serde_json::Value,
        action: &str,
    ) -> Result<(), ClientError> {
        self.send(action, self.http.post(self.url(path)).json(body))
            .await
            .map(drop)
    }

    pub(crate) fn malformed(&self, action: &str, what: &str, detail: impl ToString) -> ClientError {
        ClientError::Malformed {
            url: self.base_url().to_string(),
            action: action.to_string(),
            what: what.to_string(),
            detail: detail.to_string(),
        }
    }

    fn transport_error(&self, action: &str, e: reqwest::Error) -> ClientError {
        let url = self.base_url().to_string();
        let action = action.to_string();
        if e.is_timeout() {
            return ClientError::TimedOut {
                url,
                action,
                timeout_ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
            };
        }
        if io_kind(&e) == Some(io::ErrorKind::ConnectionRefused) {
            return ClientError::Refused { url, action };
        }
        ClientError::Unreachable {
            url,
            action,
            detail: innermost_message(&e),
        }
    }
}

/// reqwest wraps hyper which wraps the OS error: the kind is at the bottom.
fn io_kind(e: &reqwest::Error) -> Option<io::ErrorKind> {
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<io::Error>() {
            return Some(io.kind());
        }
        source = s.source();
    }
    None
}

/// The most specific cause ("connection reset by peer") rather than reqwest's
/// generic "error sending request for url (...)".
fn innermost_message(e: &reqwest::Error) -> String {
    let mut last = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    last
}

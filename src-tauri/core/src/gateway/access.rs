//! Who may use the gateway. On a loopback address, every program of this
//! machine (as with ComfyUI itself). On any other address the fleet is on
//! the network, so a token is required, sent the ways a remote instance's
//! key is (`bearer`, `basic`, `header:<Name>`); a request without it gets
//! 401. With `basic`, a browser asks its user for it (the `user:password`
//! token), so ComfyUI's editor opens on the gateway from another machine.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use storycore_types::KeyAuth;

/// The token and how it travels; no token: open (loopback only).
#[derive(Clone, Default)]
pub struct Access {
    token: Option<Arc<str>>,
    auth: Option<KeyAuth>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("token", &self.token.as_ref().map(|_| "(set)"))
            .field("auth", &self.auth)
            .finish()
    }
}

/// The fewest characters a token may have: it guards the fleet.
pub const MIN_TOKEN_CHARS: usize = 16;

impl Access {
    /// No token: the gateway may listen on loopback addresses only.
    pub fn open() -> Self {
        Self::default()
    }

    /// Requests must carry `token`, sent as `auth` says.
    pub fn token(token: &str, auth: KeyAuth) -> Result<Self, String> {
        let token = token.trim();
        if token.chars().count() < MIN_TOKEN_CHARS {
            return Err(format!(
                "the gateway's token has {} characters: use at least {MIN_TOKEN_CHARS} (a random one, such as the output of `openssl rand -hex 16`)",
                token.chars().count()
            ));
        }
        if auth == KeyAuth::Basic && !token.contains(':') {
            return Err("a token sent as basic is written user:password".to_string());
        }
        if HeaderValue::from_str(token).is_err() {
            return Err("the gateway's token must be printable ASCII".to_string());
        }
        Ok(Self {
            token: Some(token.into()),
            auth: Some(auth),
        })
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// Whether `headers` carry the token (always, without one).
    fn admits(&self, headers: &HeaderMap) -> bool {
        let (Some(token), Some(auth)) = (&self.token, &self.auth) else {
            return true;
        };
        let sent = match auth {
            KeyAuth::Header(name) => headers.get(name.as_str()),
            KeyAuth::Bearer | KeyAuth::Basic => headers.get(header::AUTHORIZATION),
        };
        let Some(sent) = sent.and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let presented = match auth {
            KeyAuth::Header(_) => Some(sent.to_string()),
            KeyAuth::Bearer => sent
                .strip_prefix("Bearer ")
                .or_else(|| sent.strip_prefix("bearer "))
                .map(|t| t.trim().to_string()),
            KeyAuth::Basic => {
                use base64::Engine as _;
                sent.strip_prefix("Basic ")
                    .or_else(|| sent.strip_prefix("basic "))
                    .and_then(|b| {
                        base64::engine::general_purpose::STANDARD
                            .decode(b.trim())
                            .ok()
                    })
                    .and_then(|d| String::from_utf8(d).ok())
            }
        };
        presented.is_some_and(|p| same(p.as_bytes(), token.as_bytes()))
    }

    fn refusal(&self) -> Response {
        let challenge = match self.auth {
            Some(KeyAuth::Basic) => {
                Some("Basic realm=\"StoryCore Engine gateway\", charset=\"UTF-8\"")
            }
            Some(KeyAuth::Bearer) => Some("Bearer realm=\"StoryCore Engine gateway\""),
            _ => None,
        };
        let how = match &self.auth {
            Some(KeyAuth::Header(name)) => format!("in the {name} header"),
            Some(KeyAuth::Basic) => "as basic authorization (user:password)".to_string(),
            _ => "as Authorization: Bearer <token>".to_string(),
        };
        let body = format!(
            "401: this gateway is on the network and needs its token, sent {how}; the token is set where the gateway is (StoryCore Engine's Settings, or STORYCORE_GATEWAY_TOKEN for storycore-engine serve)"
        );
        let mut r = (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            body,
        )
            .into_response();
        if let Some(c) = challenge {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
        }
        r
    }
}

/// Equal, in a time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i % b.len().max(1)).copied().unwrap_or(0));
    }
    diff == 0
}

/// Refuses (401) a request without the token, before any route runs.
pub(crate) async fn require_token(
    State(access): State<Access>,
    req: Request,
    next: Next,
) -> Response {
    if access.admits(req.headers()) {
        next.run(req).await
    } else {
        tracing::info!(path = %req.uri().path(), "gateway: a request without the token refused");
        access.refusal()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: &str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
        h
    }

    #[test]
    fn the_token_is_checked_as_it_is_sent() {
        let tok = "0123456789abcdef0123";
        let bearer = Access::token(tok, KeyAuth::Bearer).unwrap();
        assert!(bearer.admits(&headers("authorization", &format!("Bearer {tok}"))));
        assert!(!bearer.admits(&headers("authorization", "Bearer 0123456789abcdef0124")));
        assert!(!bearer.admits(&headers("authorization", "Bearer 0123456789abcdef012")));
        assert!(!bearer.admits(&HeaderMap::new()));
        let header = Access::token(tok, KeyAuth::Header("X-API-Key".into())).unwrap();
        assert!(header.admits(&headers("x-api-key", tok)));
        assert!(!header.admits(&headers("authorization", &format!("Bearer {tok}"))));
        let basic = Access::token("user:0123456789abcdef", KeyAuth::Basic).unwrap();
        // base64("user:0123456789abcdef")
        assert!(basic.admits(&headers(
            "authorization",
            "Basic dXNlcjowMTIzNDU2Nzg5YWJjZGVm"
        )));
        assert!(!basic.admits(&headers("authorization", "Basic dXNlcjp3cm9uZw==")));
        assert!(Access::open().admits(&HeaderMap::new()));
        assert!(Access::token("short", KeyAuth::Bearer).is_err());
        assert!(Access::token("0123456789abcdef", KeyAuth::Basic).is_err());
    }
}

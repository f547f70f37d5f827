//! Who may use the gateway. On a loopback address, every program of this
//! machine (as with ComfyUI itself). On any other address the fleet is on
//! the network, so a token is required, sent the ways a remote instance's
//! key is (`bearer`, `basic`, `header:<Name>`); a request without it gets
//! 401. With `basic`, a browser asks its user for it (the `user:password`
//! token), so ComfyUI's editor opens on the gateway from another machine.
//!
//! Two kinds of token: the shared one (Settings, `STORYCORE_GATEWAY_TOKEN`),
//! which sees every prompt, and named ones (`tokens.rs`), one per person,
//! sent as a bearer token, as the password of basic authorization, or in
//! the shared token's header. Each request carries its [`Caller`]. Failures
//! are logged without what was sent; an address that keeps failing is
//! answered more and more slowly.

use super::tokens::{same, Caller, TokenBook};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use storycore_types::KeyAuth;

/// The token and how it travels; no token: open (loopback only).
#[derive(Clone, Default)]
pub struct Access {
    token: Option<Arc<str>>,
    auth: Option<KeyAuth>,
    /// Host names clients may use besides this machine's own (see `hosts.rs`).
    hosts: Vec<String>,
    /// HTTPS, on a network address.
    tls: Option<super::tls::TlsIdentity>,
    /// Plain HTTP on a network address: the user's explicit, warned choice.
    plain_http: bool,
    /// Named tokens, one per person.
    book: Option<Arc<TokenBook>>,
    /// The most prompts one person may have waiting.
    max_waiting: Option<u32>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("token", &self.token.as_ref().map(|_| "(set)"))
            .field("auth", &self.auth)
            .field("hosts", &self.hosts)
            .field("tls", &self.tls)
            .field("plain_http", &self.plain_http)
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
            ..Self::default()
        })
    }

    /// Also takes requests addressed to `hosts` (names a client uses for
    /// this machine that it does not know itself, such as a DNS alias).
    /// Each must be a host name or address, without a port.
    pub fn with_hosts(mut self, hosts: &[String]) -> Result<Self, String> {
        for h in hosts {
            super::hosts::check_name(h)?;
        }
        self.hosts = hosts.to_vec();
        Ok(self)
    }

    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    /// Serves HTTPS with `tls` on a network address (a loopback gateway
    /// stays plain HTTP, as the programs of this machine expect).
    pub fn with_tls(mut self, tls: super::tls::TlsIdentity) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Serves plain HTTP on a network address: the token and every prompt
    /// travel in clear. Only when the user asks for it.
    pub fn with_plain_http(mut self) -> Self {
        self.plain_http = true;
        self
    }

    pub fn tls(&self) -> Option<&super::tls::TlsIdentity> {
        self.tls.as_ref()
    }

    pub fn plain_http(&self) -> bool {
        self.plain_http
    }

    /// A shared token, or at least one named token.
    pub fn has_token(&self) -> bool {
        self.token.is_some() || self.book.as_ref().is_some_and(|b| !b.is_empty())
    }

    /// At most `n` prompts of one person (named token) wait; more are
    /// refused with ComfyUI's error shape.
    pub fn with_max_waiting(mut self, n: Option<u32>) -> Self {
        self.max_waiting = n.filter(|n| *n > 0);
        self
    }

    pub fn max_waiting(&self) -> Option<u32> {
        self.max_waiting
    }

    /// The shared token is set.
    pub fn has_shared_token(&self) -> bool {
        self.token.is_some()
    }

    /// Takes the named tokens of `book` too.
    pub fn with_tokens(mut self, book: Arc<TokenBook>) -> Self {
        self.book = Some(book);
        self
    }

    pub fn tokens(&self) -> Option<&Arc<TokenBook>> {
        self.book.as_ref()
    }

    /// Every form a token may take in `headers`.
    fn presented(&self, headers: &HeaderMap) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(v) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        {
            if let Some(t) = v
                .strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
            {
                out.push(t.trim().to_string());
            }
            if let Some(pair) = v
                .strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
                .and_then(decode_basic)
            {
                if let Some((_, password)) = pair.split_once(':') {
                    out.push(password.to_string());
                }
                out.push(pair);
            }
        }
        if let Some(KeyAuth::Header(name)) = &self.auth {
            if let Some(v) = headers.get(name.as_str()).and_then(|v| v.to_str().ok()) {
                out.push(v.trim().to_string());
            }
        }
        out
    }

    /// Who `headers` act for; `None`: refused. `required`: a request must
    /// carry a token (the gateway is on the network, or has a shared one).
    pub(crate) fn identify(&self, headers: &HeaderMap, required: bool) -> Option<Caller> {
        if self.token.is_some() && self.admits(headers) {
            return Some(Caller::everyone());
        }
        let sent = self.presented(headers);
        if let Some(c) = self.book.as_ref().and_then(|b| b.caller(&sent)) {
            return Some(c);
        }
        // This machine, without a token: every prompt, as with ComfyUI. A
        // token sent that is not one is refused, not ignored (when named
        // tokens exist: without them, whatever a local client sends is
        // nobody's business).
        let named = self
            .book
            .as_ref()
            .is_some_and(|b| !sent.is_empty() && !b.is_empty());
        (!required && !named).then(Caller::everyone)
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
            "401: this gateway needs a valid token, sent {how} (or your own named token as a bearer token or as the password); tokens are made where the gateway is (StoryCore Engine's Settings, storycore-engine tokens create NAME, or STORYCORE_GATEWAY_TOKEN for storycore-engine serve)"
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

fn decode_basic(b64: &str) -> Option<String> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()
        .and_then(|d| String::from_utf8(d).ok())
}

/// Failures in a row from one address are remembered this long.
const FAILURES_FORGOTTEN_AFTER: Duration = Duration::from_secs(600);
/// Failures an address may make before its answers are slowed.
const FREE_FAILURES: u32 = 5;
/// The longest an answer is held back.
const MAX_DELAY: Duration = Duration::from_secs(8);
/// Addresses remembered at most (the oldest are forgotten first).
const MAX_REMEMBERED: usize = 10_000;

/// How long the answer to an address's `n`-th failure in a row waits:
/// nothing for the first five, then 250 ms doubling up to 8 s.
pub(crate) fn delay_after(n: u32) -> Duration {
    if n <= FREE_FAILURES {
        return Duration::ZERO;
    }
    let doublings = (n - FREE_FAILURES - 1).min(6);
    (Duration::from_millis(250) * 2u32.pow(doublings)).min(MAX_DELAY)
}

/// The token check with what it remembers of failed addresses.
#[derive(Clone)]
pub(crate) struct Gatekeeper {
    access: Access,
    required: bool,
    failures: Arc<Mutex<HashMap<IpAddr, (u32, Instant)>>>,
}

impl Gatekeeper {
    pub(crate) fn new(access: Access, required: bool) -> Self {
        Self {
            access,
            required,
            failures: Arc::default(),
        }
    }

    /// Counts a failure of `ip`; answers how many in a row.
    fn failed(&self, ip: IpAddr) -> u32 {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if f.len() >= MAX_REMEMBERED {
            f.retain(|_, (_, at)| at.elapsed() < FAILURES_FORGOTTEN_AFTER);
            if f.len() >= MAX_REMEMBERED {
                let oldest = f.iter().min_by_key(|(_, (_, at))| *at).map(|(ip, _)| *ip);
                if let Some(o) = oldest {
                    f.remove(&o);
                }
            }
        }
        let e = f.entry(ip).or_insert((0, Instant::now()));
        if e.1.elapsed() >= FAILURES_FORGOTTEN_AFTER {
            e.0 = 0;
        }
        *e = (e.0 + 1, Instant::now());
        e.0
    }

    fn succeeded(&self, ip: IpAddr) {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if !f.is_empty() {
            f.remove(&ip);
        }
    }
}

/// Refuses (401) a request without a valid token, before any route runs;
/// the routes get its [`Caller`].
pub(crate) async fn require_token(
    State(gate): State<Gatekeeper>,
    mut req: Request,
    next: Next,
) -> Response {
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    match gate.access.identify(req.headers(), gate.required) {
        Some(caller) => {
            if let Some(ip) = peer {
                gate.succeeded(ip);
            }
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        None => {
            let n = peer.map_or(1, |ip| gate.failed(ip));
            let wait = delay_after(n);
            // Never what was sent: the log is no place for a token.
            tracing::info!(peer = ?peer, path = %req.uri().path(), failures = n, "gateway: a request without a valid token refused");
            let mut r = gate.access.refusal();
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
                r.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(wait.as_secs().max(1)),
                );
            }
            r
        }
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

    #[test]
    fn named_tokens_identify_their_person_in_every_form() {
        let dir = tempfile::tempdir().unwrap();
        let book = TokenBook::open(dir.path());
        let alice = book.create("alice", false).unwrap();
        let open = Access::open().with_tokens(book.clone());
        let who = |h: &HeaderMap, required| {
            open.identify(h, required)
                .map(|c| c.name.as_deref().map(String::from))
        };
        assert_eq!(
            who(&headers("authorization", &format!("Bearer {alice}")), true),
            Some(Some("alice".into()))
        );
        use base64::Engine as _;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("alice:{alice}"));
        assert_eq!(
            who(&headers("authorization", &format!("Basic {basic}")), true),
            Some(Some("alice".into()))
        );
        // Nothing sent: on the network refused; on this machine, everyone's.
        assert_eq!(who(&HeaderMap::new(), true), None);
        assert_eq!(who(&HeaderMap::new(), false), Some(None));
        // A token that is not one is refused, even on this machine.
        assert_eq!(who(&headers("authorization", "Bearer sct_00"), false), None);
        // The shared token sees everyone's.
        let shared = Access::token("0123456789abcdef0123", KeyAuth::Bearer)
            .unwrap()
            .with_tokens(book);
        let c = shared
            .identify(
                &headers("authorization", "Bearer 0123456789abcdef0123"),
                true,
            )
            .unwrap();
        assert!(c.admin && c.name.is_none());
    }

    #[test]
    fn repeated_failures_are_answered_more_and_more_slowly() {
        let d: Vec<u64> = (1..=13)
            .map(|n| delay_after(n).as_millis() as u64)
            .collect();
        assert_eq!(
            d,
            [0, 0, 0, 0, 0, 250, 500, 1000, 2000, 4000, 8000, 8000, 8000]
        );
    }
}

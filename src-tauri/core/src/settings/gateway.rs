//! Where the gateway listens and who may use it, from the settings, the
//! environment and `serve`'s flags.

use super::EnvSettings;
use crate::gateway::{certificate_names, Access, TlsIdentity, TokenBook, TLS_FOLDER};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use storycore_types::AppSettings;

/// Where the gateway's token is kept (the OS keyring).
pub const GATEWAY_TOKEN_REF: &str = "gateway/token";

/// How the gateway is chosen: by the settings (the desktop app, whose
/// Settings dialog changes it), or by `serve`'s command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayChoice {
    Settings,
    Serve {
        addr: SocketAddr,
        /// The user's certificate and key (PEM) for HTTPS on the network.
        tls: Option<(PathBuf, PathBuf)>,
        /// Plain HTTP on the network, asked for explicitly.
        plain_http: bool,
    },
}

/// Where the gateway listens: `STORYCORE_GATEWAY` when set, else the
/// settings (`None`: off).
pub fn gateway_addr(s: &AppSettings, env: &EnvSettings) -> Result<Option<SocketAddr>, String> {
    if let Some(o) = env.gateway {
        return Ok(o);
    }
    if !s.gateway.enabled {
        return Ok(None);
    }
    s.gateway.address.trim().parse().map(Some).map_err(|_| {
        format!(
            "the gateway address '{}' is not an address and port, such as 127.0.0.1:8288",
            s.gateway.address
        )
    })
}

/// Where the gateway listens and who may use it, as `choice` says. Blocks
/// (a keyring read when a token is set, a certificate made or read): call it
/// on the blocking pool once the runtime runs.
pub fn wanted_gateway(
    choice: &GatewayChoice,
    s: &AppSettings,
    env: &EnvSettings,
    config_dir: &Path,
) -> Result<Option<(SocketAddr, Access)>, String> {
    match choice {
        GatewayChoice::Settings => {
            let Some(addr) = gateway_addr(s, env)? else {
                return Ok(None);
            };
            Ok(Some((addr, gateway_access(s, env, config_dir)?)))
        }
        GatewayChoice::Serve {
            addr,
            tls,
            plain_http,
        } => {
            // `serve` takes its token from the environment only: a box
            // without a keyring must not depend on one.
            let access = env
                .gateway_access
                .clone()
                .unwrap_or_default()
                .with_hosts(
                    env.gateway_hosts
                        .as_deref()
                        .unwrap_or(&s.gateway.allowed_hosts),
                )
                .map_err(|e| format!("the gateway's host names: {e}"))?
                .with_tokens(TokenBook::open(config_dir))
                .with_max_waiting(s.gateway.max_waiting_per_person);
            if addr.ip().is_loopback() {
                return Ok(Some((*addr, access)));
            }
            if *plain_http {
                tracing::warn!("--plain-http: the gateway serves the network in clear; tokens and prompts can be read by anyone on the path");
                return Ok(Some((*addr, access.with_plain_http())));
            }
            let identity = match tls {
                Some((cert, key)) => TlsIdentity::from_files(cert, key)?,
                None => TlsIdentity::generated(
                    &config_dir.join(TLS_FOLDER),
                    &certificate_names(access.hosts()),
                )?,
            };
            Ok(Some((*addr, access.with_tls(identity))))
        }
    }
}

/// Who may use the gateway: the token of `STORYCORE_GATEWAY_TOKEN` when
/// set, else the one set in Settings (read from the keyring), else anyone
/// on this machine. Blocks (a keyring read) when a token is set.
pub fn gateway_access(
    s: &AppSettings,
    env: &EnvSettings,
    config_dir: &Path,
) -> Result<Access, String> {
    let access = gateway_token(s, env, config_dir)?
        .with_tokens(TokenBook::open(config_dir))
        .with_max_waiting(s.gateway.max_waiting_per_person);
    let network = gateway_addr(s, env)
        .ok()
        .flatten()
        .is_some_and(|a| !a.ip().is_loopback());
    if !network {
        return Ok(access);
    }
    if s.gateway.plain_http {
        return Ok(access.with_plain_http());
    }
    let tls = match (&s.gateway.tls_cert, &s.gateway.tls_key) {
        (Some(cert), Some(key)) => TlsIdentity::from_files(Path::new(cert), Path::new(key))?,
        _ => TlsIdentity::generated(
            &config_dir.join(TLS_FOLDER),
            &certificate_names(access.hosts()),
        )?,
    };
    Ok(access.with_tls(tls))
}

/// The token part of [`gateway_access`], and the host names.
fn gateway_token(s: &AppSettings, env: &EnvSettings, config_dir: &Path) -> Result<Access, String> {
    let hosts = env
        .gateway_hosts
        .as_deref()
        .unwrap_or(&s.gateway.allowed_hosts);
    if let Some(a) = &env.gateway_access {
        return a.clone().with_hosts(hosts);
    }
    let Some(reference) = &s.gateway.token_ref else {
        return Access::open().with_hosts(hosts);
    };
    let auth =
        storycore_types::KeyAuth::parse(s.gateway.token_auth.as_deref().unwrap_or("bearer"))?;
    let token = crate::secrets::Vault::new(config_dir)
        .load(reference)
        .map_err(|e| format!("the gateway's token could not be read: {e}"))?
        .ok_or_else(|| {
            "the gateway's token is no longer in the keyring: set it again in Settings".to_string()
        })?;
    Access::token(&token, auth)?.with_hosts(hosts)
}

//! `storycore-engine serve [--gateway ADDR]`: the instance manager, the
//! supervisor, the job queue and the ComfyUI-compatible gateway, with no
//! window and no display (a GPU server, the second box on the LAN). Logs
//! go to stderr and the log folder; SIGTERM or SIGINT stops it cleanly:
//! the gateway closes, jobs stay on disk, and what it launched is stopped
//! (unless "keep instances running" is on).

use std::net::SocketAddr;
use std::path::PathBuf;
use storycore_core::engine::{Engine, EngineOptions};
use storycore_core::gateway::DEFAULT_ADDR;
use storycore_core::paths::AppPaths;
use storycore_core::settings::{EnvSettings, GatewayChoice};

pub const USAGE: &str = "usage: storycore-engine             the desktop app
       storycore-engine serve [--gateway ADDR] [--tls-cert FILE --tls-key FILE | --plain-http]
                                    no window: the fleet and its queue behind a
                                    ComfyUI-compatible gateway on ADDR
                                    (default 127.0.0.1:8288). An address on the
                                    network needs STORYCORE_GATEWAY_TOKEN (sent
                                    as STORYCORE_GATEWAY_AUTH says: bearer,
                                    basic or header:<Name>) and serves HTTPS:
                                    with the certificate and key given (PEM),
                                    else with one it makes and keeps (its
                                    fingerprint is printed); --plain-http serves
                                    it in clear instead. Requests must be
                                    addressed to this machine's names or to
                                    those of STORYCORE_GATEWAY_HOSTS
       storycore-engine tokens create NAME [--admin]
       storycore-engine tokens list
       storycore-engine tokens revoke NAME
                                    the gateway's named tokens, one per person:
                                    create prints the token (shown only then);
                                    a person sees and touches only their own
                                    prompts and files (--admin: everyone's);
                                    a running gateway takes a change at once";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Mode {
    Desktop,
    Serve(ServeArgs),
    Tokens(TokensCmd),
    Help,
}

/// `tokens`' subcommands.
#[derive(Debug, PartialEq, Eq)]
pub enum TokensCmd {
    Create { name: String, admin: bool },
    List,
    Revoke { name: String },
}

fn parse_tokens(args: &[String]) -> Result<Mode, String> {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let cmd = match words.as_slice() {
        ["create", name] => TokensCmd::Create {
            name: name.to_string(),
            admin: false,
        },
        ["create", name, "--admin"] | ["create", "--admin", name] => TokensCmd::Create {
            name: name.to_string(),
            admin: true,
        },
        ["list"] => TokensCmd::List,
        ["revoke", name] => TokensCmd::Revoke {
            name: name.to_string(),
        },
        ["-h" | "--help", ..] => return Ok(Mode::Help),
        _ => {
            return Err(format!(
                "tokens takes: create NAME [--admin], list, or revoke NAME\n{USAGE}"
            ))
        }
    };
    Ok(Mode::Tokens(cmd))
}

/// Runs a `tokens` subcommand on the config folder's tokens file.
pub fn tokens(cmd: &TokensCmd, config_dir: &std::path::Path) -> Result<String, String> {
    let book = storycore_core::gateway::TokenBook::open(config_dir);
    match cmd {
        TokensCmd::Create { name, admin } => {
            let token = book.create(name, *admin).map_err(|e| e.to_string())?;
            Ok(format!(
                "{token}\n(the token of {name}{}: shown only now; give it to them. It is sent as Authorization: Bearer <token>, or as the password of basic authorization)",
                if *admin { ", who sees everyone's prompts" } else { "" }
            ))
        }
        TokensCmd::List => {
            let all = book.list();
            if all.is_empty() {
                return Ok("no named tokens".to_string());
            }
            Ok(all
                .iter()
                .map(|t| {
                    format!(
                        "{}\t{}\tmade {}",
                        t.name,
                        if t.admin { "admin" } else { "person" },
                        t.created_at
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"))
        }
        TokensCmd::Revoke { name } => {
            book.revoke(name).map_err(|e| e.to_string())?;
            Ok(format!(
                "revoked the token of {name}: refused from now on, its sockets closed"
            ))
        }
    }
}

/// `serve`'s options.
#[derive(Debug, PartialEq, Eq)]
pub struct ServeArgs {
    pub gateway: SocketAddr,
    /// The user's certificate and key (PEM) for HTTPS on the network.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Plain HTTP on the network, asked for explicitly.
    pub plain_http: bool,
}

/// Reads the arguments after the program's name. Only `serve` and the help
/// flags are the app's own: anything else is left to the desktop app (a
/// second launch's arguments go to the running window).
pub fn parse(args: &[String]) -> Result<Mode, String> {
    match args.first().map(String::as_str) {
        Some("-h" | "--help") => Ok(Mode::Help),
        Some("serve") => parse_serve(&args[1..]),
        Some("tokens") => parse_tokens(&args[1..]),
        _ => Ok(Mode::Desktop),
    }
}

fn parse_serve(args: &[String]) -> Result<Mode, String> {
    let mut gateway: SocketAddr = DEFAULT_ADDR.parse().expect("a valid default");
    let (mut cert, mut key, mut plain_http) = (None, None, false);
    let mut rest = args.iter();
    while let Some(a) = rest.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        let mut value = |what: &str| {
            inline
                .clone()
                .or_else(|| rest.next().cloned())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("{flag} needs {what}\n{USAGE}"))
        };
        match flag {
            "--gateway" => {
                let v = value("an address, such as 127.0.0.1:8288")?;
                gateway = v.parse().map_err(|_| {
                    format!("--gateway '{v}' is not an address and port, such as 127.0.0.1:8288")
                })?;
            }
            "--tls-cert" => cert = Some(PathBuf::from(value("a PEM certificate file")?)),
            "--tls-key" => key = Some(PathBuf::from(value("a PEM private key file")?)),
            "--plain-http" if inline.is_none() => plain_http = true,
            "-h" | "--help" => return Ok(Mode::Help),
            other => return Err(format!("serve does not take '{other}'\n{USAGE}")),
        }
    }
    let tls = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => return Err("--tls-cert and --tls-key go together: give both".to_string()),
    };
    if tls.is_some() && plain_http {
        return Err("--plain-http and a certificate contradict each other: give one".to_string());
    }
    Ok(Mode::Serve(ServeArgs {
        gateway,
        tls,
        plain_http,
    }))
}

/// Runs until SIGTERM or SIGINT.
pub fn run(paths: AppPaths, env: EnvSettings, args: ServeArgs) -> Result<(), String> {
    let runtime =
        storycore_core::engine::runtime().map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(serve(paths, env, args))
}

async fn serve(paths: AppPaths, env: EnvSettings, args: ServeArgs) -> Result<(), String> {
    let choice = GatewayChoice::Serve {
        addr: args.gateway,
        tls: args.tls,
        plain_http: args.plain_http,
    };
    let opened = Engine::open(EngineOptions::new(paths, env, choice)).await?;
    let engine = opened.engine;
    // A gateway that cannot serve is `serve`'s failure: nothing else to do.
    if let Err(e) = opened.gateway {
        engine.shutdown().await;
        return Err(e);
    }
    for n in engine.begin().await {
        tracing::warn!("{n}");
    }
    if let Some(g) = engine.gateway_status().await {
        tracing::info!(
            "serving: a ComfyUI-compatible gateway on {} for {} instance(s); SIGTERM or Ctrl+C stops",
            g.url,
            engine.manager().list().len()
        );
        if let (Some(fingerprint), Some(trust)) = (g.fingerprint, g.trust_file) {
            tracing::info!(
                "HTTPS certificate SHA-256 fingerprint {fingerprint} (clients trust {trust} or pin this fingerprint)"
            );
        }
    }
    let signal = wait_for_stop().await;
    tracing::info!("{signal}: stopping");
    engine.shutdown().await;
    Ok(())
}

async fn wait_for_stop() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers, Ctrl+C through tokio's own.
        let _ = tokio::signal::ctrl_c().await;
        return "interrupted";
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_command_line() {
        assert_eq!(parse(&args(&[])), Ok(Mode::Desktop));
        assert_eq!(parse(&args(&["serve"])), Ok(serve_at("127.0.0.1:8288")));
        assert_eq!(
            parse(&args(&["serve", "--gateway", "127.0.0.1:9000"])),
            Ok(serve_at("127.0.0.1:9000"))
        );
        assert_eq!(
            parse(&args(&["serve", "--gateway=[::1]:9000"])),
            Ok(serve_at("[::1]:9000"))
        );
        assert!(parse(&args(&["serve", "--gateway"]))
            .unwrap_err()
            .contains("needs an address"));
        assert!(parse(&args(&["serve", "--gateway", "here"]))
            .unwrap_err()
            .contains("not an address"));
        assert!(parse(&args(&["serve", "--bogus"]))
            .unwrap_err()
            .contains("'--bogus'"));
        assert_eq!(parse(&args(&["--help"])), Ok(Mode::Help));
        assert_eq!(
            parse(&args(&["tokens", "create", "alice", "--admin"])),
            Ok(Mode::Tokens(TokensCmd::Create {
                name: "alice".into(),
                admin: true
            }))
        );
        assert_eq!(
            parse(&args(&["tokens", "revoke", "alice"])),
            Ok(Mode::Tokens(TokensCmd::Revoke {
                name: "alice".into()
            }))
        );
        assert!(parse(&args(&["tokens", "make"]))
            .unwrap_err()
            .contains("create NAME"));
        assert_eq!(
            parse(&args(&["serve", "--tls-cert", "c.pem", "--tls-key=k.pem"])),
            Ok(Mode::Serve(ServeArgs {
                tls: Some(("c.pem".into(), "k.pem".into())),
                ..ServeArgs::at("127.0.0.1:8288")
            }))
        );
        assert!(parse(&args(&["serve", "--tls-cert", "c.pem"]))
            .unwrap_err()
            .contains("go together"));
        assert!(parse(&args(&[
            "serve",
            "--plain-http",
            "--tls-cert",
            "c",
            "--tls-key",
            "k"
        ]))
        .unwrap_err()
        .contains("contradict"));
        assert_eq!(
            parse(&args(&["serve", "--plain-http"])),
            Ok(Mode::Serve(ServeArgs {
                plain_http: true,
                ..ServeArgs::at("127.0.0.1:8288")
            }))
        );
    }

    fn serve_at(addr: &str) -> Mode {
        Mode::Serve(ServeArgs::at(addr))
    }

    impl ServeArgs {
        fn at(addr: &str) -> Self {
            Self {
                gateway: addr.parse().unwrap(),
                tls: None,
                plain_http: false,
            }
        }
    }
}

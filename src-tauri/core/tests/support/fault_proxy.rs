//! A TCP proxy between a client and a server whose behaviour a test changes at
//! run time: pass through, delay every answer, drop new connections, or accept
//! and never answer. Changing the mode cuts the open connections, so pooled
//! keep-alive connections cannot bypass the new mode.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    Pass,
    /// Each chunk from the server is held this long before it is forwarded.
    Delay(Duration),
    /// New connections are accepted and closed at once.
    Refuse,
    /// Connections are accepted, requests read and dropped, nothing answered.
    Blackhole,
}

struct Shared {
    mode: Mode,
    /// Cancelled (and replaced) at each mode change: ends every open connection.
    generation: CancellationToken,
}

pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    stop: CancellationToken,
}

impl FaultProxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy bind");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Mutex::new(Shared {
            mode: Mode::Pass,
            generation: CancellationToken::new(),
        }));
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(
            listener,
            upstream,
            shared.clone(),
            stop.clone(),
        ));
        FaultProxy { addr, shared, stop }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_mode(&self, mode: Mode) {
        let mut s = self.shared.lock().unwrap();
        s.mode = mode;
        s.generation.cancel();
        s.generation = CancellationToken::new();
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.shared.lock().unwrap().generation.cancel();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        let Ok((client, _)) = accepted else { continue };
        let (mode, gen) = {
            let s = shared.lock().unwrap();
            (s.mode, s.generation.clone())
        };
        tokio::spawn(async move {
            tokio::select! {
                _ = gen.cancelled() => {}
                _ = serve(client, upstream, mode) => {}
            }
        });
    }
}

async fn serve(mut client: TcpStream, upstream: SocketAddr, mode: Mode) {
    let delay = match mode {
        Mode::Refuse => return,
        Mode::Blackhole => {
            let mut buf = [0u8; 4096];
            while matches!(client.read(&mut buf).await, Ok(n) if n > 0) {}
            // The client gave up; keep nothing open.
            return;
        }
        Mode::Pass => Duration::ZERO,
        Mode::Delay(d) => d,
    };
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = async {
        let _ = tokio::io::copy(&mut cr, &mut sw).await;
        let _ = sw.shutdown().await;
    };
    let down = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match sr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if cw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = cw.shutdown().await;
    };
    tokio::join!(up, down);
}

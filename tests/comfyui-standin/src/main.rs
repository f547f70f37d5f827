//! comfyui-standin: a ComfyUI 0.3.64 stand-in for tests. See tests/README.md.

mod args;
mod exec;
mod faults;
mod files;
mod models;
mod png;
mod routes;
mod state;
mod ws;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::faults::Standin;
use crate::state::{App, Dirs};

fn fail(code: i32, msg: &str) -> ! {
    eprintln!("{msg}");
    std::process::exit(code)
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let exe = argv
        .first()
        .cloned()
        .unwrap_or_else(|| "comfyui-standin".into());
    let rest = &argv[1.min(argv.len())..];
    let Some(script) = rest.first() else {
        fail(2, &format!("usage: {exe} main.py [ComfyUI options]\n(comfyui-standin is started like `python main.py ...`)"));
    };
    if !Path::new(script).is_file() {
        let abs = std::env::current_dir()
            .map(|d| d.join(script))
            .unwrap_or_else(|_| PathBuf::from(script));
        fail(
            2,
            &format!(
                "{exe}: can't open file '{}': [Errno 2] No such file or directory",
                abs.display()
            ),
        );
    }
    let args = match args::parse(rest) {
        Ok(a) => a,
        Err(args::Exit::Help) => {
            print!("{}", args::HELP);
            std::process::exit(0)
        }
        Err(args::Exit::Error(e)) => fail(
            2,
            &format!("{}\nmain.py: error: {e}", args::usage().trim_end()),
        ),
    };
    let cfg = match Standin::from_env() {
        Ok(c) => c,
        Err(e) => fail(2, &format!("comfyui-standin: {e}")),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(1, &format!("tokio: {e}")));
    rt.block_on(run(args, cfg));
}

fn dirs(args: &args::Args) -> Dirs {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let base = args
        .base_directory
        .as_ref()
        .map(|b| cwd.join(b))
        .unwrap_or(cwd);
    let pick = |flag: &Option<String>, name: &str| {
        flag.as_ref()
            .map(|d| base.join(d))
            .unwrap_or_else(|| base.join(name))
    };
    Dirs {
        models: base.join("models"),
        output: pick(&args.output_directory, "output"),
        input: pick(&args.input_directory, "input"),
        temp: args
            .temp_directory
            .as_ref()
            .map(|d| base.join(d).join("temp"))
            .unwrap_or_else(|| base.join("temp")),
        user: pick(&args.user_directory, "user"),
    }
}

fn meminfo() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or(0)
    };
    (field("MemTotal:"), field("MemAvailable:"))
}

/// The GPU this process would use: CUDA_VISIBLE_DEVICES (set from
/// --cuda-device like ComfyUI does) filters and reorders STANDIN_GPUS.
fn visible_gpus(args: &args::Args, cfg: &Standin) -> Vec<faults::Gpu> {
    let env = args
        .cuda_device
        .map(|d| d.to_string())
        .or_else(|| std::env::var("CUDA_VISIBLE_DEVICES").ok());
    match env {
        None => cfg.gpus.clone(),
        Some(list) => list
            .split(',')
            .map(|s| {
                s.trim()
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| cfg.gpus.get(i).cloned())
            })
            .take_while(Option::is_some)
            .flatten()
            .collect(),
    }
}

fn system_stats(args: &args::Args, cfg: &Standin) -> (String, String) {
    let (total, free) = meminfo();
    let gpus = visible_gpus(args, cfg);
    let index = args.default_device.unwrap_or(0) as usize;
    let device = match gpus.get(index).filter(|_| !args.cpu) {
        None => {
            json!({"name": "cpu", "type": "cpu", "index": null, "vram_total": total, "vram_free": free, "torch_vram_total": total, "torch_vram_free": free})
        }
        Some(g) => {
            let bytes = g.mib * 1024 * 1024;
            json!({"name": format!("cuda:{index} {} : cudaMallocAsync", g.name), "type": "cuda", "index": index, "vram_total": bytes, "vram_free": bytes - bytes / 50, "torch_vram_total": 0, "torch_vram_free": 0})
        }
    };
    let stats = json!({
        "system": {
            "os": "posix", "ram_total": total, "ram_free": free, "comfyui_version": "0.3.64",
            "required_frontend_version": "1.27.10", "installed_templates_version": "0.1.95", "required_templates_version": "0.1.95",
            "python_version": "3.11.7 (comfyui-standin)", "pytorch_version": "2.8.0+cu128", "embedded_python": false, "argv": args.argv,
        },
        "devices": [device],
    });
    let name = device_name(&stats);
    (stats.to_string(), name)
}

fn device_name(stats: &Value) -> String {
    stats["devices"][0]["name"]
        .as_str()
        .unwrap_or("cpu")
        .to_string()
}

fn sigint_ignored() -> bool {
    // SAFETY: querying the current disposition only.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGINT, std::ptr::null(), &mut old) == 0
            && old.sa_sigaction == libc::SIG_IGN
    }
}

async fn run(args: args::Args, cfg: Standin) {
    let dirs = dirs(&args);
    let _ = std::fs::remove_dir_all(&dirs.temp);
    for d in [
        &dirs.output,
        &dirs.input,
        &dirs.temp,
        &dirs.user.join("default"),
    ] {
        if let Err(e) = std::fs::create_dir_all(d) {
            fail(1, &format!("cannot create {}: {e}", d.display()));
        }
    }
    let object_info: Value = serde_json::from_str(routes::OBJECT_INFO)
        .unwrap_or_else(|e| fail(1, &format!("object_info: {e}")));
    let (stats, device) = system_stats(&args, &cfg);
    let app = Arc::new(App::new(args, cfg, dirs, object_info, stats));
    let cfg = &app.cfg;
    app.log("comfyui-standin: ComfyUI 0.3.64 stand-in");
    app.log(&format!("Device: {device}"));
    app.log(&format!(
        "Setting temp directory to: {}",
        app.dirs.temp.display()
    ));
    if !sigint_ignored() {
        let a = app.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                a.log("\nStopped server");
                let _ = std::fs::remove_dir_all(&a.dirs.temp);
                std::process::exit(0);
            }
        });
    }
    if cfg.startup_delay_ms > 0 {
        // Where a real ComfyUI spends its start: importing custom nodes.
        app.log(&format!(
            "Loading custom nodes... (STANDIN_STARTUP_DELAY_MS: {} ms)",
            cfg.startup_delay_ms
        ));
        tokio::time::sleep(Duration::from_millis(cfg.startup_delay_ms)).await;
    }
    if cfg.never_ready {
        app.log("Loading custom nodes... (STANDIN_NEVER_READY: startup never finishes)");
        std::future::pending::<()>().await;
    }
    app.log("Starting server\n");
    let host = app
        .args
        .listen
        .split(',')
        .next()
        .unwrap_or("127.0.0.1")
        .trim()
        .to_string();
    let host = if host.is_empty() {
        "0.0.0.0".to_string()
    } else {
        host
    };
    let port = app.args.port;
    let addr: SocketAddr = match format!("{host}:{port}")
        .parse()
        .or_else(|_| format!("[{host}]:{port}").parse())
    {
        Ok(a) => a,
        Err(_) => fail(
            1,
            &format!("OSError: [Errno -2] Name or service not known: '{host}'"),
        ),
    };
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            let errno = e.raw_os_error().unwrap_or(98);
            fail(1, &format!("Traceback (most recent call last):\n  File \"main.py\", line 1, in <module>\nOSError: [Errno {errno}] error while attempting to bind on address ('{host}', {port}): {}", e.to_string().split(" (os error").next().unwrap_or("").to_lowercase()));
        }
    };
    let _ = listener.set_nonblocking(true);
    let listener = tokio::net::TcpListener::from_std(listener)
        .unwrap_or_else(|e| fail(1, &format!("listener: {e}")));
    let shown = if host == "0.0.0.0" || host == "::" {
        "127.0.0.1".to_string()
    } else if host.contains(':') {
        format!("[{host}]")
    } else {
        host.clone()
    };
    let scheme = if app.cfg.tls.is_some() {
        "https"
    } else {
        "http"
    };
    app.log(&format!("To see the GUI go to: {scheme}://{shown}:{port}"));
    if cfg.hang {
        app.hung.store(true, Ordering::Relaxed);
    }
    if let Some(ms) = cfg.hang_after_ms {
        let a = app.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            a.log("comfyui-standin: STANDIN_HANG_AFTER_MS reached, no longer answering");
            a.hung.store(true, Ordering::Relaxed);
        });
    }
    if let Some(ms) = cfg.crash_after_ms {
        let a = app.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            faults::crash(&a.cfg, &format!("STANDIN_CRASH_AFTER_MS={ms}"));
        });
    }
    tokio::spawn(exec::worker(app.clone()));
    let served = match &app.cfg.tls {
        Some((cert, key)) => {
            let acceptor = tls_acceptor(cert, key).unwrap_or_else(|e| fail(1, &e));
            let tls = TlsListener {
                tcp: listener,
                acceptor,
            };
            axum::serve(tls, routes::router(app.clone())).await
        }
        None => axum::serve(listener, routes::router(app.clone())).await,
    };
    if let Err(e) = served {
        fail(1, &format!("server error: {e}"));
    }
}

/// HTTPS like ComfyUI's `--tls-certfile/--tls-keyfile`, or a proxy in front.
fn tls_acceptor(cert: &Path, key: &Path) -> Result<tokio_native_tls::TlsAcceptor, String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    let identity = native_tls::Identity::from_pkcs8(&read(cert)?, &read(key)?).map_err(|e| {
        format!("STANDIN_TLS_CERT/STANDIN_TLS_KEY are not a PEM certificate and PKCS#8 key: {e}")
    })?;
    native_tls::TlsAcceptor::new(identity)
        .map(Into::into)
        .map_err(|e| format!("TLS: {e}"))
}

struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_native_tls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_native_tls::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (tcp, addr) = match self.tcp.accept().await {
                Ok(c) => c,
                Err(_) => {
                    // Out of descriptors and the like: wait instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // A client that does not speak TLS (or gives up) costs one connection.
            if let Ok(Ok(tls)) =
                tokio::time::timeout(Duration::from_secs(5), self.acceptor.accept(tcp)).await
            {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

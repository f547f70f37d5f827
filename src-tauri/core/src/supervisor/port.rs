//! Is the port free before a launch, and if not, who holds it? Real ComfyUI
//! loads every node (about 11 s) before it finds out its port is taken and
//! exits 1 (FACTS section 6), so the app checks first and says why at once.

use super::error::{PortHolder, SupervisorError};
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::time::Duration;

/// How long the "is it a ComfyUI?" question may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

fn socket_addr(host: &str, port: u16) -> Option<SocketAddr> {
    (host, port).to_socket_addrs().ok()?.next()
}

/// True when a listener could bind `host:port` now. Binding is the question
/// ComfyUI will ask; connecting would miss a server bound to another address.
pub fn port_is_free(host: &str, port: u16) -> bool {
    socket_addr(host, port).is_some_and(|addr| TcpListener::bind(addr).is_ok())
}

/// The first free port from `start` upwards on `host`, if any.
pub fn suggest_free_port(host: &str, start: u16) -> Option<u16> {
    (start.max(1)..=u16::MAX).find(|p| port_is_free(host, *p))
}

/// Ok when `host:port` is free. Otherwise a `ComfyUiAlreadyRunning` error when
/// what answers there is a ComfyUI (the caller can offer to attach), else
/// `PortInUse` naming the holding process where the OS tells.
pub async fn check_port(id: &str, host: &str, port: u16) -> Result<(), SupervisorError> {
    if port_is_free(host, port) {
        return Ok(());
    }
    let holder = listening_process(port);
    if let Some(version) = comfyui_version_at(host, port).await {
        return Err(SupervisorError::ComfyUiAlreadyRunning {
            id: id.to_string(),
            host: host.to_string(),
            port,
            version,
            holder,
        });
    }
    let suggestion = suggest_free_port(host, port.saturating_add(1)).unwrap_or(0);
    Err(SupervisorError::PortInUse {
        id: id.to_string(),
        host: host.to_string(),
        port,
        holder,
        suggestion,
    })
}

/// `system.comfyui_version` from `GET /system_stats`, when a ComfyUI answers there.
pub async fn comfyui_version_at(host: &str, port: u16) -> Option<String> {
    let host = match host {
        "0.0.0.0" => "127.0.0.1",
        "::" => "::1",
        h => h,
    };
    let url = if host.contains(':') {
        format!("http://[{host}]:{port}/system_stats")
    } else {
        format!("http://{host}:{port}/system_stats")
    };
    let client = reqwest::Client::builder()
        .timeout(PROBE_TIMEOUT)
        .build()
        .ok()?;
    let body: serde_json::Value = client.get(url).send().await.ok()?.json().await.ok()?;
    body.pointer("/system/comfyui_version")?
        .as_str()
        .map(str::to_string)
}

/// The process listening on `port`, from /proc (Linux): the socket's inode in
/// /proc/net/tcp{,6}, then the process with a descriptor on that inode. Other
/// systems, or processes of other users, give None.
pub fn listening_process(port: u16) -> Option<PortHolder> {
    let inodes: Vec<u64> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|table| listening_inodes(&table, port))
        .collect();
    if inodes.is_empty() {
        return None;
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|target| wanted.iter().any(|w| target.as_os_str() == w.as_str()))
        });
        if holds {
            let name = std::fs::read_to_string(entry.path().join("comm"))
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "?".into());
            return Some(PortHolder { pid, name });
        }
    }
    None
}

/// Inodes of the sockets listening (state 0A) on `port` in a /proc/net/tcp table.
pub fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let local_port = cols.get(1)?.rsplit(':').next()?;
            let listening = *cols.get(3)? == "0A";
            let matches = u16::from_str_radix(local_port, 16).ok()? == port;
            (listening && matches).then(|| cols.get(9)?.parse().ok())?
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_listening_sockets_from_a_proc_table() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:1FFC 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 424242 1 0000000000000000 100 0 0 10 0\n\
   1: 0100007F:1FFC 0100007F:9C40 01 00000000:00000000 00:00000000 00000000  1000        0 515151 1 0000000000000000 20 4 30 10 -1\n\
   2: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 777 1 0000000000000000 100 0 0 10 0\n";
        assert_eq!(listening_inodes(table, 8188), vec![424242]);
        assert_eq!(listening_inodes(table, 8080), vec![777]);
        assert!(listening_inodes(table, 9999).is_empty());
    }
}

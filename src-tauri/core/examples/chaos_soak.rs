//! Chaos soak: the fleet under a steady stream of jobs while faults land at
//! random moments, then a check that nothing was lost or run twice and that
//! every instance came back.
//!
//! ```text
//! cargo run -p storycore-core --release --example chaos_soak -- --minutes 10 [--seed N]
//! ```
//!
//! Two processes. The *owner* is a small app: it opens the instance manager
//! and the job queue in a temp folder, supervises 4 local stand-ins (two of
//! them with a 1.5 s start delay, like a real ComfyUI that loads custom
//! nodes), keeps instances running across its own death (so a new owner
//! re-attaches), runs a pool of 1 to 2 more stand-ins beside them (members
//! started when the backlog waits, stopped when idle), submits a job every
//! 300 ms, and prints each instance status, job state change and pool
//! decision with its time. The *controller* (this process) starts
//! the owner and, every 2-6 s, does one of: SIGKILL an instance's process
//! (one of the four, or a running member of the pool);
//! SIGSTOP one for 2-4 s (longer than the probe timeout) then SIGCONT it;
//! SIGKILL the owner and start a new one. At the end it stops the faults and
//! the stream, waits for every job to end, and prints: jobs accepted (on disk
//! in the journal), succeeded exactly once, lost, run twice (output images of
//! a job on the instances: one per completed execution), faults injected,
//! instances back to running, crash to the job running elsewhere and crash to
//! the instance running again (also from its process first answering), and
//! the owner's memory. It exits 1 when a goal is missed: nothing lost,
//! nothing run twice, every instance back, the pool started a member,
//! crash to job elsewhere under 2 s
//! (median), instance running within 10 s of its process answering.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[path = "support/standin.rs"]
mod standin;

const INSTANCES: usize = 4;
const SUBMIT_EVERY: Duration = Duration::from_millis(300);
/// The pool's id; its members are `soakpool-<n>`.
const POOL: &str = "soakpool";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--owner") {
        let dir = PathBuf::from(&args[2]);
        let standin = PathBuf::from(&args[3]);
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(owner::run(dir, standin));
        return;
    }
    let mut minutes = 1.0f64;
    let mut seed = 0x5eed_u64;
    let mut i = 1;
    while i < args.len() {
        match args[i].as_str() {
            "--minutes" => {
                minutes = args[i + 1].parse().expect("--minutes takes a number");
                i += 1;
            }
            "--seed" => {
                seed = args[i + 1].parse().expect("--seed takes an integer");
                i += 1;
            }
            other => panic!("unknown argument {other}: use --minutes N [--seed N]"),
        }
        i += 1;
    }
    std::process::exit(controller::run(minutes, seed));
}

/// The app under test: manager + queue + a job stream, printing what happens.
mod owner {
    use super::*;
    use storycore_core::dispatch::{DispatchOptions, JobQueue};
    use storycore_core::health::HealthPolicy;
    use storycore_core::manager::{InstanceManager, ManagerOptions};
    use storycore_core::pool::memory::FixedMemory;
    use storycore_core::pool::{PoolOptions, Pools};
    use storycore_core::supervisor::{RestartOptions, SupervisorOptions};
    use storycore_types::{AppEvent, InstanceConfig, InstanceStatus, JobTarget, PoolConfig};

    pub fn workflow(k: u64) -> serde_json::Value {
        let mut w = serde_json::Map::new();
        w.insert(
            "1".into(),
            serde_json::json!({"class_type": "EmptyImage",
                "inputs": {"width": 16, "height": 16, "batch_size": 1, "color": k % 0xffffff}}),
        );
        let mut last = "1".to_string();
        for n in 0..(2 + k % 5) {
            let id = format!("{}", 10 + n);
            w.insert(
                id.clone(),
                serde_json::json!({"class_type": "ImageInvert", "inputs": {"image": [last, 0]}}),
            );
            last = id;
        }
        w.insert(
            "2".into(),
            serde_json::json!({"class_type": "SaveImage",
                "inputs": {"images": [last, 0], "filename_prefix": format!("soak{k}")}}),
        );
        serde_json::Value::Object(w)
    }

    pub async fn run(dir: PathBuf, standin: PathBuf) {
        let mut o = ManagerOptions::new(dir.join("config"));
        o.data_dir = dir.join("data");
        o.health = HealthPolicy {
            interval: Duration::from_millis(250),
            resource_interval: Duration::from_secs(1),
            starting_interval: Duration::from_millis(100),
            probe_timeout: Duration::from_millis(500),
            failure_threshold: 3,
            ..HealthPolicy::default()
        };
        o.supervisor = SupervisorOptions {
            restart: RestartOptions {
                backoff_initial: Duration::from_millis(200),
                backoff_max: Duration::from_secs(2),
                stable_after: Duration::from_secs(5),
                max_starts: 1000,
                start_window: Duration::from_secs(60),
                ..RestartOptions::default()
            },
            stop_grace: Duration::from_secs(2),
            ..SupervisorOptions::default()
        };
        o.unhealthy_restart_after = Duration::from_secs(2);
        let (m, _) = InstanceManager::open(o).unwrap();
        m.set_keep_running(true);
        let comfy = dir.join("comfy");
        std::fs::create_dir_all(&comfy).unwrap();
        std::fs::write(comfy.join("main.py"), "# stand-in\n").unwrap();
        let ports: Vec<u16> = std::fs::read_to_string(dir.join("ports"))
            .unwrap()
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect();
        for (n, port) in ports.iter().enumerate() {
            let id = format!("gpu{n}");
            if m.get(&id).is_some() {
                continue;
            }
            let mut c = InstanceConfig::new(&id, &id, u32::from(*port));
            c.comfyui_path = Some(comfy.display().to_string());
            c.python_path = Some(standin.display().to_string());
            c.gpu_device = Some("cpu".into());
            c.auto_start = Some(true);
            let mut env = BTreeMap::from([("STANDIN_NODE_MS".to_string(), "80".to_string())]);
            if n % 2 == 1 {
                env.insert("STANDIN_STARTUP_DELAY_MS".into(), "1500".into());
            }
            c.env_vars = Some(env);
            m.create(c).await.unwrap();
        }
        let options = DispatchOptions {
            poll_interval: Duration::from_millis(200),
            request_timeout: Duration::from_secs(1),
            cooldown: Duration::from_millis(500),
            max_attempts: 50,
            ..DispatchOptions::default()
        };
        let (queue, _) = JobQueue::open(m.clone(), dir.join("config"), options).unwrap();
        let mut events = m.subscribe();
        let mut decisions_seen: HashMap<String, usize> = HashMap::new();
        tokio::spawn(async move {
            let mut last_status: HashMap<String, InstanceStatus> = HashMap::new();
            let mut last_job: HashMap<String, String> = HashMap::new();
            loop {
                match events.recv().await {
                    Ok(AppEvent::InstanceUpdated(i)) => {
                        if last_status.insert(i.id.clone(), i.status) != Some(i.status) {
                            println!("status {} {} {}", i.id, i.status.as_str(), now_ms());
                        }
                    }
                    Ok(AppEvent::JobUpdated(j)) => {
                        let key = format!("{}@{:?}", j.state.as_str(), j.instance_id);
                        if last_job.insert(j.id.clone(), key.clone()) != Some(key) {
                            println!(
                                "job {} {} {} {}",
                                j.id,
                                j.state.as_str(),
                                j.instance_id.as_deref().unwrap_or("-"),
                                now_ms()
                            );
                        }
                    }
                    // The pool's decisions, each once per owner.
                    Ok(AppEvent::PoolUpdated(p)) => {
                        let seen = decisions_seen.entry(p.config.id.clone()).or_default();
                        for d in p.decisions.iter().skip(*seen) {
                            println!(
                                "pool {:?} {} {}",
                                d.action,
                                d.member.as_deref().unwrap_or("-"),
                                now_ms()
                            );
                        }
                        *seen = p.decisions.len();
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return,
                }
            }
        });
        let kept = m.reattach_local().await;
        for i in m.list() {
            if i.status == InstanceStatus::Stopped && !kept.contains(&i.id) {
                let _ = m.start(&i.id).await;
            }
        }
        // A pool beside the fixed four: members started when the backlog
        // waits (after faults), stopped when idle, killed like the others.
        // Opened after the re-attach, so kept members are not started twice.
        let (pools, _) = Pools::open(
            &dir.join("config"),
            m.clone(),
            queue.clone(),
            Arc::new(FixedMemory::new(&[], 4096)),
            PoolOptions {
                ports: 8400..=8499,
                ..PoolOptions::default()
            },
        )
        .unwrap();
        if pools.get(POOL).is_none() {
            let mut p = PoolConfig::new(POOL, "Soak pool", comfy.display().to_string());
            p.python_path = Some(standin.display().to_string());
            p.env_vars = Some(BTreeMap::from([(
                "STANDIN_NODE_MS".to_string(),
                "80".to_string(),
            )]));
            p.devices = vec!["cpu".into()];
            p.min_members = 1;
            p.max_members = 2;
            p.scale_up_wait_secs = 0.5;
            p.cooldown_secs = 2;
            p.idle_timeout_secs = 4;
            p.memory_need_mib = Some(64);
            pools.create(p).await.unwrap();
        }
        for i in m.list() {
            println!("status {} {} {}", i.id, i.status.as_str(), now_ms());
        }
        println!("owner ready {}", now_ms());
        // The stream: job k is "soak{k}"; a new owner goes on after the last
        // one on disk.
        let mut k = queue
            .list()
            .iter()
            .filter_map(|j| {
                j.workflow["2"]["inputs"]["filename_prefix"]
                    .as_str()?
                    .strip_prefix("soak")?
                    .parse::<u64>()
                    .ok()
            })
            .max()
            .map_or(0, |k| k + 1);
        let stop = dir.join("stop-submitting");
        let mut tick = tokio::time::interval(SUBMIT_EVERY);
        loop {
            tick.tick().await;
            if stop.exists() {
                continue;
            }
            match queue.submit(workflow(k), JobTarget::Auto).await {
                Ok(_) => k += 1,
                Err(e) => eprintln!("owner: submit refused: {e}"),
            }
        }
    }
}

mod controller {
    use super::*;

    /// What the owners printed, in order, with the controller's own notes.
    #[derive(Default)]
    struct Seen {
        /// (instance, status, ms)
        statuses: Vec<(String, String, u64)>,
        /// (job, state, instance, ms)
        jobs: Vec<(String, String, String, u64)>,
        /// The pool's decisions: (action, member, ms)
        pool: Vec<(String, String, u64)>,
    }

    struct Owner {
        child: Child,
        started: Instant,
    }

    fn spawn_owner(dir: &Path, standin: &Path, seen: &Arc<Mutex<Seen>>) -> Owner {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .arg("--owner")
            .arg(dir)
            .arg(standin)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join("owner.log"))
                    .unwrap(),
            ))
            .spawn()
            .expect("starting the owner");
        let out = child.stdout.take().unwrap();
        let seen = seen.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                let p: Vec<&str> = line.split_whitespace().collect();
                let mut s = seen.lock().unwrap();
                match p.as_slice() {
                    ["status", id, st, ms] => {
                        s.statuses
                            .push((id.to_string(), st.to_string(), ms.parse().unwrap_or(0)))
                    }
                    ["pool", action, member, ms] => s.pool.push((
                        action.to_string(),
                        member.to_string(),
                        ms.parse().unwrap_or(0),
                    )),
                    ["job", id, st, inst, ms] => s.jobs.push((
                        id.to_string(),
                        st.to_string(),
                        inst.to_string(),
                        ms.parse().unwrap_or(0),
                    )),
                    _ => {}
                }
            }
        });
        Owner {
            child,
            started: Instant::now(),
        }
    }

    /// xorshift64*, seeded: a failing run can be replayed with --seed.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
        }
    }

    fn instance_pid(dir: &Path, n: usize) -> Option<u32> {
        pid_of(dir, &format!("gpu{n}"))
    }

    /// Every instance that has a folder: the four and the pool's members.
    fn all_instances(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir.join("data/instances"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }

    fn pid_of(dir: &Path, id: &str) -> Option<u32> {
        let rec = dir.join(format!("data/instances/{id}/process.json"));
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(rec).ok()?).ok()?;
        v["pid"].as_u64().map(|p| p as u32)
    }

    fn answers(port: u16) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect_timeout(
            &([127, 0, 0, 1], port).into(),
            Duration::from_millis(200),
        ) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let req = b"GET /system_stats HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
        if s.write_all(req).is_err() {
            return false;
        }
        let mut head = [0u8; 12];
        s.read_exact(&mut head).is_ok() && &head[9..12] == b"200"
    }

    fn rss_kib(pid: u32) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    /// A crash of an instance: when, which, the jobs it was running, and when
    /// its port answered again.
    struct Crash {
        instance: String,
        at: u64,
        running_jobs: Vec<String>,
        answered_at: Option<u64>,
    }

    fn percentile(v: &mut [u64], p: f64) -> Option<u64> {
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let i = ((v.len() - 1) as f64 * p).round() as usize;
        Some(v[i])
    }

    use super::standin::{free_port, standin_binary};

    pub fn run(minutes: f64, seed: u64) -> i32 {
        let standin = standin_binary();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let ports: Vec<u16> = (0..INSTANCES).map(|_| free_port()).collect();
        std::fs::write(
            dir.join("ports"),
            ports
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(" "),
        )
        .unwrap();
        println!(
            "chaos soak: {minutes} min, seed {seed}, {INSTANCES} stand-ins (2 with a 1.5 s start), a job every {} ms, in {}",
            SUBMIT_EVERY.as_millis(),
            dir.display()
        );
        let seen = Arc::new(Mutex::new(Seen::default()));
        let mut owner = spawn_owner(&dir, &standin, &seen);
        let mut rng = Rng(seed | 1);
        let mut faults: BTreeMap<&str, u32> = BTreeMap::new();
        let mut crashes: Vec<Crash> = Vec::new();
        // (what, instance, from ms, to ms): for the diagnosis of a failure.
        let mut fault_log: Vec<(&str, String, u64, u64)> = Vec::new();
        let mut owner_rss: Vec<(f64, u64)> = Vec::new();
        let t0 = Instant::now();
        let soak = Duration::from_secs_f64(minutes * 60.0);
        // Let the fleet come up before the first fault.
        std::thread::sleep(Duration::from_secs(5));
        let mut next_fault = Instant::now() + Duration::from_secs(2 + rng.below(4));
        let mut next_rss = Instant::now();
        while t0.elapsed() < soak {
            std::thread::sleep(Duration::from_millis(20));
            // When a crashed instance's port first answers again.
            for c in crashes.iter_mut().filter(|c| c.answered_at.is_none()) {
                let n: usize = c.instance[3..].parse().unwrap();
                if now_ms() > c.at + 300 && answers(ports[n]) {
                    c.answered_at = Some(now_ms());
                }
            }
            if Instant::now() >= next_rss {
                if let Some(kib) = rss_kib(owner.child.id()) {
                    owner_rss.push((owner.started.elapsed().as_secs_f64(), kib));
                }
                next_rss = Instant::now() + Duration::from_secs(5);
            }
            if Instant::now() < next_fault {
                continue;
            }
            next_fault = Instant::now() + Duration::from_millis(2000 + rng.below(4000));
            match rng.below(10) {
                // SIGKILL a member of the pool, when one runs.
                4 => {
                    let members: Vec<(String, u32)> = all_instances(&dir)
                        .into_iter()
                        .filter(|id| id.starts_with(POOL))
                        .filter_map(|id| {
                            let pid = pid_of(&dir, &id)?;
                            (unsafe { libc::kill(pid as i32, 0) } == 0).then_some((id, pid))
                        })
                        .collect();
                    if members.is_empty() {
                        continue;
                    }
                    let (id, pid) = members[rng.below(members.len() as u64) as usize].clone();
                    unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
                    fault_log.push(("SIGKILL", id, now_ms(), now_ms()));
                    *faults.entry("pool member killed (SIGKILL)").or_default() += 1;
                }
                // SIGKILL an instance (the most common fault).
                0..=3 => {
                    let n = rng.below(INSTANCES as u64) as usize;
                    let Some(pid) = instance_pid(&dir, n) else {
                        continue;
                    };
                    let instance = format!("gpu{n}");
                    let running_jobs = running_on(&seen, &instance);
                    unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
                    fault_log.push(("SIGKILL", instance.clone(), now_ms(), now_ms()));
                    crashes.push(Crash {
                        instance,
                        at: now_ms(),
                        running_jobs,
                        answered_at: None,
                    });
                    *faults.entry("instance killed (SIGKILL)").or_default() += 1;
                }
                // Freeze one for longer than the probe timeout, then thaw it.
                5..=7 => {
                    let n = rng.below(INSTANCES as u64) as usize;
                    let Some(pid) = instance_pid(&dir, n) else {
                        continue;
                    };
                    unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
                    let frozen_for = Duration::from_millis(2000 + rng.below(2000));
                    fault_log.push((
                        "SIGSTOP",
                        format!("gpu{n}"),
                        now_ms(),
                        now_ms() + frozen_for.as_millis() as u64,
                    ));
                    std::thread::spawn(move || {
                        std::thread::sleep(frozen_for);
                        unsafe { libc::kill(pid as i32, libc::SIGCONT) };
                    });
                    *faults
                        .entry("instance frozen (SIGSTOP 2-4 s, SIGCONT)")
                        .or_default() += 1;
                }
                // Kill the app that owns the queue, open it again.
                _ => {
                    let _ = owner.child.kill();
                    let _ = owner.child.wait();
                    std::thread::sleep(Duration::from_millis(300 + rng.below(700)));
                    owner = spawn_owner(&dir, &standin, &seen);
                    fault_log.push(("owner SIGKILL", "-".into(), now_ms(), now_ms()));
                    *faults
                        .entry("queue owner killed (SIGKILL) and reopened")
                        .or_default() += 1;
                }
            }
        }

        // The end: no more faults or jobs; everything must settle.
        std::fs::write(dir.join("stop-submitting"), "").unwrap();
        let settle = Instant::now();
        let journal = dir.join("config/jobs");
        let (jobs, settled) = loop {
            let jobs = read_journal(&journal);
            let all_final = jobs
                .values()
                .all(|j| matches!(j.state.as_str(), "succeeded" | "failed" | "cancelled"));
            let all_running =
                (0..INSTANCES).all(|n| last_status(&seen, &format!("gpu{n}")) == "running");
            if (all_final && all_running) || settle.elapsed() > Duration::from_secs(120) {
                break (jobs, all_final && all_running);
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        for c in crashes.iter_mut().filter(|c| c.answered_at.is_none()) {
            let n: usize = c.instance[3..].parse().unwrap();
            if answers(ports[n]) {
                c.answered_at = Some(now_ms());
            }
        }
        if let Some(kib) = rss_kib(owner.child.id()) {
            owner_rss.push((owner.started.elapsed().as_secs_f64(), kib));
        }

        // Every completed execution of job k wrote one soak{k}_*.png.
        // prefix -> (instance, when the image was written)
        let mut written: HashMap<String, Vec<(String, u64)>> = HashMap::new();
        for inst in all_instances(&dir) {
            let out = dir.join(format!("data/instances/{inst}/output"));
            for e in std::fs::read_dir(out).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let mtime = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .map(|t| t.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64)
                    .unwrap_or(0);
                if let Some(prefix) = name.split('_').next() {
                    written
                        .entry(prefix.to_string())
                        .or_default()
                        .push((inst.clone(), mtime));
                }
            }
        }
        let none = Vec::new();
        let accepted = jobs.len();
        let mut once = 0;
        let mut twice = Vec::new();
        let mut lost = Vec::new();
        // Runs whose instance was killed after it wrote the image but before
        // it reported the prompt done (ComfyUI writes outputs first): nobody
        // can know that run finished, so the job runs again by design.
        let mut rerun_after_crash = 0;
        for (id, job) in &jobs {
            let (state, final_instance) = (&job.state, &job.instance);
            let images = written.get(&job.prefix).unwrap_or(&none);
            let n = images.len();
            let killed_before_report = |inst: &String, at: u64| {
                fault_log.iter().any(|(what, i, from, _)| {
                    *what == "SIGKILL" && i == inst && *from >= at && *from <= at + 1000
                })
            };
            let explained = n >= 2
                && images.iter().filter(|(i, _)| i == final_instance).count() == 1
                && images
                    .iter()
                    .filter(|(i, _)| i != final_instance)
                    .all(|(i, at)| killed_before_report(i, *at));
            if explained {
                rerun_after_crash += 1;
            }
            let n = if explained { 1 } else { n };
            if n >= 2 {
                let mut why = format!("{id} ({n} runs)");
                let s = seen.lock().unwrap();
                for (inst, at) in images {
                    why.push_str(&format!("\n      image on {inst} at {at}"));
                    for (what, i, from, to) in &fault_log {
                        if (i == inst || i == "-") && *to + 5000 >= *at && *from <= at + 5000 {
                            why.push_str(&format!(
                                "; {what} {i} at {from}..{to} ({:+} ms)",
                                *from as i64 - *at as i64
                            ));
                        }
                    }
                }
                for (j, st, inst, at) in s.jobs.iter().filter(|(j, ..)| j == id) {
                    why.push_str(&format!("\n      job {j} {st} {inst} {at}"));
                }
                twice.push(why);
            }
            if state == "succeeded" && n == 1 {
                once += 1;
            } else if state != "succeeded" || n == 0 {
                lost.push(format!("{id} ({state}, {n} runs)"));
            }
        }

        // Crash to the job running elsewhere; crash (and first answer) to running.
        let s = seen.lock().unwrap();
        let mut to_elsewhere = Vec::new();
        let mut to_running = Vec::new();
        let mut answer_to_running = Vec::new();
        for c in &crashes {
            for job in &c.running_jobs {
                if let Some((_, _, _, at)) = s.jobs.iter().find(|(j, st, inst, at)| {
                    j == job
                        && *at >= c.at
                        && inst != &c.instance
                        && matches!(st.as_str(), "running" | "succeeded")
                }) {
                    to_elsewhere.push(at - c.at);
                }
            }
            if let Some((_, _, at)) = s
                .statuses
                .iter()
                .find(|(i, st, at)| i == &c.instance && st == "running" && *at > c.at)
            {
                to_running.push(at - c.at);
                if let Some(a) = c.answered_at {
                    answer_to_running.push(at.saturating_sub(a));
                }
            }
        }
        let pool_count = |action: &str| s.pool.iter().filter(|(a, ..)| a == action).count();
        let pool_line = format!(
            "{} started, {} stopped when idle, {} not started, {} limits lowered",
            pool_count("Start"),
            pool_count("Stop"),
            pool_count("NotStarted"),
            pool_count("LimitLowered")
        );
        let pool_ran = pool_count("Start") > 0;
        let back: Vec<String> = (0..INSTANCES)
            .map(|n| {
                let id = format!("gpu{n}");
                format!("{id} {}", last_status_in(&s, &id))
            })
            .collect();
        drop(s);

        let ms = |v: Option<u64>| v.map_or("-".into(), |v| format!("{v} ms"));
        let med_elsewhere = percentile(&mut to_elsewhere, 0.5);
        let worst_elsewhere = to_elsewhere.iter().max().copied();
        let med_running = percentile(&mut to_running, 0.5);
        let worst_running = to_running.iter().max().copied();
        let med_answer = percentile(&mut answer_to_running, 0.5);
        let worst_answer = answer_to_running.iter().max().copied();
        println!(
            "\n== chaos soak: {:.1} min of faults, seed {seed} ==",
            t0.elapsed().as_secs_f64() / 60.0 - settle.elapsed().as_secs_f64() / 60.0
        );
        println!("jobs accepted (on disk):           {accepted}");
        println!("succeeded exactly once:            {once}");
        println!("lost:                              {}", lost.len());
        println!("run twice:                         {}", twice.len());
        println!(
            "re-run after a crash between its image and its report: {rerun_after_crash} (unknowable: by design)"
        );
        for (kind, n) in &faults {
            println!("fault: {kind:<42} {n}");
        }
        println!(
            "instances at the end:              {} ({})",
            if settled {
                "all running"
            } else {
                "NOT all running"
            },
            back.join(", ")
        );
        println!(
            "crash -> job running elsewhere:    median {}, worst {} ({} jobs)",
            ms(med_elsewhere),
            ms(worst_elsewhere),
            to_elsewhere.len()
        );
        println!(
            "crash -> instance running again:   median {}, worst {} ({} crashes)",
            ms(med_running),
            ms(worst_running),
            to_running.len()
        );
        println!(
            "first answer -> running again:     median {}, worst {}",
            ms(med_answer),
            ms(worst_answer)
        );
        println!("pool (1 to 2 members):            {pool_line}");
        if let (Some(first), Some(last)) = (owner_rss.first(), owner_rss.last()) {
            let max = owner_rss.iter().map(|(_, k)| *k).max().unwrap_or(0);
            println!(
                "owner memory (RSS):                first sample {:.1} MiB, last {:.1} MiB (owner up {:.0} s), max {:.1} MiB",
                first.1 as f64 / 1024.0,
                last.1 as f64 / 1024.0,
                last.0,
                max as f64 / 1024.0
            );
        }
        for l in lost.iter().take(10) {
            println!("  lost: {l}");
        }
        for t in twice.iter().take(10) {
            println!("  twice: {t}");
        }
        // Stop everything: the owner, then what it kept running.
        let _ = owner.child.kill();
        let _ = owner.child.wait();
        let everyone = all_instances(&dir);
        for id in &everyone {
            if let Some(pid) = pid_of(&dir, id) {
                unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
            }
        }
        // The stand-ins are not our children: wait until they are gone.
        let gone = Instant::now();
        while everyone
            .iter()
            .any(|id| pid_of(&dir, id).is_some_and(|p| unsafe { libc::kill(-(p as i32), 0) } == 0))
            && gone.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        let ok = lost.is_empty()
            && twice.is_empty()
            && settled
            && pool_ran
            && accepted > 0
            && med_elsewhere.is_none_or(|m| m < 2000)
            && worst_answer.is_none_or(|w| w < 10_000);
        println!("goals (0 lost, 0 twice, all back, the pool started members, median crash->elsewhere < 2 s, answer->running < 10 s): {}", if ok { "met" } else { "MISSED" });
        if !ok {
            let kept = tmp.keep();
            println!("the soak's folder is kept for a look: {}", kept.display());
        }
        if ok {
            0
        } else {
            1
        }
    }

    fn running_on(seen: &Arc<Mutex<Seen>>, instance: &str) -> Vec<String> {
        let s = seen.lock().unwrap();
        let mut last: HashMap<&str, (&str, &str)> = HashMap::new();
        for (j, st, inst, _) in &s.jobs {
            last.insert(j, (st, inst));
        }
        last.into_iter()
            .filter(|(_, (st, inst))| *st == "running" && *inst == instance)
            .map(|(j, _)| j.to_string())
            .collect()
    }

    fn last_status(seen: &Arc<Mutex<Seen>>, id: &str) -> String {
        last_status_in(&seen.lock().unwrap(), id)
    }

    fn last_status_in(s: &Seen, id: &str) -> String {
        s.statuses
            .iter()
            .rev()
            .find(|(i, _, _)| i == id)
            .map_or("unknown".into(), |(_, st, _)| st.clone())
    }

    /// One job as its journal file says: what was accepted is on disk.
    struct OnDisk {
        state: String,
        instance: String,
        /// Its SaveImage prefix: `soak{k}`.
        prefix: String,
    }

    fn read_journal(dir: &Path) -> BTreeMap<String, OnDisk> {
        let mut out = BTreeMap::new();
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_suffix(".json") else {
                continue;
            };
            let Ok(bytes) = std::fs::read(e.path()) else {
                continue;
            };
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
                continue;
            };
            let text = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_string();
            out.insert(
                id.to_string(),
                OnDisk {
                    state: text(&v["state"]),
                    instance: text(&v["instanceId"]),
                    prefix: text(&v["workflow"]["2"]["inputs"]["filename_prefix"]),
                },
            );
        }
        out
    }
}

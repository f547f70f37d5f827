//! Pools with stand-ins launched as their members: a backlog grows a pool
//! to its maximum, idleness shrinks it to its minimum, a busy member is
//! never stopped, too little memory means no start (with the reason), and a
//! member that dies out of GPU memory lowers the pool's limit on its GPU.
//! GPU memory comes from a replaceable source (NVML is absent here).

use crate::dispatch_fleet;
use crate::support;

use dispatch_fleet::{chain_workflow, fast_options, fast_policy};
use std::sync::Arc;
use std::time::Duration;
use storycore_core::dispatch::JobQueue;
use storycore_core::manager::{InstanceManager, ManagerOptions};
use storycore_core::pool::memory::FixedMemory;
use storycore_core::pool::{PoolOptions, Pools};
use storycore_core::supervisor::{RestartOptions, SupervisorOptions};
use storycore_types::{InstanceStatus, Job, JobState, JobTarget, PoolAction, PoolConfig, PoolView};
use support::standin::{comfyui_folder, standin_binary};
use support::wait_for;

struct Fixture {
    _dir: tempfile::TempDir,
    comfy: tempfile::TempDir,
    config_dir: std::path::PathBuf,
    manager: InstanceManager,
    queue: JobQueue,
    pools: Pools,
    memory: Arc<FixedMemory>,
}

/// `ports`: each test its own range, so members of tests running at once
/// never race for one.
fn open(memory: FixedMemory, ports: std::ops::RangeInclusive<u16>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let config_dir = dir.path().to_path_buf();
    let mut o = ManagerOptions::new(dir.path());
    o.data_dir = dir.path().join("data");
    o.health = fast_policy();
    o.supervisor = SupervisorOptions {
        restart: RestartOptions {
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_millis(200),
            ..RestartOptions::default()
        },
        stop_grace: Duration::from_secs(3),
        ..SupervisorOptions::default()
    };
    let manager = InstanceManager::open(o).unwrap().0;
    let (queue, _) = JobQueue::open(manager.clone(), dir.path(), fast_options()).unwrap();
    let memory = Arc::new(memory);
    let options = PoolOptions {
        tick: Duration::from_millis(100),
        ports,
        ..PoolOptions::default()
    };
    let (pools, notices) = Pools::open(
        dir.path(),
        manager.clone(),
        queue.clone(),
        memory.clone(),
        options,
    )
    .unwrap();
    assert!(notices.is_empty(), "{notices:?}");
    Fixture {
        _dir: dir,
        comfy: comfyui_folder(),
        config_dir,
        manager,
        queue,
        pools,
        memory,
    }
}

impl Fixture {
    fn pool(&self, id: &str, env: &[(&str, &str)]) -> PoolConfig {
        let mut p = PoolConfig::new(
            id,
            format!("Pool {id}"),
            self.comfy.path().display().to_string(),
        );
        p.python_path = Some(standin_binary().display().to_string());
        p.env_vars = Some(
            env.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        p.scale_up_wait_secs = 1.0;
        p.cooldown_secs = 1;
        p.idle_timeout_secs = 2;
        p
    }

    fn view(&self, id: &str) -> PoolView {
        self.pools.get(id).expect("the pool exists")
    }

    async fn wait_size(&self, id: &str, size: u32, within: Duration) -> PoolView {
        wait_for(
            within,
            &format!("pool {id} at {size} running member(s)"),
            || async {
                let v = self.view(id);
                let running = v
                    .members
                    .iter()
                    .filter_map(|m| self.manager.get(m))
                    .filter(|m| m.status == InstanceStatus::Running)
                    .count() as u32;
                (v.size == size && running == size).then_some(v)
            },
        )
        .await
    }

    async fn submit(&self, n: u32, chain: usize) -> Vec<String> {
        let mut ids = Vec::new();
        for k in 0..n {
            let w = chain_workflow(chain, 0x10_0000 + k, &format!("pool_{k}"));
            ids.push(self.queue.submit(w, JobTarget::Auto).await.unwrap().id);
        }
        ids
    }

    async fn wait_final(&self, ids: &[String], within: Duration) -> Vec<Job> {
        wait_for(within, "every job to finish", || async {
            let jobs: Vec<Job> = ids.iter().map(|id| self.queue.get(id).unwrap()).collect();
            jobs.iter().all(|j| j.state.is_final()).then_some(jobs)
        })
        .await
    }

    async fn close(self) {
        self.pools.shutdown().await;
        self.queue.shutdown().await;
        self.manager.shutdown().await;
    }
}

fn decisions(v: &PoolView, action: PoolAction) -> Vec<String> {
    v.decisions
        .iter()
        .filter(|d| d.action == action)
        .map(|d| format!("{} {}", d.member.as_deref().unwrap_or("-"), d.reason))
        .collect()
}

fn print_decisions(v: &PoolView) {
    for d in &v.decisions {
        println!(
            "  {:?} {} (size {}): {}",
            d.action,
            d.member.as_deref().unwrap_or("-"),
            d.size,
            d.reason
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_grows_the_pool_to_its_maximum_and_idleness_shrinks_it_to_its_minimum() {
    let f = open(
        FixedMemory::new(&[(24_000, 24_576), (24_000, 24_576)], 64_000),
        8190..=8219,
    );
    let mut p = f.pool(
        "grow",
        &[
            ("STANDIN_GPUS", "Test GPU 0:24576,Test GPU 1:24576"),
            ("STANDIN_NODE_MS", "150"),
        ],
    );
    p.min_members = 1;
    p.max_members = 3;
    p.memory_need_mib = Some(4096);
    f.pools.create(p).await.unwrap();
    let v = f.wait_size("grow", 1, Duration::from_secs(20)).await;
    assert_eq!(v.members, ["grow-1"]);
    assert_eq!(f.manager.get("grow-1").unwrap().name, "Pool grow #1");

    let jobs = f.submit(18, 4).await;
    // Watch the size while the burst runs: up to the maximum, never above.
    let mut most = 0;
    wait_for(Duration::from_secs(120), "the burst to finish", || {
        let v = f.view("grow");
        most = most.max(v.size);
        assert!(v.size <= 3, "above the maximum: {v:?}");
        let all_final = jobs
            .iter()
            .all(|id| f.queue.get(id).unwrap().state.is_final());
        async move { all_final.then_some(()) }
    })
    .await;
    assert_eq!(most, 3, "the backlog should grow the pool to its maximum");
    let finished = f.wait_final(&jobs, Duration::from_secs(5)).await;
    for j in &finished {
        assert_eq!(j.state, JobState::Succeeded, "{j:?}");
        // A stopped busy member would have sent its job to another: a second attempt.
        assert_eq!(j.attempts, 1, "job {} ran more than once: {j:?}", j.id);
    }
    let devices: std::collections::BTreeSet<String> = f
        .view("grow")
        .members
        .iter()
        .filter_map(|m| f.manager.get(m)?.config.gpu_device)
        .collect();
    assert_eq!(
        devices.into_iter().collect::<Vec<_>>(),
        ["0", "1"],
        "members go where the most memory is left"
    );

    // Idle: back to the minimum.
    f.wait_size("grow", 1, Duration::from_secs(30)).await;
    let v = f.view("grow");
    print_decisions(&v);
    let starts = decisions(&v, PoolAction::Start);
    assert!(
        starts
            .iter()
            .skip(1)
            .any(|s| s.contains("over the trigger")),
        "{starts:?}"
    );
    let stops = decisions(&v, PoolAction::Stop);
    assert_eq!(stops.len(), 2, "{stops:?}");
    assert!(stops.iter().all(|s| s.contains("idle for")), "{stops:?}");
    let sizes: Vec<u32> = v.history.iter().map(|p| p.size).collect();
    println!("size over time: {sizes:?}");
    assert_eq!(sizes.iter().max(), Some(&3));
    assert_eq!(sizes.last(), Some(&1));

    // The pool's settings change; the next burst starts the stopped members
    // again, with the new settings.
    let mut changed = v.config.clone();
    changed
        .env_vars
        .get_or_insert_with(Default::default)
        .insert("POOL_GENERATION".into(), "2".into());
    f.pools.update(changed).await.unwrap();
    let jobs = f.submit(12, 4).await;
    f.wait_size("grow", 3, Duration::from_secs(60)).await;
    let members = f.view("grow").members;
    assert_eq!(
        members,
        ["grow-1", "grow-2", "grow-3"],
        "stopped members are reused"
    );
    // Those that had been stopped run with the new settings (the one that
    // kept running keeps its own until it stops).
    let stopped: Vec<String> = v
        .decisions
        .iter()
        .filter(|d| d.action == PoolAction::Stop)
        .filter_map(|d| d.member.clone())
        .collect();
    assert_eq!(stopped.len(), 2);
    for m in &stopped {
        let env = f
            .manager
            .get(m)
            .unwrap()
            .config
            .env_vars
            .unwrap_or_default();
        assert_eq!(
            env.get("POOL_GENERATION").map(String::as_str),
            Some("2"),
            "{m}: {env:?}"
        );
    }
    f.wait_final(&jobs, Duration::from_secs(120)).await;
    f.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_enough_memory_means_no_start_and_the_reason_is_shown() {
    let f = open(FixedMemory::new(&[(5_000, 8_192)], 64_000), 8220..=8249);
    let mut p = f.pool(
        "mem",
        &[
            ("STANDIN_GPUS", "Test GPU 0:8192"),
            ("STANDIN_NODE_MS", "150"),
        ],
    );
    p.min_members = 0;
    p.max_members = 3;
    p.devices = vec!["0".into()];
    p.memory_need_mib = Some(2048);
    f.pools.create(p).await.unwrap();
    assert_eq!(f.view("mem").size, 0, "min 0: nothing starts without work");

    let jobs = f.submit(16, 4).await;
    // 5000 MiB free: two members of 2048 fit, the third does not.
    let v = wait_for(Duration::from_secs(30), "a refused start", || async {
        let v = f.view("mem");
        (!decisions(&v, PoolAction::NotStarted).is_empty()).then_some(v)
    })
    .await;
    let refused = decisions(&v, PoolAction::NotStarted);
    println!("{refused:?}");
    assert!(
        refused[0].contains("GPU 0 (Test GPU 0) has 904 MiB free of the 2.0 GiB a member needs"),
        "{refused:?}"
    );
    assert!(v.size <= 2, "{v:?}");
    assert!(
        v.why.contains("not started"),
        "the card says why: {}",
        v.why
    );

    // Memory is freed (another program ended): the next decision starts one.
    f.memory.set(&[(20_000, 24_576)], 64_000);
    let v = wait_for(Duration::from_secs(30), "a third member", || async {
        let v = f.view("mem");
        (v.size == 3).then_some(v)
    })
    .await;
    print_decisions(&v);
    let finished = f.wait_final(&jobs, Duration::from_secs(120)).await;
    assert!(finished.iter().all(|j| j.state == JobState::Succeeded));
    f.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_out_of_gpu_memory_lowers_the_maximum_on_its_gpu() {
    let f = open(FixedMemory::new(&[(40_000, 49_152)], 64_000), 8250..=8279);
    let oom = f.config_dir.join("oom-now");
    let oom_env = oom.display().to_string();
    let mut p = f.pool(
        "oom",
        &[
            ("STANDIN_GPUS", "Test GPU 0:49152"),
            ("STANDIN_NODE_MS", "150"),
            ("STANDIN_OOM_FILE", &oom_env),
        ],
    );
    p.min_members = 0;
    p.max_members = 3;
    p.devices = vec!["0".into()];
    p.memory_need_mib = Some(4096);
    f.pools.create(p).await.unwrap();
    let jobs = f.submit(40, 4).await;
    f.wait_size("oom", 3, Duration::from_secs(60)).await;

    // The next prompt to start on any member dies out of memory.
    std::fs::write(&oom, b"").unwrap();
    let v = wait_for(
        Duration::from_secs(30),
        "the limit to be lowered",
        || async {
            let v = f.view("oom");
            (!decisions(&v, PoolAction::LimitLowered).is_empty()).then_some(v)
        },
    )
    .await;
    let lowered = decisions(&v, PoolAction::LimitLowered);
    println!("{lowered:?}");
    assert!(
        lowered[0].contains(
            "ran out of GPU memory on GPU 0 with 3 member(s) there: at most 2 there from now on"
        ),
        "{lowered:?}"
    );
    assert_eq!(v.config.device_limits.get("0"), Some(&2));
    let saved = std::fs::read_to_string(f.config_dir.join("pools.json")).unwrap();
    assert!(saved.contains("\"deviceLimits\""), "{saved}");

    // With work still waiting, the pool stays at 2 and says why.
    let v = wait_for(
        Duration::from_secs(30),
        "the limit to hold a start",
        || async {
            let v = f.view("oom");
            decisions(&v, PoolAction::NotStarted)
                .iter()
                .any(|r| r.contains("GPU 0 (Test GPU 0) holds its limit of 2 member(s)"))
                .then_some(v)
        },
    )
    .await;
    assert!(v.size <= 2, "{v:?}");
    let finished = f.wait_final(&jobs, Duration::from_secs(120)).await;
    let lost: Vec<&Job> = finished
        .iter()
        .filter(|j| j.state != JobState::Succeeded)
        .collect();
    assert!(lost.is_empty(), "jobs lost to the crash: {lost:?}");
    assert!(f.view("oom").size <= 2);
    print_decisions(&f.view("oom"));
    f.close().await;
}

#[tokio::test]
async fn bad_pools_are_refused_field_by_field_and_a_corrupt_file_is_set_aside() {
    let f = open(FixedMemory::new(&[], 64_000), 8280..=8289);
    let mut p = f.pool("Bad Id", &[]);
    p.min_members = 5;
    p.max_members = 2;
    p.comfyui_path = "/nowhere/comfyui".into();
    let e = f.pools.create(p).await.unwrap_err();
    let api: storycore_types::ApiError = e.into();
    let fields: Vec<&str> = api.fields.iter().map(|f| f.field.as_str()).collect();
    println!("{}", api.message);
    for want in ["id", "minMembers", "comfyuiPath"] {
        assert!(fields.contains(&want), "{want} not in {fields:?}");
    }
    assert!(!f.config_dir.join("pools.json").exists(), "nothing saved");

    // A good pool, then the file is broken by hand: the app reads the backup.
    let mut good = f.pool("good", &[]);
    good.max_members = 2;
    f.pools.create(good.clone()).await.unwrap();
    let mut changed = good.clone();
    changed.max_members = 3;
    f.pools.update(changed).await.unwrap();
    let dir = f.config_dir.clone();
    let (manager, queue) = (f.manager.clone(), f.queue.clone());
    f.pools.shutdown().await;
    std::fs::write(
        dir.join("pools.json"),
        b"{\"version\": \"1.0\", \"pools\": [",
    )
    .unwrap();
    let (again, notices) = Pools::open(
        &dir,
        manager,
        queue,
        f.memory.clone(),
        PoolOptions::default(),
    )
    .unwrap();
    println!("{notices:?}");
    assert!(
        notices[0].contains("pools.json could not be read"),
        "{notices:?}"
    );
    assert!(
        notices[0].contains("read from pools.json.bak"),
        "{notices:?}"
    );
    assert_eq!(again.list().len(), 1);
    assert_eq!(again.list()[0].config.max_members, 2, "the backup's copy");
    again.shutdown().await;
    f.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_members_need_is_measured_over_its_first_run_on_the_cpu() {
    let f = open(FixedMemory::new(&[], 64_000), 8290..=8299);
    let mut p = f.pool("cpu", &[("STANDIN_NODE_MS", "200")]);
    p.min_members = 1;
    p.max_members = 2;
    p.memory_need_mib = None;
    f.pools.create(p).await.unwrap();
    f.wait_size("cpu", 1, Duration::from_secs(20)).await;
    assert_eq!(
        f.manager.get("cpu-1").unwrap().config.gpu_device.as_deref(),
        Some("cpu"),
        "no GPU listed: the pool runs on the CPU"
    );
    let jobs = f.submit(1, 4).await;
    f.wait_final(&jobs, Duration::from_secs(30)).await;
    let v = wait_for(Duration::from_secs(10), "a measure", || async {
        let v = f.view("cpu");
        v.config.measured_need_mib.map(|_| v)
    })
    .await;
    let measured = decisions(&v, PoolAction::Measured);
    println!("{measured:?}");
    assert!(measured[0].contains("a member needs"), "{measured:?}");
    assert!(measured[0].contains("on the CPU"), "{measured:?}");
    let saved = std::fs::read_to_string(f.config_dir.join("pools.json")).unwrap();
    assert!(saved.contains("\"measuredNeedMib\""), "{saved}");
    f.close().await;
}

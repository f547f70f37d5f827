//! Property tests of every entry point for outside input: instance configs,
//! imports, instance files on disk (truncated, random bytes, NUL bytes, wrong
//! shapes, folders, FIFOs, links), workflows and workflow files. For each
//! case: no panic, no hang (each case must end within a few seconds), a
//! refusal changes nothing on disk or in memory, and whatever is accepted
//! survives a restart unchanged. About 2,000 cases, seeded by proptest (a
//! failure prints the case and is kept in input_properties.regressions beside
//! this file, so it is tried first from then on).

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use storycore_core::dispatch::templates::read_workflow_file;
use storycore_core::dispatch::{DispatchOptions, JobQueue};
use storycore_core::manager::{InstanceManager, ManagerOptions};
use storycore_core::store::ClashPolicy;
use storycore_types::{Instance, InstanceConfig, JobTarget};

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: n,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    }
}

/// Each case must end within this: a hang fails the test instead of
/// stopping the test command.
const CASE_LIMIT: Duration = Duration::from_secs(10);

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Runtime::new().unwrap())
}

/// Runs `f` on the runtime, failing the case if it takes too long.
fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    runtime().block_on(async {
        tokio::time::timeout(CASE_LIMIT, f)
            .await
            .expect("a case took longer than its limit: something hangs")
    })
}

/// Runs a blocking `f` on a thread, failing if it does not end in time (a
/// read of a FIFO would block for ever).
fn bounded_blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(CASE_LIMIT)
        .expect("a case took longer than its limit: something hangs")
}

fn open(dir: &Path) -> InstanceManager {
    InstanceManager::open(ManagerOptions::new(dir)).unwrap().0
}

fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn configs_of(list: &[Instance]) -> Vec<InstanceConfig> {
    list.iter().map(|i| i.config.clone()).collect()
}

// ----- strategies --------------------------------------------------------------

/// Texts users paste: plain words, spaces, unicode, invisible marks, controls,
/// path and URL pieces, now and then something long.
fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[a-zA-Z0-9 _.-]{0,12}",
        Just("\u{200b}".to_string()),
        Just("\u{feff}".to_string()),
        Just("\u{1b}[31m".to_string()),
        Just("\u{7}".to_string()),
        Just("\0".to_string()),
        Just("../".to_string()),
        Just("://".to_string()),
        Just("é€😀".to_string()),
        Just("\n".to_string()),
        (1usize..3000).prop_map(|n| "x".repeat(n)),
    ];
    prop::collection::vec(piece, 0..4).prop_map(|v| v.concat())
}

fn host() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("localhost".to_string())),
        Just(Some("127.1".to_string())),
        Just(Some("0x7f.0.0.1".to_string())),
        Just(Some("2130706433".to_string())),
        Just(Some("999.999.999.999".to_string())),
        Just(Some("1.2.3.4.5".to_string())),
        Just(Some("example.123".to_string())),
        Just(Some("::1".to_string())),
        Just(Some("[::1]".to_string())),
        Just(Some("box.lan".to_string())),
        text().prop_map(Some),
    ]
}

fn env_vars() -> impl Strategy<Value = Option<BTreeMap<String, String>>> {
    let name = prop_oneof![
        "[A-Z_][A-Z0-9_]{0,10}",
        Just("LD_PRELOAD".to_string()),
        Just("LD_AUDIT".to_string()),
        Just("PYTHONPATH".to_string()),
        Just("HF_HOME".to_string()),
        text(),
    ];
    prop::option::of(prop::collection::btree_map(name, text(), 0..4))
}

fn config() -> impl Strategy<Value = InstanceConfig> {
    (
        prop_oneof![Just(String::new()), "[a-z0-9_-]{1,10}", text()],
        text(),
        prop_oneof![0u32..=70000, Just(8188u32), Just(0u32), Just(65536u32)],
        host(),
        prop::option::of(prop_oneof![
            Just("auto".to_string()),
            Just("cpu".to_string()),
            "[0-9]{1,2}",
            text()
        ]),
        env_vars(),
        prop::option::of(text()),
        prop::option::of(prop_oneof![Just(0u32), 1u32..100]),
        prop::option::of(prop_oneof![0u64..100_000_000]),
        prop::option::of(any::<bool>()),
    )
        .prop_map(
            |(id, name, port, host, gpu, env, description, max, timeout, allow)| {
                let mut c = InstanceConfig::new(id, name, port);
                c.host = host;
                c.gpu_device = gpu;
                c.env_vars = env;
                c.description = description;
                c.max_concurrent_workflows = max;
                c.timeout_ms = timeout;
                c.allow_risky_env_vars = allow;
                c
            },
        )
}

/// Random JSON of bounded size, now and then deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(text(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A value nested `depth` levels.
fn nested(depth: usize) -> Value {
    let mut v = json!(1);
    for _ in 0..depth {
        v = json!([v]);
    }
    v
}

/// API-format-ish workflows: mostly well formed, with odd inputs, wrong
/// shapes and depths around the limit.
fn workflow() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => (prop::collection::btree_map("[0-9]{1,3}", ("[A-Za-z]{1,12}", prop::collection::btree_map(text(), json_value(), 0..4)), 1..5))
            .prop_map(|nodes| {
                Value::Object(nodes.into_iter().map(|(id, (class, inputs))| {
                    (id, json!({"class_type": class, "inputs": Value::Object(inputs.into_iter().collect())}))
                }).collect())
            }),
        1 => (55usize..140).prop_map(|d| json!({"1": {"class_type": "X", "inputs": {"v": nested(d)}}})),
        1 => json_value(),
    ]
}

/// Bytes for a file: random, a truncated valid file, NUL bytes, wrong shapes.
fn file_bytes() -> impl Strategy<Value = Vec<u8>> {
    let valid = json!({"version": "1.0", "instances": [
        {"id": "a", "name": "A", "port": 8188},
        {"id": "b", "name": "B", "port": 8189, "host": "box.lan"}
    ]})
    .to_string();
    let v2 = valid.clone();
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        (0..valid.len()).prop_map(move |n| v2.as_bytes()[..n].to_vec()),
        Just(vec![0u8; 64]),
        json_value().prop_map(|v| v.to_string().into_bytes()),
        json_value().prop_map(|v| json!({"version": "1.0", "instances": [v]})
            .to_string()
            .into_bytes()),
        config().prop_map(|c| json!({"version": "1.0", "instances": [c]})
            .to_string()
            .into_bytes()),
        Just(valid.into_bytes()),
    ]
}

/// What sits where a file should be.
#[derive(Debug, Clone)]
enum OnDisk {
    Bytes(Vec<u8>),
    Folder,
    Fifo,
    LinkToDevZero,
    DanglingLink,
    LinkLoop,
}

fn on_disk() -> impl Strategy<Value = OnDisk> {
    prop_oneof![
        6 => file_bytes().prop_map(OnDisk::Bytes),
        1 => Just(OnDisk::Folder),
        1 => Just(OnDisk::Fifo),
        1 => Just(OnDisk::LinkToDevZero),
        1 => Just(OnDisk::DanglingLink),
        1 => Just(OnDisk::LinkLoop),
    ]
}

fn put(path: &Path, what: &OnDisk) {
    match what {
        OnDisk::Bytes(b) => std::fs::write(path, b).unwrap(),
        OnDisk::Folder => std::fs::create_dir(path).unwrap(),
        OnDisk::Fifo => {
            let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        }
        OnDisk::LinkToDevZero => std::os::unix::fs::symlink("/dev/zero", path).unwrap(),
        OnDisk::DanglingLink => std::os::unix::fs::symlink("/nonexistent/x", path).unwrap(),
        OnDisk::LinkLoop => std::os::unix::fs::symlink(path, path).unwrap(),
    }
}

// ----- properties ---------------------------------------------------------------

proptest! {
    #![proptest_config(cases(600))]

    /// create: a refusal changes nothing; an accepted config comes back
    /// unchanged after a restart.
    #[test]
    fn configs(first in config(), second in config()) {
        let dir = tempfile::tempdir().unwrap();
        bounded(async {
            let m = open(dir.path());
            let _ = m.create(first).await;
            let before_list = configs_of(&m.list());
            let before_disk = snapshot(dir.path());
            match m.create(second).await {
                Err(_) => {
                    prop_assert_eq!(configs_of(&m.list()), before_list);
                    prop_assert_eq!(snapshot(dir.path()), before_disk);
                }
                Ok(created) => {
                    let again = open(dir.path());
                    prop_assert_eq!(again.get(&created.id).map(|i| i.config), Some(created.config));
                    prop_assert_eq!(configs_of(&again.list()), configs_of(&m.list()));
                }
            }
            Ok(())
        })?;
    }

    /// update: the same, for a partial change of an existing instance.
    #[test]
    fn updates(change in config()) {
        let dir = tempfile::tempdir().unwrap();
        bounded(async {
            let m = open(dir.path());
            m.create(InstanceConfig::new("box", "Box", 8188)).await.unwrap();
            let before_list = configs_of(&m.list());
            let before_disk = snapshot(dir.path());
            let patch = storycore_types::InstanceConfigPatch {
                name: Some(change.name),
                port: Some(change.port),
                host: Some(change.host),
                gpu_device: Some(change.gpu_device),
                env_vars: Some(change.env_vars),
                description: Some(change.description),
                max_concurrent_workflows: Some(change.max_concurrent_workflows),
                timeout_ms: Some(change.timeout_ms),
                allow_risky_env_vars: Some(change.allow_risky_env_vars),
                ..Default::default()
            };
            match m.update("box", patch).await {
                Err(_) => {
                    prop_assert_eq!(configs_of(&m.list()), before_list);
                    prop_assert_eq!(snapshot(dir.path()), before_disk);
                }
                Ok(updated) => {
                    let again = open(dir.path());
                    prop_assert_eq!(again.get("box").map(|i| i.config), Some(updated.config));
                }
            }
            Ok(())
        })?;
    }
}

proptest! {
    #![proptest_config(cases(300))]

    /// import: all or nothing; what is accepted survives a restart.
    #[test]
    fn imports(data in file_bytes(), existing in config(), policy in prop_oneof![
        Just(ClashPolicy::Fail), Just(ClashPolicy::Skip), Just(ClashPolicy::Rename), Just(ClashPolicy::Replace)
    ]) {
        let dir = tempfile::tempdir().unwrap();
        let text = String::from_utf8_lossy(&data).into_owned();
        bounded(async {
            let m = open(dir.path());
            let _ = m.create(existing).await;
            let before_list = configs_of(&m.list());
            let before_disk = snapshot(dir.path());
            match m.import(&text, policy).await {
                Err(_) => {
                    prop_assert_eq!(configs_of(&m.list()), before_list);
                    prop_assert_eq!(snapshot(dir.path()), before_disk);
                }
                Ok(_) => {
                    let again = open(dir.path());
                    prop_assert_eq!(configs_of(&again.list()), configs_of(&m.list()));
                }
            }
            Ok(())
        })?;
    }

    /// The instances file and its backup as anything at all: opening never
    /// hangs or fails for the file's sake, and what it loads is what the next
    /// start loads too.
    #[test]
    fn instance_files_on_disk(main in on_disk(), backup in prop::option::of(on_disk())) {
        let dir = tempfile::tempdir().unwrap();
        put(&dir.path().join("comfyui_instances.json"), &main);
        if let Some(b) = &backup {
            put(&dir.path().join("comfyui_instances.json.bak"), b);
        }
        let path = dir.path().to_path_buf();
        let first = bounded_blocking(move || {
            InstanceManager::open(ManagerOptions::new(&path)).map(|(m, r)| (configs_of(&m.list()), r.notices))
        });
        let (loaded, _notices) = first.expect("opening failed because of a file's content");
        let path = dir.path().to_path_buf();
        let again = bounded_blocking(move || configs_of(&open(&path).list()));
        prop_assert_eq!(again, loaded);
    }
}

proptest! {
    #![proptest_config(cases(500))]

    /// submit: a refused workflow writes nothing; an accepted one is read
    /// back unchanged after a restart.
    #[test]
    fn workflows(w in workflow()) {
        let dir = tempfile::tempdir().unwrap();
        bounded(async {
            let m = open(dir.path());
            let (q, _) = JobQueue::open(m, dir.path(), DispatchOptions::default()).unwrap();
            let jobs = dir.path().join("jobs");
            let result = q.submit(w.clone(), JobTarget::Auto).await;
            q.shutdown().await;
            match result {
                Err(_) => prop_assert_eq!(std::fs::read_dir(&jobs).unwrap().count(), 0),
                Ok(job) => {
                    let (q, recovered) =
                        JobQueue::open(open(dir.path()), dir.path(), DispatchOptions::default()).unwrap();
                    prop_assert!(recovered.notices.is_empty(), "{:?}", recovered.notices);
                    prop_assert_eq!(q.get(&job.id).map(|j| j.workflow), Some(w));
                    q.shutdown().await;
                }
            }
            Ok(())
        })?;
    }

    /// A workflow file as anything at all: read or refused, never a hang;
    /// what is read is a valid workflow.
    #[test]
    fn workflow_files(what in prop_oneof![
        3 => workflow().prop_map(|w| OnDisk::Bytes(w.to_string().into_bytes())),
        2 => on_disk(),
    ]) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("workflow.json");
        put(&path, &what);
        let read = bounded_blocking(move || read_workflow_file(&path).map(|f| f.workflow));
        if let Ok(w) = read {
            prop_assert!(storycore_core::dispatch::workflow::check_workflow(&w).is_ok());
        }
    }
}

//! Bad input is refused early, clearly and briefly, and nothing accepted
//! breaks later: one test per finding of the input review (duplicate ids,
//! files not validated on load, workflows too deep for the journal, FIFOs
//! and /dev/zero, hosts and variables, a broken backup, messages that repeat
//! the input).

use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};
use storycore_core::dispatch::templates::{read_workflow_file, TemplateStore};
use storycore_core::dispatch::workflow::{check_workflow, parse_workflow, MAX_WORKFLOW_DEPTH};
use storycore_core::dispatch::{DispatchOptions, JobQueue};
use storycore_core::manager::{InstanceManager, ManagerOptions};
use storycore_core::model::validate_config;
use storycore_core::store::{ClashPolicy, InstanceStore};
use storycore_types::{
    ErrorCode, InstanceConfig, InstancesFile, JobTarget, ParameterMark, TemplateDraft,
};

fn open(dir: &Path) -> InstanceManager {
    InstanceManager::open(ManagerOptions::new(dir)).unwrap().0
}

fn file_of(instances: Value) -> String {
    json!({"version": "1.0", "instances": instances}).to_string()
}

/// A workflow whose one input nests `depth` levels in all.
fn nested_workflow(depth: usize) -> Value {
    let mut v = json!(1);
    for _ in 0..depth.saturating_sub(3) {
        v = json!([v]);
    }
    json!({"1": {"class_type": "PrimitiveInt", "inputs": {"value": v}}})
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

#[tokio::test]
async fn an_existing_id_is_refused_at_create_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let m = open(dir.path());
    let a = m
        .create(InstanceConfig::new("box", "Box", 8188))
        .await
        .unwrap();
    let before = std::fs::read(dir.path().join("comfyui_instances.json")).unwrap();
    // The same id, and an exact copy.
    for c in [InstanceConfig::new("box", "Other", 8190), a.config.clone()] {
        let e = m.create(c).await.unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidInput);
        let fields = match &e {
            storycore_core::manager::ManagerError::Invalid { fields } => fields.clone(),
            other => panic!("{other}"),
        };
        assert!(
            fields
                .iter()
                .any(|f| f.field == "id" && f.message.contains("already used")),
            "{fields:?}"
        );
    }
    assert_eq!(m.list().len(), 1);
    assert_eq!(
        std::fs::read(dir.path().join("comfyui_instances.json")).unwrap(),
        before,
        "a refusal changes nothing on disk"
    );
    // The name and port are compared with the others too.
    let e = validate_config(
        &InstanceConfig::new("box2", "box", 8188),
        std::slice::from_ref(&a.config),
    )
    .unwrap_err();
    let fields: Vec<&str> = e.iter().map(|f| f.field.as_str()).collect();
    assert_eq!(fields, ["name", "port"]);
}

#[test]
fn a_file_with_invalid_instances_loads_the_valid_ones_and_keeps_the_rest_aside() {
    let dir = tempfile::tempdir().unwrap();
    let text = file_of(json!([
        {"id": "good", "name": "Good", "port": 8188},
        {"id": "zero", "name": "Zero", "port": 0},
        {"id": "../../x", "name": "Escape", "port": 8190},
        {"id": "good", "name": "Twin", "port": 8191}
    ]));
    std::fs::write(dir.path().join("comfyui_instances.json"), &text).unwrap();
    let loaded = InstanceStore::new(dir.path()).load().unwrap();
    let ids: Vec<&str> = loaded
        .file
        .instances
        .iter()
        .map(|c| c.id.as_str())
        .collect();
    assert_eq!(ids, ["good"]);
    let notice = loaded.notices.join("\n");
    assert!(
        notice.contains("3 instance(s)")
            && notice.contains("'zero'")
            && notice.contains("'../../x'"),
        "{notice}"
    );
    // Nothing is lost: the file as it was is kept beside it.
    let kept: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("comfyui_instances.json.refused-"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join(&kept[0])).unwrap(),
        text
    );
}

#[tokio::test]
async fn a_workflow_too_deep_for_the_journal_is_refused_where_it_enters() {
    let dir = tempfile::tempdir().unwrap();
    let m = open(dir.path());
    let (q, _) = JobQueue::open(m, dir.path(), DispatchOptions::default()).unwrap();
    // 127 levels: accepted before, then lost at the next start.
    let deep = nested_workflow(127);
    let e = q.submit(deep.clone(), JobTarget::Auto).await.unwrap_err();
    assert!(e.to_string().contains("deeper than 64 levels"), "{e}");
    let file = dir.path().join("deep.json");
    std::fs::write(&file, deep.to_string()).unwrap();
    let e = read_workflow_file(&file).unwrap_err();
    assert!(e.to_string().contains("deeper than 64 levels"), "{e}");
    let e = TemplateStore::new(dir.path())
        .create(&TemplateDraft {
            name: "Deep".into(),
            description: None,
            workflow: deep,
            parameters: vec![],
        })
        .unwrap_err();
    assert!(e.to_string().contains("deeper"), "{e}");
    // The deepest accepted survives a restart.
    let ok = nested_workflow(MAX_WORKFLOW_DEPTH);
    check_workflow(&ok).unwrap();
    let job = q.submit(ok.clone(), JobTarget::Auto).await.unwrap();
    q.shutdown().await;
    let m = open(dir.path());
    let (q, recovered) = JobQueue::open(m, dir.path(), DispatchOptions::default()).unwrap();
    assert!(recovered.notices.is_empty(), "{:?}", recovered.notices);
    assert_eq!(q.get(&job.id).unwrap().workflow, ok);
    q.shutdown().await;
}

#[test]
fn fifos_folders_and_endless_devices_never_hang_a_read() {
    let dir = tempfile::tempdir().unwrap();
    // A FIFO in place of the instances file, a good backup beside it.
    let good = file_of(json!([{"id": "kept", "name": "Kept", "port": 8188}]));
    std::fs::write(dir.path().join("comfyui_instances.json.bak"), &good).unwrap();
    mkfifo(&dir.path().join("comfyui_instances.json"));
    let t = Instant::now();
    let loaded = InstanceStore::new(dir.path()).load().unwrap();
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(loaded.file.instances[0].id, "kept");
    assert!(
        loaded.notices[0].contains("named pipe"),
        "{:?}",
        loaded.notices
    );

    // A folder in place of the file, a good backup: recovered as well.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("comfyui_instances.json.bak"), &good).unwrap();
    std::fs::create_dir(dir.path().join("comfyui_instances.json")).unwrap();
    let loaded = InstanceStore::new(dir.path()).load().unwrap();
    assert_eq!(loaded.file.instances[0].id, "kept");
    assert!(
        loaded.notices[0].contains("a folder"),
        "{:?}",
        loaded.notices
    );

    // Workflow files: a FIFO, /dev/zero and a link to it, a folder.
    let fifo = dir.path().join("wf.json");
    mkfifo(&fifo);
    let zero_link = dir.path().join("zero.json");
    std::os::unix::fs::symlink("/dev/zero", &zero_link).unwrap();
    for (path, says) in [
        (fifo.as_path(), "named pipe"),
        (Path::new("/dev/zero"), "a device"),
        (zero_link.as_path(), "a device"),
        (dir.path(), "a folder"),
    ] {
        let t = Instant::now();
        let e = read_workflow_file(path).unwrap_err().to_string();
        assert!(t.elapsed() < Duration::from_secs(5), "{path:?} hung");
        assert!(e.contains(says) && e.contains("Save (API)"), "{e}");
    }
}

#[test]
fn hosts_variables_and_names_that_break_later_are_refused_now() {
    let base = || InstanceConfig::new("a", "A", 8188);
    let refused = |c: &InstanceConfig, others: &[InstanceConfig], field: &str| {
        let e = validate_config(c, others).expect_err(field);
        assert!(e.iter().any(|f| f.field.starts_with(field)), "{e:?}");
        e
    };
    for host in ["999.999.999.999", "1.2.3.4.5", "example.123", "0x1g.1"] {
        let mut c = base();
        c.host = Some(host.into());
        refused(&c, &[], "host");
    }
    // Every spelling of 127.0.0.1 clashes with localhost on one port.
    let local = InstanceConfig::new("b", "B", 8188);
    for host in ["127.1", "0x7f.1", "2130706433", "0177.0.0.1", "127.0.0.1"] {
        let mut c = base();
        c.host = Some(host.into());
        refused(&c, std::slice::from_ref(&local), "port");
    }
    // The loader's whole family, and code paths unless allowed.
    for var in [
        "LD_PRELOAD",
        "LD_AUDIT",
        "LD_DEBUG_OUTPUT",
        "DYLD_INSERT_LIBRARIES",
    ] {
        let mut c = base();
        c.env_vars = Some([(var.to_string(), "x".to_string())].into());
        refused(&c, &[], "envVars");
    }
    for var in [
        "PYTHONPATH",
        "PYTHONHOME",
        "PYTHONSTARTUP",
        "LD_LIBRARY_PATH",
    ] {
        let mut c = base();
        c.env_vars = Some([(var.to_string(), "/opt/x".to_string())].into());
        let e = refused(&c, &[], "envVars");
        assert!(e[0].message.contains("allowRiskyEnvVars"), "{e:?}");
        c.allow_risky_env_vars = Some(true);
        assert_eq!(validate_config(&c, &[]), Ok(()), "{var} allowed explicitly");
    }
    // A value the system could not pass to a process.
    let mut c = base();
    c.env_vars = Some([("BIG".to_string(), "x".repeat(1 << 20))].into());
    let e = refused(&c, &[], "envVars");
    assert!(
        e.iter().any(|f| f.message.contains("at most 32 KiB")),
        "{e:?}"
    );
    // Names nobody can read, or that drive a terminal.
    for name in ["\u{200b}", "\u{feff}\u{200b}", "a\u{1b}[31mb", "bell\u{7}"] {
        let mut c = base();
        c.name = name.into();
        refused(&c, &[], "name");
    }
}

#[test]
fn template_names_and_inputs_are_taken_literally_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let store = TemplateStore::new(dir.path());
    let workflow = json!({"1": {"class_type": "X", "inputs": {
        "a/b": 1,
        "nested": {"a": {"b": 2}},
    }}});
    let draft = |name: &str, input: &str| TemplateDraft {
        name: name.into(),
        description: None,
        workflow: workflow.clone(),
        parameters: vec![ParameterMark {
            name: "p".into(),
            node_id: "1".into(),
            input: input.into(),
            kind: None,
            description: None,
        }],
    };
    for bad in ["bell\u{7}", "esc\u{1b}[2J", "\u{200b}"] {
        let e = store.create(&draft(bad, "a/b")).unwrap_err().to_string();
        assert!(
            e.contains("control character") || e.contains("invisible"),
            "{e}"
        );
    }
    // An input really named "a/b" can be marked, and is the one filled in.
    let t = store.create(&draft("Slash", "a/b")).unwrap();
    assert_eq!(t.parameters[0].default, json!(1));
    let values = [("p".to_string(), json!(5))].into_iter().collect();
    let run = storycore_core::dispatch::templates::render(&t, &values).unwrap();
    assert_eq!(run["1"]["inputs"]["a/b"], 5);
    // "nested/a/b" is no input of the node: refused, not saved wrong.
    let e = store.create(&draft("Nested", "nested/a/b")).unwrap_err();
    assert!(e.to_string().contains("no input"), "{e}");
    assert_eq!(store.list().len(), 2, "the smoke test and Slash");
}

#[test]
fn a_broken_backup_is_kept_and_the_notice_says_what_really_happened() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("comfyui_instances.json.bak"), "{ broken").unwrap();
    let loaded = InstanceStore::new(dir.path()).load().unwrap();
    assert!(loaded.file.instances.is_empty());
    let notice = &loaded.notices[0];
    assert!(notice.contains("was missing"), "{notice}");
    assert!(
        !notice.contains("repair a kept file"),
        "nothing was kept of the main file: {notice}"
    );
    assert!(
        notice.contains("comfyui_instances.json.bak.corrupt-"),
        "{notice}"
    );
    // The broken backup is still there, under its new name, after a save.
    let mut f = loaded.file;
    InstanceStore::new(dir.path()).save(&mut f).unwrap();
    let kept = std::fs::read_dir(dir.path()).unwrap().flatten().any(|e| {
        e.file_name()
            .to_string_lossy()
            .starts_with("comfyui_instances.json.bak.corrupt-")
    });
    assert!(kept);
}

#[tokio::test]
async fn messages_quote_at_most_80_characters_and_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let m = open(dir.path());
    // A 50 MB name in an import.
    let huge = "n".repeat(50 << 20);
    let data = file_of(json!([{"id": "x", "name": huge, "port": 8188}]));
    let e = m.import(&data, ClashPolicy::Fail).await.unwrap_err();
    let api = storycore_types::ApiError::from(e);
    let text = format!("{} {:?}", api.message, api.fields);
    assert!(text.len() < 2000, "{} bytes", text.len());
    // Long values in the fields.
    let mut c = InstanceConfig::new("y", "Y", 8189);
    c.gpu_device = Some("g".repeat(10_000));
    c.comfyui_path = Some(format!("/{}", "p".repeat(5_000)));
    let e = validate_config(&c, &[]).unwrap_err();
    for f in &e {
        assert!(
            f.message.len() < 400,
            "{}: {} bytes",
            f.field,
            f.message.len()
        );
    }
    // A folder where a workflow file is expected says what to do.
    let msg = read_workflow_file(dir.path()).unwrap_err().to_string();
    assert!(
        msg.contains("is a folder") && msg.contains("choose the .json file"),
        "{msg}"
    );
    assert!(!msg.contains("os error"), "{msg}");
    // The size refusal states the limit.
    let big = format!("{{\"1\": \"{}\"}}", "x".repeat(17 << 20));
    let msg = parse_workflow(&big).unwrap_err().to_string();
    assert!(msg.contains("at most 16 MiB"), "{msg}");
    let file = dir.path().join("big.json");
    std::fs::write(&file, &big).unwrap();
    let msg = read_workflow_file(&file).unwrap_err().to_string();
    assert!(msg.contains("larger than 16 MiB"), "{msg}");
}

#[test]
fn the_instances_file_kept_aside_on_load_can_be_imported_once_fixed() {
    // The promise of the notice: the set-aside file is an ordinary
    // instances file.
    let dir = tempfile::tempdir().unwrap();
    let text = file_of(json!([
        {"id": "good", "name": "Good", "port": 8188},
        {"id": "zero", "name": "Zero", "port": 0}
    ]));
    std::fs::write(dir.path().join("comfyui_instances.json"), &text).unwrap();
    let loaded = InstanceStore::new(dir.path()).load().unwrap();
    let fixed = text.replace("\"port\":0", "\"port\":8190");
    let outcome = storycore_core::store::import(&fixed, &loaded.file, ClashPolicy::Skip).unwrap();
    let ids: Vec<&str> = outcome
        .file
        .instances
        .iter()
        .map(|c| c.id.as_str())
        .collect();
    assert_eq!(ids, ["good", "zero"]);
    let _: InstancesFile = outcome.file;
}

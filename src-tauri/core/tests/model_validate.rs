//! Validation: a table of bad configs and the field errors each must produce,
//! all problems at once, whole files (paths on disk: model_paths.rs).

use std::collections::BTreeMap;
use std::fs;
use storycore_core::model::{same_machine, validate_config, validate_file, validate_id, Checks};
use storycore_types::{InstanceConfig, InstancesFile};

fn base() -> InstanceConfig {
    InstanceConfig::new("instance_002", "Second GPU", 8189)
}

fn others() -> Vec<InstanceConfig> {
    let mut remote = InstanceConfig::new("remote", "Cloud Box", 8190);
    remote.host = Some("gpu.example.com".into());
    vec![
        InstanceConfig::new("instance_001", "Primary GPU", 8188),
        remote,
    ]
}

/// The fields `c` is faulted on, in order.
fn fields(c: &InstanceConfig) -> Vec<String> {
    match validate_config(c, &others()) {
        Ok(()) => vec![],
        Err(errors) => errors.into_iter().map(|e| e.field).collect(),
    }
}

fn env(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn args(a: &[&str]) -> Option<Vec<String>> {
    Some(a.iter().map(|s| s.to_string()).collect())
}

#[test]
fn each_bad_config_is_faulted_on_the_right_field() {
    type Edit = fn(&mut InstanceConfig);
    let table: &[(&str, Edit, &[&str])] = &[
        ("empty id", |c| c.id = "".into(), &["id"]),
        ("id with a slash", |c| c.id = "../x".into(), &["id"]),
        ("id too long", |c| c.id = "a".repeat(65), &["id"]),
        ("blank name", |c| c.name = "   ".into(), &["name"]),
        ("name too long", |c| c.name = "n".repeat(101), &["name"]),
        (
            "name taken, other case",
            |c| c.name = " primary gpu ".into(),
            &["name"],
        ),
        ("name with NUL", |c| c.name = "a\0b".into(), &["name"]),
        ("port zero", |c| c.port = 0, &["port"]),
        ("port too big", |c| c.port = 65536, &["port"]),
        ("port taken on localhost", |c| c.port = 8188, &["port"]),
        (
            "port taken via 127.0.0.1",
            |c| {
                c.port = 8188;
                c.host = Some("127.0.0.1".into());
            },
            &["port"],
        ),
        (
            "port taken via ::1",
            |c| {
                c.port = 8188;
                c.host = Some("::1".into());
            },
            &["port"],
        ),
        (
            "port taken via 0.0.0.0",
            |c| {
                c.port = 8188;
                c.host = Some("0.0.0.0".into());
            },
            &["port"],
        ),
        (
            "port taken on the same remote host",
            |c| {
                c.port = 8190;
                c.host = Some("GPU.example.com".into());
            },
            &["port"],
        ),
        (
            "host with scheme",
            |c| c.host = Some("http://box".into()),
            &["host"],
        ),
        (
            "host with path",
            |c| c.host = Some("box/comfy".into()),
            &["host"],
        ),
        (
            "host with port",
            |c| c.host = Some("box:8188".into()),
            &["host"],
        ),
        (
            "host with space",
            |c| c.host = Some("my box".into()),
            &["host"],
        ),
        ("empty host", |c| c.host = Some("".into()), &["host"]),
        (
            "host too long",
            |c| c.host = Some(format!("{}.com", vec!["a".repeat(60); 5].join("."))),
            &["host"],
        ),
        (
            "host label too long",
            |c| c.host = Some(format!("{}.com", "a".repeat(64))),
            &["host"],
        ),
        (
            "host label starting with -",
            |c| c.host = Some("-box.lan".into()),
            &["host"],
        ),
        (
            "host with underscore",
            |c| c.host = Some("my_box".into()),
            &["host"],
        ),
        (
            "env name with space",
            |c| c.env_vars = env(&[("MY VAR", "1")]),
            &["envVars.MY VAR"],
        ),
        (
            "env name starting with digit",
            |c| c.env_vars = env(&[("1X", "1")]),
            &["envVars.1X"],
        ),
        (
            "env value with NUL",
            |c| c.env_vars = env(&[("X", "a\0b")]),
            &["envVars.X"],
        ),
        (
            "env name with NUL",
            |c| c.env_vars = env(&[("X\0", "a")]),
            &["envVars.X\0"],
        ),
        (
            "LD_PRELOAD",
            |c| c.env_vars = env(&[("LD_PRELOAD", "/x.so")]),
            &["envVars.LD_PRELOAD"],
        ),
        (
            "DYLD_INSERT_LIBRARIES",
            |c| c.env_vars = env(&[("DYLD_INSERT_LIBRARIES", "/x")]),
            &["envVars.DYLD_INSERT_LIBRARIES"],
        ),
        (
            "relative custom nodes path of a launched instance",
            |c| {
                c.comfyui_path = Some(env!("CARGO_MANIFEST_DIR").into());
                c.custom_nodes_path = Some("nodes".into());
            },
            &["comfyuiPath", "customNodesPath"],
        ),
        (
            "path with NUL even when attached",
            |c| c.custom_nodes_path = Some("/a\0b".into()),
            &["customNodesPath"],
        ),
        (
            "empty python path",
            |c| c.python_path = Some(" ".into()),
            &["pythonPath"],
        ),
        (
            "0 workflows at once",
            |c| c.max_concurrent_workflows = Some(0),
            &["maxConcurrentWorkflows"],
        ),
        (
            "65 workflows at once",
            |c| c.max_concurrent_workflows = Some(65),
            &["maxConcurrentWorkflows"],
        ),
        (
            "timeout 999 ms",
            |c| c.timeout_ms = Some(999),
            &["timeoutMs"],
        ),
        (
            "timeout over a day",
            |c| c.timeout_ms = Some(86_400_001),
            &["timeoutMs"],
        ),
        (
            "gpu word",
            |c| c.gpu_device = Some("gpu1".into()),
            &["gpuDevice"],
        ),
        (
            "gpu cuda:",
            |c| c.gpu_device = Some("cuda:".into()),
            &["gpuDevice"],
        ),
        (
            "gpu negative",
            |c| c.gpu_device = Some("-1".into()),
            &["gpuDevice"],
        ),
        (
            "gpu upper case",
            |c| c.gpu_device = Some("CPU".into()),
            &["gpuDevice"],
        ),
        (
            "--port",
            |c| c.extra_args = args(&["--lowvram", "--port", "8190"]),
            &["extraArgs[1]"],
        ),
        (
            "--listen=",
            |c| c.extra_args = args(&["--listen=0.0.0.0"]),
            &["extraArgs[0]"],
        ),
        (
            "argparse prefix of --listen",
            |c| c.extra_args = args(&["--list"]),
            &["extraArgs[0]"],
        ),
        (
            "every controlled flag",
            |c| {
                c.extra_args = args(&[
                    "--temp-directory",
                    "--user-directory",
                    "--output-directory",
                    "--database-url",
                    "--cuda-device",
                    "--extra-model-paths-config",
                ])
            },
            &[
                "extraArgs[0]",
                "extraArgs[1]",
                "extraArgs[2]",
                "extraArgs[3]",
                "extraArgs[4]",
                "extraArgs[5]",
            ],
        ),
        (
            "arg with NUL",
            |c| c.extra_args = args(&["--fast\0"]),
            &["extraArgs[0]"],
        ),
        (
            "description too long",
            |c| c.description = Some("d".repeat(2001)),
            &["description"],
        ),
        (
            "empty key reference",
            |c| c.api_key_ref = Some("".into()),
            &["apiKeyRef"],
        ),
        (
            "unknown way to send the key",
            |c| c.api_key_auth = Some("digest".into()),
            &["apiKeyAuth"],
        ),
        (
            "bad header name for the key",
            |c| c.api_key_auth = Some("header:X API Key".into()),
            &["apiKeyAuth"],
        ),
        (
            "CA file over http",
            |c| c.ca_file = Some("/etc/ssl/certs/ca-certificates.crt".into()),
            &["caFile"],
        ),
    ];
    for (what, edit, expected) in table {
        let mut c = base();
        edit(&mut c);
        assert_eq!(
            fields(&c),
            *expected,
            "{what}: {:?}",
            validate_config(&c, &others())
        );
    }
}

#[test]
fn good_configs_pass() {
    let table: &[fn(&mut InstanceConfig)] = &[
        |_| {},
        |c| c.host = Some("gpu-2.lan".into()),
        |c| c.api_key_auth = Some("header:X-API-Key".into()),
        |c| c.api_key_auth = Some("basic".into()),
        |c| c.host = Some("fe80::1".into()),
        |c| c.host = Some("[2001:db8::1]".into()),
        |c| c.host = Some("10.0.0.5".into()),
        // Same port as instance_001, on another machine.
        |c| {
            c.port = 8188;
            c.host = Some("10.0.0.5".into());
        },
        |c| c.gpu_device = Some("auto".into()),
        |c| c.gpu_device = Some("cpu".into()),
        |c| c.gpu_device = Some("1".into()),
        |c| c.gpu_device = Some("cuda:3".into()),
        |c| {
            c.env_vars = env(&[
                ("_X1", "anything at all = ok"),
                ("CUDA_VISIBLE_DEVICES", "1"),
            ])
        },
        |c| c.extra_args = args(&["--lowvram", "--preview-method", "auto", "--cpu"]),
        |c| c.max_concurrent_workflows = Some(64),
        |c| c.timeout_ms = Some(1000),
        |c| c.description = Some("é".repeat(2000)),
        |c| c.name = "n".repeat(100),
        |c| c.id = "A-z_09".repeat(10),
        // An attached instance's paths describe another machine: not checked on disk.
        |c| c.custom_nodes_path = Some("/path/to/custom/nodes".into()),
    ];
    for (i, edit) in table.iter().enumerate() {
        let mut c = base();
        edit(&mut c);
        assert_eq!(validate_config(&c, &others()), Ok(()), "case {i}: {c:?}");
    }
}

#[test]
fn every_problem_comes_back_at_once() {
    let mut c = InstanceConfig::new("bad id!", "", 0);
    c.host = Some("https://box:8188/".into());
    c.gpu_device = Some("gpu".into());
    c.env_vars = env(&[("LD_PRELOAD", "x"), ("BAD NAME", "v")]);
    c.extra_args = args(&["--port=1"]);
    c.max_concurrent_workflows = Some(0);
    c.timeout_ms = Some(1);
    c.description = Some("x".repeat(3000));
    let errors = validate_config(&c, &others()).unwrap_err();
    let got: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        got,
        [
            "id",
            "name",
            "port",
            "host",
            "gpuDevice",
            "envVars.BAD NAME",
            "envVars.LD_PRELOAD",
            "extraArgs[0]",
            "maxConcurrentWorkflows",
            "timeoutMs",
            "description",
        ]
    );
    // Messages say what to do, in the user's words.
    let message = |f: &str| &errors.iter().find(|e| e.field == f).unwrap().message;
    assert!(message("envVars.LD_PRELOAD").contains("foreign code"));
    assert!(message("extraArgs[0]").contains("port field"));
    assert!(message("host").contains("https"));
}

#[test]
fn an_update_is_checked_against_the_others_and_a_create_against_all() {
    let mut stored = others();
    stored[0].description = Some("old".into());
    let mut edited = stored[0].clone();
    edited.description = Some("new".into());
    // An update compares with the fleet without the stored version...
    assert_eq!(validate_config(&edited, &stored[1..]), Ok(()));
    // ...a create with all of it: the same id is taken.
    let e = validate_config(&edited, &stored).unwrap_err();
    let fields: Vec<&str> = e.iter().map(|f| f.field.as_str()).collect();
    assert_eq!(fields, ["name", "port", "id"]);
}

#[test]
fn a_whole_file_reports_each_faulty_instance_with_duplicates() {
    let mut dup = InstanceConfig::new("instance_001", "Another", 8300);
    dup.gpu_device = Some("x".into());
    let file = InstancesFile {
        version: "1.0".into(),
        instances: vec![
            InstanceConfig::new("instance_001", "Primary", 8188),
            InstanceConfig::new("ok", "Fine", 8189),
            dup,
            InstanceConfig::new("instance_003", "primary", 8188),
        ],
        active_instance_id: None,
        last_saved: None,
    };
    let problems = validate_file(&file, Checks::Full);
    let summary: Vec<(usize, Vec<&str>)> = problems
        .iter()
        .map(|p| (p.index, p.errors.iter().map(|e| e.field.as_str()).collect()))
        .collect();
    assert_eq!(
        summary,
        [
            (0, vec!["name", "port"]),
            (2, vec!["gpuDevice", "id"]),
            (3, vec!["name", "port"]),
        ]
    );
    let seed: InstancesFile = serde_json::from_slice(
        &fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/seed_comfyui_instances.json"
        ))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        validate_file(&seed, Checks::Full),
        vec![],
        "the seed's example is valid"
    );
}

#[test]
fn helpers_agree_with_the_rules() {
    assert!(validate_id("instance_001").is_ok());
    assert!(validate_id("a.b").is_err());
    assert!(same_machine("localhost", "::1"));
    assert!(same_machine("127.0.0.2", "0.0.0.0"));
    assert!(same_machine("::ffff:127.0.0.1", "localhost"));
    assert!(!same_machine("localhost", "10.0.0.1"));
    assert!(same_machine("Box.lan.", "box.lan"));
    assert!(!same_machine("box.lan", "10.0.0.1"));
}

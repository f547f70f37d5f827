//! Secret environment values: kept in a real keyring (GNOME Keyring on a
//! private D-Bus session), given to the ComfyUI the app launches, and in no
//! file of the app nor its export. One test: the bus is the process's
//! environment.

use crate::support;

use std::time::Duration;
use storycore_core::health::HealthPolicy;
use storycore_core::manager::{InstanceManager, ManagerOptions};
use storycore_types::InstanceStatus;
use support::keyring::TestKeyring;
use support::standin::{free_port, local_config};
use support::wait_for;

/// The environment of the process listening on `port` with the stand-in's
/// command line (`main.py ... --port <port>`), from /proc.
fn environ_of_server_on(port: u16) -> Option<String> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let dir = e.path();
        let Ok(cmd) = std::fs::read(dir.join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
        let on_port = args
            .windows(2)
            .any(|w| w[0] == b"--port" && w[1] == port.to_string().as_bytes());
        if on_port && args.iter().any(|a| *a == b"main.py") {
            let env = std::fs::read(dir.join("environ")).ok()?;
            return Some(String::from_utf8_lossy(&env).replace('\0', "\n"));
        }
    }
    None
}

#[tokio::test]
async fn a_secret_value_reaches_comfyui_from_the_keyring_and_no_file() {
    let keyring = TestKeyring::start();
    std::env::set_var("DBUS_SESSION_BUS_ADDRESS", &keyring.bus_address);
    let config = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let comfy = support::standin::comfyui_folder();
    let mut o = ManagerOptions::new(config.path());
    o.data_dir = data.path().to_path_buf();
    o.health = HealthPolicy {
        interval: Duration::from_millis(200),
        starting_interval: Duration::from_millis(50),
        ..HealthPolicy::default()
    };
    let m = InstanceManager::open(o).unwrap().0;
    let port = free_port();
    let mut c = local_config("local-1", comfy.path(), port);
    c.gpu_device = Some("cpu".into());
    c.env_vars = Some([("HF_TOKEN".to_string(), "plain-old".to_string())].into());
    m.create(c).await.unwrap();

    // Refused names are refused for secrets too; nothing is stored.
    let e = m
        .set_secret_env("local-1", "LD_PRELOAD", Some("/tmp/x.so".into()), false)
        .await
        .unwrap_err();
    let refused = match &e {
        storycore_core::manager::ManagerError::Invalid { fields } => fields
            .iter()
            .any(|f| f.field == "secretEnvVars.LD_PRELOAD" && f.message.contains("loader")),
        _ => false,
    };
    assert!(refused, "{e:?}");
    assert_eq!(keyring.lookup("instance/local-1/env/LD_PRELOAD"), None);

    // The plain value becomes a secret one.
    let inst = m
        .set_secret_env("local-1", "HF_TOKEN", Some("hf_s3cret_value".into()), false)
        .await
        .unwrap();
    assert!(inst.config.env_vars.is_none(), "{:?}", inst.config.env_vars);
    assert_eq!(
        keyring.lookup("instance/local-1/env/HF_TOKEN").as_deref(),
        Some("hf_s3cret_value")
    );
    let file = std::fs::read_to_string(config.path().join("comfyui_instances.json")).unwrap();
    assert!(
        !file.contains("hf_s3cret_value") && !file.contains("plain-old"),
        "{file}"
    );
    assert!(file.contains("\"secretEnvVars\""), "{file}");
    let export = m.export();
    assert!(!export.contains("hf_s3cret_value"), "{export}");
    assert!(export.contains("\"HF_TOKEN\": \"<redacted"), "{export}");
    assert!(!export.contains("secretEnvVars"), "{export}");

    // A copy of the config (a duplicate, a hand edit) names the same entry:
    // deleting the copy leaves the original's secret where it is.
    let mut copy = m.get("local-1").unwrap().config;
    copy.id = "local-2".into();
    copy.name = "local-2".into();
    copy.port = u32::from(free_port());
    m.create(copy).await.unwrap();
    m.delete("local-2").await.unwrap();
    assert_eq!(
        keyring.lookup("instance/local-1/env/HF_TOKEN").as_deref(),
        Some("hf_s3cret_value"),
        "deleting a copy deleted the original's secret"
    );

    // The launched ComfyUI has it.
    m.start("local-1").await.unwrap();
    wait_for(Duration::from_secs(20), "local-1 running", || async {
        (m.get("local-1").unwrap().status == InstanceStatus::Running).then_some(())
    })
    .await;
    let env = environ_of_server_on(port).expect("the launched stand-in's environment");
    assert!(
        env.lines().any(|l| l == "HF_TOKEN=hf_s3cret_value"),
        "{env}"
    );
    println!("secrets_env: the launched ComfyUI got HF_TOKEN from the keyring");
    m.stop("local-1").await.unwrap();

    // Removed: out of the keyring and the config.
    let inst = m
        .set_secret_env("local-1", "HF_TOKEN", None, false)
        .await
        .unwrap();
    assert!(inst.config.secret_env_vars.is_none());
    assert_eq!(keyring.lookup("instance/local-1/env/HF_TOKEN"), None);
    m.shutdown().await;
}

//! What reaches the launched process: GPU pinning through the environment,
//! the generated extra-model-paths file, the instance's own folders.

use crate::support;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use storycore_core::supervisor::{
    build_launch_spec, GpuPinning, LaunchContext, SupervisorHandle, SupervisorOptions,
};
use storycore_core::telemetry::GpuInfo;
use storycore_types::InstanceConfig;
use support::standin::{comfyui_folder, free_port, local_config};
use support::wait_for;

const T: Duration = Duration::from_secs(20);

async fn device_name(port: u16) -> String {
    wait_for(T, "/system_stats", || async {
        let r = reqwest::get(format!("http://127.0.0.1:{port}/system_stats"))
            .await
            .ok()?;
        let v: serde_json::Value = r.json().await.ok()?;
        Some(v["devices"][0]["name"].as_str()?.to_string())
    })
    .await
}

fn with_fake_gpus(mut c: InstanceConfig, gpu: &str) -> InstanceConfig {
    c.gpu_device = Some(gpu.into());
    c.env_vars = Some(BTreeMap::from([(
        "STANDIN_GPUS".to_string(),
        "Alpha:1000,Beta:2000".to_string(),
    )]));
    c
}

#[tokio::test]
async fn gpu_device_pins_through_the_environment_and_cpu_through_the_flag() {
    let comfy = comfyui_folder();
    let data = tempfile::tempdir().unwrap();
    let ctx = LaunchContext::new(data.path());
    let port = free_port();
    let second = SupervisorHandle::launch(
        &with_fake_gpus(local_config("g1", comfy.path(), port), "cuda:1"),
        &ctx,
        SupervisorOptions::default(),
    )
    .await
    .unwrap();
    let name = device_name(port).await;
    assert!(
        name.contains("Beta"),
        "cuda:1 must be the second GPU, got {name}"
    );
    assert!(!second.spec().args.iter().any(|a| a == "--cuda-device"));
    second.stop().await.unwrap();

    let port = free_port();
    let cpu = SupervisorHandle::launch(
        &with_fake_gpus(local_config("g2", comfy.path(), port), "cpu"),
        &ctx,
        SupervisorOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(device_name(port).await, "cpu");
    cpu.stop().await.unwrap();
}

#[test]
fn auto_uses_the_listed_gpus_and_falls_back_without_them() {
    let comfy = comfyui_folder();
    let data = tempfile::tempdir().unwrap();
    let config = local_config("auto", comfy.path(), 8190);
    let mut config = config;
    config.gpu_device = Some("auto".into());
    let spec = build_launch_spec(&config, &LaunchContext::new(data.path())).unwrap();
    assert_eq!(spec.gpu, GpuPinning::Default);
    assert!(spec.warnings.iter().any(|w| w.contains("auto")));
    assert!(!spec.env.contains_key("CUDA_VISIBLE_DEVICES"));

    let gpu = |index: u32, free: u64| GpuInfo {
        index,
        name: format!("GPU {index}"),
        uuid: String::new(),
        memory_total_bytes: 100,
        memory_free_bytes: free,
        utilization_percent: None,
        temperature_celsius: None,
    };
    let ctx = LaunchContext {
        data_dir: data.path().into(),
        gpus: vec![gpu(0, 90), gpu(1, 50)],
        instances_per_gpu: HashMap::from([(0, 2)]),
        guardian: None,
    };
    let spec = build_launch_spec(&config, &ctx).unwrap();
    assert_eq!(spec.gpu, GpuPinning::Gpu(1));
    assert_eq!(spec.env["CUDA_VISIBLE_DEVICES"], "1");
    assert_eq!(spec.env["CUDA_DEVICE_ORDER"], "PCI_BUS_ID");
}

#[test]
fn custom_nodes_go_through_a_generated_extra_model_paths_file() {
    let comfy = comfyui_folder();
    let data = tempfile::tempdir().unwrap();
    let nodes = tempfile::tempdir().unwrap();
    let mut config = local_config("nodes", comfy.path(), 8191);
    config.custom_nodes_path = Some(nodes.path().display().to_string());
    config.extra_args = Some(vec!["--preview-method".into(), "auto; rm -rf /".into()]);
    let spec = build_launch_spec(&config, &LaunchContext::new(data.path())).unwrap();
    let file = data.path().join("instances/nodes/extra_model_paths.yaml");
    let i = spec
        .args
        .iter()
        .position(|a| a == "--extra-model-paths-config")
        .unwrap();
    assert_eq!(spec.args[i + 1], file.display().to_string());
    let yaml = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        yaml,
        format!(
            "storycore:\n  custom_nodes: \"{}\"\n",
            nodes.path().display()
        )
    );
    // Extra arguments come last, each as given (no shell ever sees them).
    assert_eq!(spec.args[spec.args.len() - 1], "auto; rm -rf /");
    assert_eq!(spec.args[0], "main.py");
    assert_eq!(spec.working_dir, comfy.path());

    // Without customNodesPath the stale file goes and the flag is not passed.
    config.custom_nodes_path = None;
    let spec = build_launch_spec(&config, &LaunchContext::new(data.path())).unwrap();
    assert!(!file.exists());
    assert!(!spec.args.iter().any(|a| a == "--extra-model-paths-config"));
    // No input/ in the ComfyUI folder: a per-instance one (ComfyUI needs it).
    let i = spec
        .args
        .iter()
        .position(|a| a == "--input-directory")
        .unwrap();
    assert_eq!(
        spec.args[i + 1],
        data.path()
            .join("instances/nodes/input")
            .display()
            .to_string()
    );
    std::fs::create_dir(comfy.path().join("input")).unwrap();
    let spec = build_launch_spec(&config, &LaunchContext::new(data.path())).unwrap();
    let i = spec
        .args
        .iter()
        .position(|a| a == "--input-directory")
        .unwrap();
    assert_eq!(
        spec.args[i + 1],
        comfy.path().join("input").display().to_string()
    );
}

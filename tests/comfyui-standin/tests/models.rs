//! Models as ComfyUI has them: files in `models/<folder>/`, listed by
//! `/models/<folder>` and by each loader's list in `/object_info`; a prompt
//! naming a missing file refused (`value_not_in_list`); a load that takes
//! its time unless the model is held, the least recently used let go.

mod common;

use std::time::Instant;

use common::*;
use serde_json::{json, Value};

/// Sparse files: only their size matters to the load time.
fn model(s: &Server, folder: &str, name: &str, mb: u64) {
    let path = s.path(&format!("models/{folder}/{name}"));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let f = std::fs::File::create(path).unwrap();
    f.set_len(mb * 1_000_000).unwrap();
}

/// Checkpoint -> its VAE decodes an empty latent -> saved. `width` makes
/// the prompt differ from the last (its loader node stays the same).
fn prompt_for(ckpt: &str, width: u32) -> Value {
    json!({"prompt": {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": width, "height": 64, "batch_size": 1}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "m"}}
    }})
}

/// Runs the prompt to its end; the seconds it took.
async fn run(s: &Server, ckpt: &str, width: u32) -> f64 {
    let t = Instant::now();
    let (st, r) = s.post_json("/prompt", &prompt_for(ckpt, width)).await;
    assert_eq!(st, 200, "{r}");
    let h = s.wait_history(r["prompt_id"].as_str().unwrap()).await;
    assert_eq!(h["status"]["status_str"], "success", "{h}");
    t.elapsed().as_secs_f64()
}

#[tokio::test]
async fn model_files_are_listed_and_a_missing_one_is_refused_like_comfyui() {
    let s = Server::start().await;
    model(&s, "checkpoints", "sdxl.safetensors", 1);
    model(&s, "checkpoints", "sub/sd15.ckpt", 1);
    model(&s, "checkpoints", "notes.txt", 1);
    model(&s, "loras", "detail.safetensors", 1);
    assert_eq!(
        s.get_json("/models/checkpoints").await,
        json!(["sdxl.safetensors", "sub/sd15.ckpt"])
    );
    let info = s.get_json("/object_info").await;
    assert_eq!(
        info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0],
        json!(["sdxl.safetensors", "sub/sd15.ckpt"])
    );
    assert_eq!(
        info["LoraLoader"]["input"]["required"]["lora_name"][0],
        json!(["detail.safetensors"])
    );
    let one = s.get_json("/object_info/CheckpointLoaderSimple").await;
    assert_eq!(
        one["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0],
        json!(["sdxl.safetensors", "sub/sd15.ckpt"])
    );

    let (st, r) = s
        .post_json("/prompt", &prompt_for("flux.safetensors", 64))
        .await;
    assert_eq!(st, 400, "{r}");
    assert_eq!(
        r["node_errors"]["4"]["errors"][0]["type"], "value_not_in_list",
        "{r}"
    );
    // A file added is listed at once.
    model(&s, "checkpoints", "flux.safetensors", 1);
    run(&s, "flux.safetensors", 64).await;
}

#[tokio::test]
async fn a_load_takes_its_time_unless_the_model_is_held() {
    let s = Server::with_env(vec![
        ("STANDIN_NODE_MS", "5"),
        ("STANDIN_MODEL_LOAD_MS", "300"),
        // 100 MB at 500 MB/s: 0.2 s more.
        ("STANDIN_MODEL_READ_MBPS", "500"),
        ("STANDIN_MODELS_HELD", "1"),
    ])
    .await;
    model(&s, "checkpoints", "a.safetensors", 100);
    model(&s, "checkpoints", "b.safetensors", 100);
    let first = run(&s, "a.safetensors", 64).await;
    assert!(first >= 0.5, "read from disk: {first}");
    // Same model, another prompt: its loader is cached (the same node).
    let again = run(&s, "a.safetensors", 72).await;
    assert!(again < 0.3, "held: {again}");
    // b evicts a (one model held): a is read again.
    let b = run(&s, "b.safetensors", 64).await;
    assert!(b >= 0.5, "{b}");
    let a = run(&s, "a.safetensors", 80).await;
    assert!(a >= 0.5, "evicted, read again: {a}");
    // /free lets the models go.
    let (st, _) = s.post_json("/free", &json!({"unload_models": true})).await;
    assert_eq!(st, 200);
    let freed = run(&s, "a.safetensors", 88).await;
    assert!(freed >= 0.5, "freed, read again: {freed}");
}

#[tokio::test]
async fn a_server_can_lack_node_classes() {
    let s = Server::with_env(vec![("STANDIN_HIDE_CLASSES", "VAEDecode, LoraLoader")]).await;
    let info = s.get_json("/object_info").await;
    assert!(info.get("VAEDecode").is_none());
    assert!(info.get("LoraLoader").is_none());
    assert!(info.get("CheckpointLoaderSimple").is_some());
    model(&s, "checkpoints", "a.safetensors", 1);
    let (st, r) = s
        .post_json("/prompt", &prompt_for("a.safetensors", 64))
        .await;
    assert_eq!(st, 400, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("VAEDecode does not exist"),
        "{r}"
    );
}

//! Model-aware placement against stand-ins that keep models as ComfyUI
//! does: a job goes only where its model file is, waits with a sentence
//! naming the file when no instance has it, the time of a model's load is
//! learnt, and one model's jobs stay where it is held.

use crate::dispatch_fleet;
use crate::support;

use dispatch_fleet::Fleet;
use serde_json::{json, Value};
use std::time::Duration;
use storycore_types::{JobState, JobTarget};
use support::standin::StandIn;
use support::wait_for;

const LONG: Duration = Duration::from_secs(30);

/// A model file of `mb` megabytes (sparse: only its size counts).
fn model(s: &StandIn, name: &str, mb: u64) {
    let path = s.folder().join("models/checkpoints").join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::File::create(path)
        .unwrap()
        .set_len(mb * 1_000_000)
        .unwrap();
}

/// Checkpoint -> its VAE decodes an empty latent -> `chain` inverts -> saved.
fn workflow(ckpt: &str, width: u32, chain: usize, prefix: &str) -> Value {
    let mut w = json!({
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": width, "height": 64, "batch_size": 1}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["4", 2]}},
    });
    let mut last = "8".to_string();
    for k in 0..chain {
        let id = format!("{}", 20 + k);
        w[&id] = json!({"class_type": "ImageInvert", "inputs": {"image": [last, 0]}});
        last = id;
    }
    w["9"] = json!({"class_type": "SaveImage", "inputs": {"images": [last, 0], "filename_prefix": prefix}});
    w
}

/// Both instances' calibrations are over (a smoke test each, which takes
/// the instance from work while it runs and fills ComfyUI's cache).
async fn calibrated(fleet: &Fleet) {
    wait_for(LONG, "both instances calibrated", || async {
        (fleet.queue.measured().len() == 2).then_some(())
    })
    .await;
}

/// Prompts the stand-in received that load `ckpt` (its history).
async fn runs_with(s: &StandIn, ckpt: &str) -> usize {
    let h: Value = reqwest::get(format!("{}/history", s.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    h.as_object()
        .unwrap()
        .values()
        .filter(|e| e.pointer("/prompt/2/4/inputs/ckpt_name") == Some(&json!(ckpt)))
        .count()
}

#[tokio::test]
async fn a_job_goes_only_where_its_model_file_is() {
    let (a, b) = (StandIn::start(), StandIn::start());
    model(&a, "sd15.safetensors", 1);
    model(&b, "sdxl.safetensors", 1);
    model(&b, "sd15.safetensors", 1);
    let fleet = Fleet::running_pair(&a, &b).await;
    let mut ids = Vec::new();
    for k in 0..6 {
        let ckpt = if k % 2 == 0 {
            "sdxl.safetensors"
        } else {
            "sd15.safetensors"
        };
        let job = fleet
            .queue
            .submit(workflow(ckpt, 64 + 8 * k, 1, "where"), JobTarget::Auto)
            .await
            .unwrap();
        ids.push(job.id);
    }
    let done = fleet.wait_all_final(&ids, LONG).await;
    for j in &done {
        assert_eq!(j.state, JobState::Succeeded, "{:?}", j.error);
    }
    // Every sdxl job ran on b; a never got one (it would refuse it).
    assert_eq!(runs_with(&a, "sdxl.safetensors").await, 0);
    assert_eq!(runs_with(&b, "sdxl.safetensors").await, 3);
    let models = fleet.queue.instance_models("a").unwrap();
    assert_eq!(
        models.files["ckpt_name"].iter().collect::<Vec<_>>(),
        ["sd15.safetensors"]
    );
}

#[tokio::test]
async fn a_job_no_instance_can_run_waits_naming_the_file_and_runs_once_it_is_there() {
    let (a, b) = (StandIn::start(), StandIn::start());
    model(&a, "sd15.safetensors", 1);
    let fleet = Fleet::running_pair(&a, &b).await;
    let job = fleet
        .queue
        .submit(workflow("flux.safetensors", 64, 1, "wait"), JobTarget::Auto)
        .await
        .unwrap();
    let waiting = wait_for(LONG, "the job to say why it waits", || async {
        fleet.queue.get(&job.id).and_then(|j| j.waiting)
    })
    .await;
    assert!(waiting.contains("\"flux.safetensors\""), "{waiting}");
    assert!(
        waiting.contains("a lacks") && waiting.contains("b lacks"),
        "names the instances checked: {waiting}"
    );
    assert_eq!(fleet.queue.get(&job.id).unwrap().state, JobState::Queued);

    // The file is put on b and its models read again: the job runs there.
    model(&b, "flux.safetensors", 1);
    let read = fleet.queue.refresh_models("b").await.unwrap();
    assert!(read.files["ckpt_name"].contains(&"flux.safetensors".to_string()));
    let done = fleet.wait_state(&job.id, JobState::Succeeded, LONG).await;
    assert_eq!(done.instance_id.as_deref(), Some("b"));
    assert!(done.waiting.is_none());
}

#[tokio::test]
async fn a_models_load_time_is_learnt_and_its_jobs_stay_where_it_is_held() {
    // Loads of about a second against jobs of a few hundredths.
    let env = [
        ("STANDIN_NODE_MS", "10"),
        ("STANDIN_MODEL_LOAD_MS", "700"),
        ("STANDIN_MODELS_HELD", "1"),
    ];
    let start = || {
        let mut b = StandIn::builder();
        for (k, v) in env {
            b = b.env(k, v);
        }
        b.start()
    };
    let (a, b) = (start(), start());
    for s in [&a, &b] {
        model(s, "one.safetensors", 1);
        model(s, "two.safetensors", 1);
    }
    let fleet = Fleet::running_pair(&a, &b).await;
    calibrated(&fleet).await;
    // One job of each model first: each instance loads one of them.
    let mut first = Vec::new();
    for ckpt in ["one.safetensors", "two.safetensors"] {
        let j = fleet
            .queue
            .submit(workflow(ckpt, 64, 1, "first"), JobTarget::Auto)
            .await
            .unwrap();
        first.push(j.id);
    }
    let firsts = fleet.wait_all_final(&first, LONG).await;
    let home = |ckpt: &str| {
        firsts
            .iter()
            .find(|j| j.workflow.pointer("/4/inputs/ckpt_name") == Some(&json!(ckpt)))
            .and_then(|j| j.instance_id.clone())
            .unwrap()
    };
    let (one_at, two_at) = (home("one.safetensors"), home("two.safetensors"));
    assert_ne!(one_at, two_at, "two idle instances, one job each");
    // The load was measured where it happened (about 0.7 s).
    let learnt = fleet.queue.instance_models(&one_at).unwrap().load_secs["one.safetensors"];
    assert!((0.5..5.0).contains(&learnt), "{learnt}");
    assert_eq!(
        fleet.queue.instance_models(&one_at).unwrap().loaded,
        ["one.safetensors"]
    );

    // Then a batch of both, interleaved: each model's jobs go where it is
    // held, so no instance loads another model.
    let mut batch = Vec::new();
    for k in 0..8u32 {
        let ckpt = if k % 2 == 0 {
            "one.safetensors"
        } else {
            "two.safetensors"
        };
        let j = fleet
            .queue
            .submit(workflow(ckpt, 72 + 8 * k, 1, "batch"), JobTarget::Auto)
            .await
            .unwrap();
        batch.push(j.id);
    }
    for j in fleet.wait_all_final(&batch, LONG).await {
        assert_eq!(j.state, JobState::Succeeded, "{:?}", j.error);
        let ckpt = j.workflow.pointer("/4/inputs/ckpt_name").unwrap().clone();
        let want = if ckpt == json!("one.safetensors") {
            &one_at
        } else {
            &two_at
        };
        assert_eq!(j.instance_id.as_ref(), Some(want), "{ckpt} ran elsewhere");
        assert_eq!(
            j.placed_because.as_deref(),
            Some(format!("has {} loaded", ckpt.as_str().unwrap()).as_str()),
            "the card says why"
        );
    }
}

/// Through the gateway: a client sees every instance's model files in
/// `/object_info`, its prompt naming a file only one instance has passes
/// validation there, and it runs on that instance.
#[tokio::test]
async fn the_gateway_offers_every_instances_models_and_sends_a_prompt_where_its_file_is() {
    use crate::gateway_support::{get_json, post_json, GatewayFleet};
    let (a, b) = (StandIn::start(), StandIn::start());
    model(&a, "sd15.safetensors", 1);
    model(&b, "flux.safetensors", 1);
    let g = GatewayFleet::of(vec![a, b]).await;
    let info = get_json(&g.http, &format!("{}/object_info", g.base)).await;
    let listed = &info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0];
    for f in ["sd15.safetensors", "flux.safetensors"] {
        assert!(
            listed.as_array().unwrap().contains(&json!(f)),
            "{f} in {listed}"
        );
    }
    let one = get_json(
        &g.http,
        &format!("{}/object_info/CheckpointLoaderSimple", g.base),
    )
    .await;
    assert_eq!(
        &one["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0],
        listed
    );

    let answer = post_json(
        &g.http,
        &format!("{}/prompt", g.base),
        &json!({"prompt": workflow("flux.safetensors", 64, 1, "gw")}),
    )
    .await;
    let id = answer["prompt_id"].as_str().expect("accepted").to_string();
    wait_for(LONG, "the prompt in the gateway's history", || async {
        let h = get_json(&g.http, &format!("{}/history/{id}", g.base)).await;
        (h.get(&id).is_some()).then_some(())
    })
    .await;
    assert_eq!(runs_with(&g.standins[1], "flux.safetensors").await, 1);
    assert_eq!(runs_with(&g.standins[0], "flux.safetensors").await, 0);
    g.stop().await;
}

/// A prompt run again is answered from ComfyUI's cache where it ran: the
/// queue sends it there (its nodes cost nothing there) rather than to an
/// idle instance that would run it from scratch.
#[tokio::test]
async fn a_prompt_run_again_goes_where_comfyuis_cache_holds_it() {
    // a is twice as fast: without the cache, the job would go there.
    let start = |speed: &str| {
        StandIn::builder()
            .env("STANDIN_NODE_MS", "30")
            .env("STANDIN_SPEED", speed)
            .start()
    };
    let (a, b) = (start("0.5"), start("1"));
    let fleet = Fleet::running_pair(&a, &b).await;
    calibrated(&fleet).await;
    let w = crate::dispatch_fleet::chain_workflow(20, 4242, "again");
    let first = fleet
        .queue
        .submit(w.clone(), JobTarget::Instance { id: "b".into() })
        .await
        .unwrap();
    fleet.wait_state(&first.id, JobState::Succeeded, LONG).await;
    // The same workflow again, from a client that sends it twice: a is
    // idle too, and faster.
    let again = fleet.queue.submit(w, JobTarget::Auto).await.unwrap();
    let done = fleet.wait_state(&again.id, JobState::Succeeded, LONG).await;
    assert_eq!(done.instance_id.as_deref(), Some("b"));
    assert_eq!(
        done.placed_because.as_deref(),
        Some("its ComfyUI cache holds this prompt")
    );
    // ComfyUI answered every node from its cache.
    let h: Value = reqwest::get(format!(
        "{}/history/{}",
        b.url(),
        done.prompt_id.as_deref().unwrap()
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let messages = h.pointer(&format!("/{}/status/messages", done.prompt_id.unwrap()));
    let cached = messages
        .and_then(Value::as_array)
        .and_then(|m| m.iter().find(|m| m[0] == "execution_cached"))
        .map(|m| m[1]["nodes"].as_array().unwrap().len());
    assert_eq!(cached, Some(22), "{h}");
}

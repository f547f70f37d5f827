//! `/upload/image` and `/upload/mask` through the gateway: files kept and
//! named as ComfyUI names them (the recorded answers), sent to whichever
//! instance runs a prompt that reads them, again when that instance dies
//! and another takes the prompt; a mask composed by an instance of the
//! fleet from an image the gateway keeps.

use crate::dispatch_fleet;
use crate::gateway_support;
use crate::replay;
use crate::support;

use gateway_support::*;
use reqwest::multipart::{Form, Part};
use serde_json::{json, Value};
use storycore_types::JobState;
use support::standin::StandIn;

/// A 768×768 PNG a real ComfyUI served (its `example.png`).
fn photo() -> Vec<u8> {
    std::fs::read(replay::fixtures().join("errors/get_view_input_example.png")).unwrap()
}

fn png_size(data: &[u8]) -> (u32, u32) {
    assert_eq!(&data[1..4], b"PNG", "a PNG");
    let be = |r: std::ops::Range<usize>| u32::from_be_bytes(data[r].try_into().unwrap());
    (be(16..20), be(20..24))
}

async fn upload(g: &GatewayFleet, route: &str, form: Form) -> (u16, String) {
    let r = g
        .http
        .post(format!("{}{route}", g.base))
        .multipart(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn image(name: &str, data: Vec<u8>) -> Form {
    Form::new().part("image", Part::bytes(data).file_name(name.to_string()))
}

fn body_of(recorded: &str) -> Value {
    replay::read_json(&format!("http/{recorded}.json"))["body"].clone()
}

#[tokio::test]
async fn uploads_are_kept_and_named_as_comfyui_names_them() {
    let g = GatewayFleet::of(vec![StandIn::start()]).await;
    let json = |t: &str| serde_json::from_str::<Value>(t).unwrap();
    let first = b"first bytes".to_vec();

    let (st, t) = upload(
        &g,
        "/upload/image",
        image("fixture_upload.png", first.clone()),
    )
    .await;
    assert_eq!((st, json(&t)), (200, body_of("upload_image_new")));
    let (st, t) = upload(
        &g,
        "/upload/image",
        image("fixture_upload.png", first.clone()),
    )
    .await;
    assert_eq!(
        (st, json(&t)),
        (200, body_of("upload_image_duplicate_same_content"))
    );
    let (st, t) = upload(
        &g,
        "/upload/image",
        image("fixture_upload.png", b"other".to_vec()),
    )
    .await;
    assert_eq!(
        (st, json(&t)["name"].clone()),
        (200, json!("fixture_upload (1).png"))
    );
    let (st, t) = upload(
        &g,
        "/upload/image",
        image("fixture_upload.png", b"third".to_vec()).text("overwrite", "true"),
    )
    .await;
    assert_eq!(
        (st, json(&t)),
        (200, body_of("upload_image_overwrite_true"))
    );
    let (st, t) = upload(
        &g,
        "/api/upload/image",
        image("fixture_upload.png", first.clone())
            .text("subfolder", "sub")
            .text("type", "temp"),
    )
    .await;
    assert_eq!(
        (st, json(&t)),
        (200, body_of("upload_image_subfolder_temp"))
    );

    // Refusals: a name out of the folder (sent literally), no file.
    let traversal = image("../evil2.png", b"x".to_vec()).percent_encode_noop();
    assert_eq!(
        upload(&g, "/upload/image", traversal).await,
        (400, String::new())
    );
    let no_file = Form::new().text("type", "input");
    assert_eq!(
        upload(&g, "/upload/image", no_file).await,
        (400, String::new())
    );
    let not_multipart = g
        .http
        .post(format!("{}/upload/image", g.base))
        .body("plain")
        .send()
        .await
        .unwrap();
    assert_eq!(not_multipart.status(), 400);

    // Kept by the gateway, not yet on the instance; served by /view.
    assert!(!g.standins[0]
        .folder()
        .join("input/fixture_upload.png")
        .exists());
    let r = g
        .http
        .get(format!(
            "{}/view?filename=fixture_upload.png&type=input",
            g.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"third");
    g.stop().await;
}

fn load_and_save(image: &str, prefix: &str) -> Value {
    json!({
        "1": {"class_type": "LoadImage", "inputs": {"image": image}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}}
    })
}

/// The prompt reads an image only the gateway has: it is sent to the
/// instance before the prompt, and sent again to the instance that takes
/// the prompt over when the first dies.
#[tokio::test]
async fn a_prompt_reads_an_uploaded_image_on_whichever_instance_runs_it() {
    let doomed = StandIn::builder().env("STANDIN_NODE_MS", "1500").start();
    let other = StandIn::builder().env("STANDIN_NODE_MS", "1500").start();
    let mut g = GatewayFleet::of(vec![doomed]).await;
    let (st, t) = upload(
        &g,
        "/upload/image",
        image("photo.png", photo()).text("subfolder", "shots"),
    )
    .await;
    assert_eq!(st, 200, "{t}");

    // ComfyUI's image loaders refuse a file that is not there.
    let r = g
        .http
        .post(format!("{}/prompt", g.base))
        .json(&json!({"prompt": load_and_save("missing.png", "x")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let refusal: Value = r.json().await.unwrap();
    println!("gateway uploads: a missing image: {refusal}");
    assert_eq!(
        refusal["node_errors"]["1"]["errors"][0],
        json!({"type": "custom_validation_failed", "message": "Custom validation failed for node",
               "details": "image - Invalid image file: missing.png", "extra_info": {"input_name": "image"}})
    );

    let mut ws = open_ws(&g.gw, "uploader").await;
    next(&mut ws).await;
    let answer = post_json(
        &g.http,
        &format!("{}/prompt", g.base),
        &json!({"prompt": load_and_save("shots/photo.png", "uploaded"), "client_id": "uploader"}),
    )
    .await;
    assert_eq!(answer["node_errors"], json!({}), "{answer}");
    let prompt = answer["prompt_id"].as_str().unwrap().to_string();
    loop {
        if next(&mut ws).await["type"] == "execution_start" {
            break;
        }
    }
    let sent = g.standins[0].folder().join("input/shots/photo.png");
    assert_eq!(
        std::fs::read(&sent).unwrap(),
        photo(),
        "sent before the prompt"
    );
    g.fleet
        .manager
        .create(dispatch_fleet::attached("other", other.port(), 1))
        .await
        .unwrap();
    g.fleet.start("other").await;
    g.standins[0].kill();
    let frames = until_done(&mut ws, &prompt).await;
    let t = types(&frames);
    println!("gateway uploads: after the kill, /ws frames {t:?}");
    assert!(t.contains(&"execution_success".to_string()), "{t:?}");

    let job = g.fleet.queue.list().into_iter().next().unwrap();
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(job.instance_id.as_deref(), Some("other"));
    assert_eq!(job.input_files.len(), 1);
    let resent = other.folder().join("input/shots/photo.png");
    assert_eq!(std::fs::read(&resent).unwrap(), photo(), "sent again");

    // The output has the uploaded image's size: the instance read it.
    let history = get_json(&g.http, &format!("{}/history/{prompt}", g.base)).await;
    let out = &history[&prompt]["outputs"]["2"]["images"][0];
    let r = g
        .http
        .get(format!("{}/view", g.base))
        .query(&[
            ("filename", out["filename"].as_str().unwrap()),
            ("subfolder", out["subfolder"].as_str().unwrap()),
            ("type", "output"),
        ])
        .send()
        .await
        .unwrap();
    let size = png_size(&r.bytes().await.unwrap());
    println!(
        "gateway uploads: the output is {size:?}, the upload {:?}",
        png_size(&photo())
    );
    assert_eq!(size, png_size(&photo()));
    g.stop().await;
}

/// `/upload/mask` on an image the gateway keeps: an instance composes it
/// (the stand-in marks the original with the mask's name), and the result
/// is kept like an uploaded image.
#[tokio::test]
async fn a_mask_is_composed_by_an_instance_from_the_gateways_image() {
    let g = GatewayFleet::of(vec![StandIn::start()]).await;
    let (st, _) = upload(&g, "/upload/image", image("base.png", photo())).await;
    assert_eq!(st, 200);
    let mask = b"\x89PNG mask bytes".to_vec();
    let form = image("clipspace-mask.png", mask.clone()).text(
        "original_ref",
        json!({"filename": "base.png", "subfolder": "", "type": "input"}).to_string(),
    );
    let (st, t) = upload(&g, "/upload/mask", form).await;
    assert_eq!(st, 200, "{t}");
    assert_eq!(
        serde_json::from_str::<Value>(&t).unwrap(),
        json!({"name": "clipspace-mask.png", "subfolder": "", "type": "input"})
    );
    let r = g
        .http
        .get(format!(
            "{}/view?filename=clipspace-mask.png&type=input",
            g.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let masked = r.bytes().await.unwrap();
    assert_eq!(
        png_size(&masked),
        png_size(&photo()),
        "the original's pixels"
    );
    // The stand-in's mark: the mask's name on the instance, and its size.
    let note = format!("-mask.png ({} bytes)", mask.len());
    assert!(
        masked.windows(note.len()).any(|w| w == note.as_bytes()),
        "the mask applied by the instance"
    );
    // Not JSON in original_ref: ComfyUI fails with a 500.
    let form = image("m.png", mask).text("original_ref", "{not json");
    assert_eq!(upload(&g, "/upload/mask", form).await.0, 500);
    g.stop().await;
}

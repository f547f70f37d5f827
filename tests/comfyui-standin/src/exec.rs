//! The prompt worker: runs one prompt at a time and emits ComfyUI's
//! WebSocket sequence, history entries and output files.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Map, Value};

use crate::faults;
use crate::files;
use crate::state::{now_ms, App, QueueItem};
use comfyui_rules::{py_repr, py_str, sorted_ids};

/// A fake tensor: what flows along links.
#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    Image {
        w: u32,
        h: u32,
        batch: u32,
        color: u32,
    },
    Mask {
        w: u32,
        h: u32,
        batch: u32,
    },
    Lit(Value),
    None,
}

/// What the execution cache keeps per node signature.
#[derive(Clone, Debug)]
pub struct NodeOutput {
    pub values: Vec<Val>,
    pub ui: Option<Value>,
}

struct NodeError {
    kind: String,
    message: String,
}

#[derive(PartialEq)]
enum End {
    Success,
    Failed,
}

pub async fn worker(app: Arc<App>) {
    loop {
        let item = loop {
            let next = {
                let mut inner = app.lock();
                if inner.pending.is_empty() {
                    None
                } else {
                    let item = inner.pending.remove(0);
                    inner.running = Some(item.clone());
                    inner.prompts_started += 1;
                    Some((item, inner.prompts_started))
                }
            };
            match next {
                Some(x) => break x,
                None => app.work.notified().await,
            }
        };
        let (item, nth) = item;
        app.queue_updated();
        let started = Instant::now();
        let sid = item.client_id();
        let mut run = Run {
            app: &app,
            item: &item,
            sid: sid.clone(),
            messages: Vec::new(),
        };
        let (end, outputs, meta) = run.execute(nth).await;
        let (status_str, completed) = if end == End::Success {
            ("success", true)
        } else {
            ("error", false)
        };
        let messages: Vec<Value> = run.messages.iter().map(|(e, d)| json!([e, d])).collect();
        let mut out_map = Map::new();
        let mut meta_map = Map::new();
        for ((id, ui), (mid, m)) in outputs.into_iter().zip(meta) {
            out_map.insert(id, ui);
            meta_map.insert(mid, m);
        }
        let entry = json!({
            "prompt": item.to_json(),
            "outputs": out_map,
            "status": {"status_str": status_str, "completed": completed, "messages": messages},
            "meta": meta_map,
        });
        {
            let mut inner = app.lock();
            inner.running = None;
            inner.current_node = None;
            inner.history.retain(|(k, _)| *k != item.prompt_id);
            inner.history.push((item.prompt_id.clone(), entry));
            if inner.history.len() > 10_000 {
                inner.history.remove(0);
            }
        }
        app.log(&format!(
            "Prompt executed in {:.2} seconds",
            started.elapsed().as_secs_f64()
        ));
        app.queue_updated();
        if let Some(sid) = &sid {
            app.send(
                "executing",
                json!({"node": null, "prompt_id": item.prompt_id}),
                Some(sid),
            );
        }
    }
}

struct Run<'a> {
    app: &'a App,
    item: &'a QueueItem,
    sid: Option<String>,
    messages: Vec<(String, Value)>,
}

type Ui = Vec<(String, Value)>;

impl Run<'_> {
    /// ComfyUI's `add_message`: recorded in history; sent to the client, or
    /// broadcast when there is no client and `broadcast` is set.
    fn add_message(&mut self, event: &str, data: Value, broadcast: bool) {
        self.messages.push((event.to_string(), data.clone()));
        if self.sid.is_some() || broadcast {
            self.app.send(event, data, self.sid.as_deref());
        }
    }

    fn to_client(&self, event: &str, data: Value) {
        if let Some(sid) = &self.sid {
            self.app.send(event, data, Some(sid));
        }
    }

    fn progress_state(&self, progress: &[(String, Value, Value, &str)]) {
        let pid = &self.item.prompt_id;
        let nodes: Map<String, Value> = progress
            .iter()
            .map(|(id, value, max, state)| {
                (id.clone(), json!({"value": value, "max": max, "state": state, "node_id": id, "prompt_id": pid, "display_node_id": id, "parent_node_id": null, "real_node_id": id}))
            })
            .collect();
        self.app.send(
            "progress_state",
            json!({"prompt_id": pid, "nodes": nodes}),
            self.sid.as_deref(),
        );
    }

    async fn hang_if_needed(&self) {
        if self.app.hung.load(Ordering::Relaxed) {
            std::future::pending::<()>().await;
        }
    }

    async fn execute(&mut self, nth: u64) -> (End, Ui, Ui) {
        let app = self.app;
        let pid = self.item.prompt_id.clone();
        let prompt = &self.item.prompt;
        app.interrupt.store(false, Ordering::SeqCst);
        self.add_message(
            "execution_start",
            json!({"prompt_id": pid, "timestamp": now_ms()}),
            false,
        );
        if let Some(f) = &app.cfg.oom_file {
            // Removing it is the claim: of several stand-ins, one dies.
            if std::fs::remove_file(f).is_ok() {
                eprintln!("!!! Exception during processing !!! CUDA out of memory. Tried to allocate 2.00 GiB.");
                eprintln!("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 23.55 GiB of which 1.12 GiB is free.");
                std::process::exit(1);
            }
        }
        if app.cfg.crash_after_prompts == Some(nth) {
            faults::crash(&app.cfg, &format!("STANDIN_CRASH_AFTER_PROMPTS={nth}"));
        }
        // Signatures and the execution cache (ComfyUI's classic cache keeps
        // only the nodes of the current prompt).
        let mut sigs = HashMap::new();
        for id in prompt.keys() {
            signature(prompt, id, &mut sigs, 0);
        }
        let cached: HashSet<String> = {
            let mut inner = app.lock();
            let keep: HashSet<&String> = sigs.values().collect();
            inner.cache.retain(|k, _| keep.contains(k));
            prompt
                .keys()
                .filter(|id| inner.cache.contains_key(&sigs[*id]))
                .cloned()
                .collect()
        };
        self.add_message(
            "execution_cached",
            json!({"nodes": sorted_ids(cached.iter()), "prompt_id": pid, "timestamp": now_ms()}),
            false,
        );

        let order = execution_order(prompt, &self.item.outputs, &cached);
        let fail_last = if app.cfg.fail_execution {
            order.iter().rev().find(|id| !cached.contains(*id)).cloned()
        } else {
            None
        };
        let mut values: HashMap<String, Vec<Val>> = {
            let inner = app.lock();
            cached
                .iter()
                .filter_map(|id| {
                    inner
                        .cache
                        .get(&sigs[id])
                        .map(|o| (id.clone(), o.values.clone()))
                })
                .collect()
        };
        let mut progress: Vec<(String, Value, Value, &str)> = Vec::new();
        let mut executed: Vec<String> = Vec::new();
        let mut ui_out: Ui = Vec::new();
        let mut meta: Ui = Vec::new();
        let node_time = app.cfg.node_time();
        // Sleeps are counted from one clock, so a long chain of short nodes
        // takes its nominal time instead of gaining a timer tick per node.
        let mut due = tokio::time::Instant::now() + app.cfg.prompt_time();
        tokio::time::sleep_until(due).await;
        for id in &order {
            self.hang_if_needed().await;
            let node = &prompt[id];
            let class = node["class_type"].as_str().unwrap_or("").to_string();
            if cached.contains(id) {
                let hit = app.lock().cache.get(&sigs[id]).cloned();
                if let Some(hit) = hit {
                    if let Some(ui) = hit.ui {
                        self.to_client(
                            "executed",
                            json!({"node": id, "display_node": id, "output": ui, "prompt_id": pid}),
                        );
                        ui_out.push((id.clone(), ui));
                        meta.push((id.clone(), meta_of(id)));
                    }
                    values.insert(id.clone(), hit.values);
                }
                progress.push((id.clone(), json!(1), json!(1), "finished"));
                self.progress_state(&progress);
                continue;
            }
            app.lock().current_node = Some((id.clone(), self.sid.clone()));
            progress.push((id.clone(), json!(0.0), json!(1.0), "running"));
            self.progress_state(&progress);
            self.to_client(
                "executing",
                json!({"node": id, "display_node": id, "prompt_id": pid}),
            );
            let interrupted = |executed: &Vec<String>| json!({"prompt_id": pid, "node_id": id, "node_type": class, "executed": executed, "timestamp": now_ms()});
            if app.interrupt.load(Ordering::SeqCst) {
                let data = interrupted(&executed);
                self.add_message("execution_interrupted", data, true);
                return (End::Failed, ui_out, meta);
            }
            // A loader reads its file first unless it is held in memory; a
            // sampler takes a node's time per step of it.
            due += self.load_models(&class, node);
            let node_time = node_time * sampler_steps(&class, node);
            let steps = app.cfg.progress_steps;
            if steps == 0 {
                due += node_time;
                tokio::time::sleep_until(due).await;
            } else {
                for step in 1..=steps {
                    due += node_time / steps;
                    tokio::time::sleep_until(due).await;
                    self.hang_if_needed().await;
                    if app.interrupt.load(Ordering::SeqCst) {
                        let data = interrupted(&executed);
                        self.add_message("execution_interrupted", data, true);
                        return (End::Failed, ui_out, meta);
                    }
                    if let Some(last) = progress.last_mut() {
                        last.1 = json!(step);
                        last.2 = json!(steps);
                    }
                    self.progress_state(&progress);
                    let progress_frame = || {
                        app.send(
                            "progress",
                            json!({"value": step, "max": steps, "prompt_id": pid, "node": id}),
                            self.sid.as_deref(),
                        )
                    };
                    match (app.cfg.previews, self.sid.as_deref()) {
                        (true, Some(sid)) => {
                            // A 16×16 image whose red channel is the step.
                            let png = crate::png::solid(16, 16, [step.min(255) as u8, 0, 0], &[]);
                            let meta = json!({"node_id": id, "prompt_id": pid, "display_node_id": id, "parent_node_id": null, "real_node_id": id});
                            // Type 4 comes before the step's progress, type 1 after.
                            if app.announced_preview_metadata(sid) {
                                app.send_preview(sid, meta, &png);
                                progress_frame();
                            } else {
                                progress_frame();
                                app.send_preview(sid, meta, &png);
                            }
                        }
                        _ => progress_frame(),
                    }
                }
            }
            let inputs = resolve_inputs(node, &values);
            let result = if app.cfg.fail_node.as_deref() == Some(class.as_str())
                || fail_last.as_deref() == Some(id.as_str())
            {
                Err(NodeError {
                    kind: "RuntimeError".into(),
                    message: format!("comfyui-standin: simulated failure in node {id} ({class})\n"),
                })
            } else {
                self.run_node(&class, &inputs)
            };
            match result {
                Err(e) => {
                    let current_inputs: Map<String, Value> = inputs
                        .iter()
                        .map(|(k, v)| (k.clone(), json!([describe(v)])))
                        .collect();
                    let data = json!({
                        "prompt_id": pid, "node_id": id, "node_type": class, "executed": executed,
                        "exception_message": e.message, "exception_type": e.kind,
                        "traceback": [format!("  File \"/opt/comfy/ComfyUI/execution.py\", line 496, in execute\n    (comfyui-standin {class})\n")],
                        "current_inputs": current_inputs, "current_outputs": prompt.keys().collect::<Vec<_>>(), "timestamp": now_ms(),
                    });
                    self.add_message("execution_error", data, false);
                    return (End::Failed, ui_out, meta);
                }
                Ok(out) => {
                    if let Some(ui) = &out.ui {
                        self.to_client(
                            "executed",
                            json!({"node": id, "display_node": id, "output": ui, "prompt_id": pid}),
                        );
                        ui_out.push((id.clone(), ui.clone()));
                        meta.push((id.clone(), meta_of(id)));
                    }
                    values.insert(id.clone(), out.values.clone());
                    app.lock().cache.insert(sigs[id].clone(), out);
                    executed.push(id.clone());
                    if let Some(last) = progress.last_mut() {
                        *last = (id.clone(), json!(1.0), json!(1.0), "finished");
                    }
                    self.progress_state(&progress);
                }
            }
        }
        self.add_message(
            "execution_success",
            json!({"prompt_id": pid, "timestamp": now_ms()}),
            false,
        );
        (End::Success, ui_out, meta)
    }

    /// How long the node's model files take to load (none when held).
    fn load_models(&self, class: &str, node: &Value) -> std::time::Duration {
        let app = self.app;
        let mut total = std::time::Duration::ZERO;
        for input in crate::models::file_input(class) {
            let Some(file) = node
                .pointer(&format!("/inputs/{input}"))
                .and_then(Value::as_str)
            else {
                continue;
            };
            let Some(path) = crate::models::find(&app.dirs.models, class, input, file) else {
                continue;
            };
            let fixed = std::time::Duration::from_millis(app.cfg.model_load_ms);
            let (took, read) = app.held.lock().unwrap_or_else(|p| p.into_inner()).load(
                &path,
                fixed,
                app.cfg.model_read_mbps,
            );
            if read {
                app.log(&format!("Requested to load {file}"));
                app.log(&format!("loaded completely in {:.2} s", took.as_secs_f64()));
            }
            total += took;
        }
        total
    }

    fn run_node(&self, class: &str, inputs: &[(String, Val)]) -> Result<NodeOutput, NodeError> {
        let get = |name: &str| {
            inputs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or(Val::None)
        };
        let lit = |name: &str| match get(name) {
            Val::Lit(v) => v,
            _ => Value::Null,
        };
        let num = |name: &str, d: u64| lit(name).as_f64().map(|f| f.max(0.0) as u64).unwrap_or(d);
        let first_image = || {
            inputs.iter().find_map(|(_, v)| match v {
                Val::Image { .. } => Some(v.clone()),
                Val::Mask { w, h, batch } => Some(Val::Image {
                    w: *w,
                    h: *h,
                    batch: *batch,
                    color: 0,
                }),
                _ => None,
            })
        };
        let default_image = Val::Image {
            w: 64,
            h: 64,
            batch: 1,
            color: 0,
        };
        let plain = |values: Vec<Val>| Ok(NodeOutput { values, ui: None });
        match class {
            "EmptyImage" => plain(vec![Val::Image {
                w: num("width", 512) as u32,
                h: num("height", 512) as u32,
                batch: num("batch_size", 1).clamp(1, 64) as u32,
                color: num("color", 0) as u32,
            }]),
            "ImageInvert" => plain(vec![match first_image().unwrap_or(default_image) {
                Val::Image { w, h, batch, color } => Val::Image {
                    w,
                    h,
                    batch,
                    color: !color & 0xFF_FFFF,
                },
                v => v,
            }]),
            "ImageScale" | "ImageScaleBy" => {
                plain(vec![match first_image().unwrap_or(default_image) {
                    Val::Image { w, h, batch, color } => {
                        let by = lit("scale_by").as_f64().unwrap_or(1.0);
                        let (nw, nh) = if class == "ImageScaleBy" {
                            ((w as f64 * by) as u32, (h as f64 * by) as u32)
                        } else {
                            (num("width", 0) as u32, num("height", 0) as u32)
                        };
                        let (nw, nh) = match (nw, nh) {
                            (0, 0) => (w, h),
                            (0, nh) => ((w as u64 * nh as u64 / h.max(1) as u64) as u32, nh),
                            (nw, 0) => (nw, (h as u64 * nw as u64 / w.max(1) as u64) as u32),
                            x => x,
                        };
                        Val::Image {
                            w: nw,
                            h: nh,
                            batch,
                            color,
                        }
                    }
                    v => v,
                }])
            }
            "ImageToMask" => match (lit("channel").as_str(), first_image()) {
                (Some("alpha"), _) => Err(NodeError {
                    kind: "IndexError".into(),
                    message: "index 3 is out of bounds for dimension 3 with size 3\n".into(),
                }),
                (_, Some(Val::Image { w, h, batch, .. })) => plain(vec![Val::Mask { w, h, batch }]),
                _ => plain(vec![Val::Mask {
                    w: 64,
                    h: 64,
                    batch: 1,
                }]),
            },
            "SaveImage" | "PreviewImage" => {
                let img = first_image().unwrap_or(default_image);
                let (dir, kind, prefix) = if class == "SaveImage" {
                    (
                        &self.app.dirs.output,
                        "output",
                        py_str(&lit("filename_prefix")),
                    )
                } else {
                    (
                        &self.app.dirs.temp,
                        "temp",
                        format!("ComfyUI_temp_{}", crate::state::random_letters(5)),
                    )
                };
                let prompt_json = Value::Object(self.item.prompt.clone()).to_string();
                let images = files::save_images(dir, &prefix, &img, &prompt_json).map_err(|e| {
                    NodeError {
                        kind: "Exception".into(),
                        message: e,
                    }
                })?;
                let list: Vec<Value> = images
                    .into_iter()
                    .map(|(f, s)| json!({"filename": f, "subfolder": s, "type": kind}))
                    .collect();
                Ok(NodeOutput {
                    values: vec![],
                    ui: Some(json!({ "images": list })),
                })
            }
            "LoadImage" => {
                let name = py_str(&lit("image"));
                let (name, dir) = files::annotated(&name, &self.app.dirs);
                let path = dir.unwrap_or(&self.app.dirs.input).join(&name);
                let data = std::fs::read(&path).map_err(|e| NodeError {
                    kind: "FileNotFoundError".into(),
                    message: format!(
                        "[Errno 2] No such file or directory: '{}' ({e})",
                        path.display()
                    ),
                })?;
                let (w, h) = crate::png::dimensions(&data).unwrap_or((64, 64));
                plain(vec![
                    Val::Image {
                        w,
                        h,
                        batch: 1,
                        color: 0,
                    },
                    Val::Mask { w, h, batch: 1 },
                ])
            }
            "PrimitiveString"
            | "PrimitiveStringMultiline"
            | "PrimitiveInt"
            | "PrimitiveFloat"
            | "PrimitiveBoolean" => plain(vec![Val::Lit(lit("value"))]),
            "StringConcatenate" => {
                let s = |n: &str| match get(n) {
                    Val::Lit(v) => py_str(&v),
                    _ => String::new(),
                };
                plain(vec![Val::Lit(json!(format!(
                    "{}{}{}",
                    s("string_a"),
                    s("delimiter"),
                    s("string_b")
                )))])
            }
            "PreviewAny" => Ok(NodeOutput {
                values: vec![],
                ui: Some(json!({"text": [describe(&get("source"))]})),
            }),
            _ => {
                let outs = self.app.object_info[class]["output"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let values = outs
                    .iter()
                    .map(|t| match t.as_str() {
                        Some("IMAGE") => first_image().unwrap_or(default_image.clone()),
                        Some("STRING") => Val::Lit(json!("")),
                        _ => Val::None,
                    })
                    .collect();
                plain(values)
            }
        }
    }
}

/// The steps of a sampler node (its time is a node's time per step); 1 for
/// any other node.
fn sampler_steps(class: &str, node: &Value) -> u32 {
    if !class.starts_with("KSampler") && !class.starts_with("SamplerCustom") {
        return 1;
    }
    node.pointer("/inputs/steps")
        .and_then(Value::as_u64)
        .map_or(1, |s| s.clamp(1, 10_000) as u32)
}

fn meta_of(id: &str) -> Value {
    json!({"node_id": id, "display_node": id, "parent_node": null, "real_node_id": id})
}

fn describe(v: &Val) -> String {
    match v {
        Val::Image { w, h, batch, .. } => format!("tensor of shape [{batch}, {h}, {w}, 3]"),
        Val::Mask { w, h, batch } => format!("tensor of shape [{batch}, {h}, {w}]"),
        Val::Lit(v) => py_str(v),
        Val::None => "None".into(),
    }
}

fn resolve_inputs(node: &Value, values: &HashMap<String, Vec<Val>>) -> Vec<(String, Val)> {
    let Some(inputs) = node["inputs"].as_object() else {
        return vec![];
    };
    inputs
        .iter()
        .map(|(k, v)| {
            let val = match v.as_array() {
                Some(l) if l.len() == 2 && l[0].is_string() => {
                    let src = values.get(l[0].as_str().unwrap_or(""));
                    src.and_then(|o| o.get(l[1].as_u64().unwrap_or(0) as usize))
                        .cloned()
                        .unwrap_or(Val::None)
                }
                _ => Val::Lit(v.clone()),
            };
            (k.clone(), val)
        })
        .collect()
}

/// A node's cache key: class, literal inputs and the signatures of linked nodes.
fn signature(
    prompt: &Map<String, Value>,
    id: &str,
    memo: &mut HashMap<String, String>,
    depth: u32,
) -> String {
    if let Some(s) = memo.get(id) {
        return s.clone();
    }
    let node = &prompt[id];
    let mut parts = vec![py_repr(&node["class_type"])];
    if let Some(inputs) = node["inputs"].as_object() {
        for (k, v) in inputs {
            let linked = v.as_array().filter(|l| l.len() == 2).and_then(|l| {
                l[0].as_str()
                    .filter(|s| prompt.contains_key(*s))
                    .map(|s| (s.to_string(), l[1].clone()))
            });
            let s = match linked {
                Some((src, slot)) if depth < 512 => {
                    format!("{k}=<{}>[{slot}]", signature(prompt, &src, memo, depth + 1))
                }
                _ => format!("{k}={v}"),
            };
            parts.push(s);
        }
    }
    let s = parts.join(";");
    memo.insert(id.to_string(), s.clone());
    s
}

/// Dependencies first, outputs in id order; cached nodes are not expanded
/// (a cached output node is still visited to re-send its `executed`).
fn execution_order(
    prompt: &Map<String, Value>,
    outputs: &[String],
    cached: &HashSet<String>,
) -> Vec<String> {
    fn visit(
        prompt: &Map<String, Value>,
        id: &str,
        cached: &HashSet<String>,
        seen: &mut HashSet<String>,
        out: &mut Vec<String>,
    ) {
        if !seen.insert(id.to_string()) {
            return;
        }
        if !cached.contains(id) {
            if let Some(inputs) = prompt[id]["inputs"].as_object() {
                for v in inputs.values() {
                    if let Some(src) = v
                        .as_array()
                        .filter(|l| l.len() == 2)
                        .and_then(|l| l[0].as_str())
                    {
                        if prompt.contains_key(src) && !cached.contains(src) {
                            visit(prompt, src, cached, seen, out);
                        }
                    }
                }
            }
        }
        out.push(id.to_string());
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for o in sorted_ids(outputs.iter()) {
        visit(prompt, &o, cached, &mut seen, &mut out);
    }
    out
}

//! Models, as ComfyUI has them: files in `models/<folder>/` (listed by
//! `/models/<folder>` and, for each loader, in `/object_info`, so a prompt
//! naming a missing file is refused with `value_not_in_list`), a load that
//! takes time (a fixed part and the file's size over a read rate), and a
//! memory that holds a few models, the least recently used let go first.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

/// Each loader's file input and the folders it lists (ComfyUI's
/// `folder_paths` names), for the loaders of ComfyUI's own nodes.
pub const LOADERS: &[(&str, &str, &[&str])] = &[
    ("CheckpointLoaderSimple", "ckpt_name", &["checkpoints"]),
    ("CheckpointLoader", "ckpt_name", &["checkpoints"]),
    ("ImageOnlyCheckpointLoader", "ckpt_name", &["checkpoints"]),
    ("UNETLoader", "unet_name", &["diffusion_models", "unet"]),
    ("LoraLoader", "lora_name", &["loras"]),
    ("LoraLoaderModelOnly", "lora_name", &["loras"]),
    ("VAELoader", "vae_name", &["vae"]),
    ("CLIPLoader", "clip_name", &["text_encoders", "clip"]),
    ("DualCLIPLoader", "clip_name1", &["text_encoders", "clip"]),
    ("DualCLIPLoader", "clip_name2", &["text_encoders", "clip"]),
    ("CLIPVisionLoader", "clip_name", &["clip_vision"]),
    (
        "ControlNetLoader",
        "control_net_name",
        &["controlnet", "t2i_adapter"],
    ),
    ("StyleModelLoader", "style_model_name", &["style_models"]),
    ("UpscaleModelLoader", "model_name", &["upscale_models"]),
];

/// Model file extensions ComfyUI lists (`supported_pt_extensions`).
const EXTENSIONS: [&str; 7] = [
    ".ckpt",
    ".pt",
    ".pt2",
    ".bin",
    ".pth",
    ".safetensors",
    ".sft",
];

/// The files of one folder name, relative, sorted (subfolders with `/`).
pub fn list(models: &Path, folder: &str) -> Vec<String> {
    let mut out = Vec::new();
    walk(&models.join(folder), "", &mut out);
    out.sort();
    out
}

fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        if path.is_dir() {
            walk(&path, &format!("{prefix}{name}/"), out);
        } else if EXTENSIONS
            .iter()
            .any(|x| name.to_ascii_lowercase().ends_with(x))
        {
            out.push(format!("{prefix}{name}"));
        }
    }
}

/// Where a loader's file is, if there.
pub fn find(models: &Path, class: &str, input: &str, file: &str) -> Option<PathBuf> {
    if file.contains("..") {
        return None;
    }
    LOADERS
        .iter()
        .filter(|(c, i, _)| *c == class && *i == input)
        .flat_map(|(_, _, folders)| folders.iter())
        .map(|f| models.join(f).join(file))
        .find(|p| p.is_file())
}

/// The loader's file input of a class, if it is one.
pub fn file_input(class: &str) -> Vec<&'static str> {
    LOADERS
        .iter()
        .filter(|(c, _, _)| *c == class)
        .map(|(_, i, _)| *i)
        .collect()
}

/// `/object_info` with each loader's list holding the files there now,
/// made again only when the files changed.
pub struct Catalog {
    base: Arc<Value>,
    base_text: Arc<String>,
    models: PathBuf,
    hidden: Vec<String>,
    made: Mutex<Option<Made>>,
}

/// The files the catalog was made from, and it (as JSON and as text).
type Made = (BTreeMap<String, Vec<String>>, Arc<Value>, Arc<String>);

impl Catalog {
    pub fn new(base: Value, base_text: String, models: PathBuf, hidden: Vec<String>) -> Self {
        let mut base = base;
        if let Some(m) = base.as_object_mut() {
            for class in &hidden {
                m.remove(class);
            }
        }
        let base_text = if hidden.is_empty() {
            base_text
        } else {
            base.to_string()
        };
        Self {
            base: Arc::new(base),
            base_text: Arc::new(base_text),
            models,
            hidden,
            made: Mutex::new(None),
        }
    }

    /// The node classes as they are now, and as JSON text.
    pub fn now(&self) -> (Arc<Value>, Arc<String>) {
        let mut files: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (_, _, folders) in LOADERS {
            for f in *folders {
                if !files.contains_key(*f) {
                    files.insert(f.to_string(), list(&self.models, f));
                }
            }
        }
        if files.values().all(Vec::is_empty) {
            return (self.base.clone(), self.base_text.clone());
        }
        let mut made = self.made.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((seen, v, t)) = &*made {
            if *seen == files {
                return (v.clone(), t.clone());
            }
        }
        let mut info = (*self.base).clone();
        for (class, input, folders) in LOADERS {
            if self.hidden.iter().any(|h| h == class) {
                continue;
            }
            let listed: Vec<Value> = folders
                .iter()
                .flat_map(|f| files[*f].iter().cloned())
                .map(Value::String)
                .collect();
            let Some(spec) = info.pointer_mut(&format!("/{class}/input/required/{input}")) else {
                continue;
            };
            // `[[options], {..}]`, or the newer `["COMBO", {"options": [..]}]`.
            let list = if spec.get(0).is_some_and(Value::is_array) {
                spec.get_mut(0).and_then(Value::as_array_mut)
            } else {
                spec.pointer_mut("/1/options").and_then(Value::as_array_mut)
            };
            if let Some(list) = list {
                let kept: Vec<Value> = list.drain(..).filter(|o| !listed.contains(o)).collect();
                list.extend(listed);
                list.extend(kept);
            }
        }
        let text = Arc::new(info.to_string());
        let info = Arc::new(info);
        *made = Some((files, info.clone(), text.clone()));
        (info, text)
    }
}

/// The memory of loaded models: the last `capacity` files, oldest first.
pub struct Held {
    pub capacity: usize,
    pub files: Vec<PathBuf>,
}

impl Held {
    /// Loads `path` (or finds it held): how long that takes, and whether it
    /// was read from disk.
    pub fn load(&mut self, path: &Path, fixed: Duration, read_mbps: f64) -> (Duration, bool) {
        if let Some(k) = self.files.iter().position(|p| p == path) {
            let p = self.files.remove(k);
            self.files.push(p);
            return (Duration::ZERO, false);
        }
        let bytes = std::fs::metadata(path).map_or(0, |m| m.len());
        let read = if read_mbps > 0.0 {
            Duration::from_secs_f64(bytes as f64 / (read_mbps * 1e6))
        } else {
            Duration::ZERO
        };
        self.files.push(path.to_path_buf());
        while self.files.len() > self.capacity.max(1) {
            self.files.remove(0);
        }
        (fixed + read, true)
    }
}

//! Models: what a job needs (its node classes and the model files its
//! loader nodes name) and what an instance offers (its node classes and,
//! for each input that takes one of a list, the list: ComfyUI's
//! `/object_info`). Pure: the queue keeps an [`Offer`] per instance and
//! the [`Needs`] of each job, and placement reads both.
//!
//! A model file is a literal input whose name ends in `_name` (or is
//! `clip_name1`..`4`) and whose value has a model file's extension: the
//! inputs of `CheckpointLoaderSimple`, `UNETLoader`, `LoraLoader`,
//! `VAELoader`, `CLIPLoader`, `ControlNetLoader`, `UpscaleModelLoader`
//! and the custom loaders that follow ComfyUI's naming.

use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// The extensions ComfyUI lists as model files (`folder_paths.supported_pt_extensions`, and GGUF).
const MODEL_EXTENSIONS: [&str; 8] = [
    ".safetensors",
    ".ckpt",
    ".pt",
    ".pt2",
    ".pth",
    ".bin",
    ".sft",
    ".gguf",
];

/// One model file a workflow names, and where: the loader node, its class
/// and its input.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModelRef {
    pub node: String,
    pub class: String,
    pub input: String,
    pub file: String,
}

/// What a job needs of an instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    /// Every node class of its workflow.
    pub classes: BTreeSet<String>,
    /// The model files its loaders name, each once, in node order.
    pub models: Vec<ModelRef>,
}

impl Needs {
    /// Reads them from an API-format workflow.
    pub fn of(workflow: &Value) -> Self {
        let mut needs = Needs::default();
        let Some(nodes) = workflow.as_object() else {
            return needs;
        };
        let mut ids: Vec<&String> = nodes.keys().collect();
        ids.sort_by_key(|id| (id.parse::<u64>().unwrap_or(u64::MAX), id.as_str()));
        for id in ids {
            let node = &nodes[id];
            let Some(class) = node.get("class_type").and_then(Value::as_str) else {
                continue;
            };
            needs.classes.insert(class.to_string());
            let Some(inputs) = node.get("inputs").and_then(Value::as_object) else {
                continue;
            };
            for (input, value) in inputs {
                let Some(file) = value.as_str() else {
                    continue;
                };
                if is_model_input(input) && is_model_file(file) {
                    let m = ModelRef {
                        node: id.clone(),
                        class: class.to_string(),
                        input: input.clone(),
                        file: file.to_string(),
                    };
                    if !needs.models.contains(&m) {
                        needs.models.push(m);
                    }
                }
            }
        }
        needs
    }

    /// The model files, each once.
    pub fn files(&self) -> BTreeSet<&str> {
        self.models.iter().map(|m| m.file.as_str()).collect()
    }

    /// The file the loader node `node` loads, if it is one.
    pub fn loaded_by(&self, node: &str) -> Option<&str> {
        self.models
            .iter()
            .find(|m| m.node == node)
            .map(|m| m.file.as_str())
    }
}

/// Seconds a model's load is expected to take before it was measured on an
/// instance, by what its loader loads: published load times on a local SSD
/// (SD1.5 checkpoints 6-8 s, SDXL 4-60 s, Flux diffusion models 10-90 s;
/// LoRAs and VAEs about a second). Measures replace it (see
/// `QueueState::learn_load`).
pub fn prior_load_secs(m: &ModelRef) -> f64 {
    match m.input.as_str() {
        "ckpt_name" => 8.0,
        "unet_name" => 15.0,
        "lora_name" | "vae_name" => 1.0,
        i if i.starts_with("clip_name") => 5.0,
        _ => 2.0,
    }
}

fn is_model_input(name: &str) -> bool {
    name.ends_with("_name")
        || name
            .strip_prefix("clip_name")
            .is_some_and(|n| n.parse::<u8>().is_ok())
}

fn is_model_file(value: &str) -> bool {
    let v = value.to_ascii_lowercase();
    MODEL_EXTENSIONS.iter().any(|e| v.ends_with(e))
}

/// What an instance offers: per node class, the lists its inputs choose
/// from (model files among them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Offer {
    classes: HashMap<String, HashMap<String, HashSet<String>>>,
}

/// Why an instance cannot run a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    /// It has no node class of this name (a custom node not installed).
    Class(String),
    /// Its loader does not list the file (not in its `models/` folders).
    Model(ModelRef),
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Class(c) => write!(f, "the node class \"{c}\""),
            Self::Model(m) => write!(f, "the model file \"{}\" ({}.{})", m.file, m.class, m.input),
        }
    }
}

impl Offer {
    /// Reads `/object_info`: each class, and each input given as a list
    /// (`[[options], {..}]`) or as ComfyUI's newer `["COMBO", {"options": [..]}]`.
    pub fn from_object_info(info: &Map<String, Value>) -> Self {
        let mut classes = HashMap::new();
        for (class, spec) in info {
            let mut lists: HashMap<String, HashSet<String>> = HashMap::new();
            for group in ["required", "optional"] {
                let Some(inputs) = spec
                    .pointer(&format!("/input/{group}"))
                    .and_then(Value::as_object)
                else {
                    continue;
                };
                for (name, input) in inputs {
                    if let Some(options) = combo_options(input) {
                        lists.insert(name.clone(), options);
                    }
                }
            }
            classes.insert(class.clone(), lists);
        }
        Self { classes }
    }

    /// The first thing of `needs` this instance lacks, if any.
    pub fn lacks(&self, needs: &Needs) -> Option<Missing> {
        if let Some(c) = needs
            .classes
            .iter()
            .find(|c| !self.classes.contains_key(*c))
        {
            return Some(Missing::Class(c.clone()));
        }
        needs
            .models
            .iter()
            .find(|m| {
                self.classes
                    .get(&m.class)
                    .and_then(|inputs| inputs.get(&m.input))
                    // An input that is no list here (a custom loader taking
                    // a path as text) cannot be judged: not held against it.
                    .is_some_and(|files| !files.contains(&m.file))
            })
            .cloned()
            .map(Missing::Model)
    }

    /// The model files its loaders list, by the input that lists them.
    pub fn model_files(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for inputs in self.classes.values() {
            for (input, options) in inputs {
                if !is_model_input(input) {
                    continue;
                }
                let files = options.iter().filter(|o| is_model_file(o)).cloned();
                out.entry(input.clone()).or_default().extend(files);
            }
        }
        out.retain(|_, files| !files.is_empty());
        out
    }

    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }
}

fn combo_options(input: &Value) -> Option<HashSet<String>> {
    Some(
        combo_list(input)?
            .iter()
            .filter_map(|o| o.as_str().map(str::to_string))
            .collect(),
    )
}

/// The options of an input given as a list: `[[options], {..}]`, or
/// ComfyUI's newer `["COMBO", {"options": [..]}]`.
fn combo_list(input: &Value) -> Option<&Vec<Value>> {
    match input.get(0)? {
        Value::Array(list) => Some(list),
        Value::String(kind) if kind == "COMBO" => input.pointer("/1/options")?.as_array(),
        _ => None,
    }
}

fn combo_list_mut(input: &mut Value) -> Option<&mut Vec<Value>> {
    if input.get(0).is_some_and(Value::is_array) {
        input.get_mut(0)?.as_array_mut()
    } else if input.get(0).and_then(Value::as_str) == Some("COMBO") {
        input.pointer_mut("/1/options")?.as_array_mut()
    } else {
        None
    }
}

/// The `/object_info` of a fleet: every class any instance has; where two
/// describe the same input as a list, the lists joined (each file once, in
/// the order first seen), so a client sees every model any instance offers.
pub fn merge_object_info(infos: &[Map<String, Value>]) -> Map<String, Value> {
    let mut out: Map<String, Value> = Map::new();
    for info in infos {
        for (class, spec) in info {
            match out.get_mut(class) {
                None => {
                    out.insert(class.clone(), spec.clone());
                }
                Some(have) => join_lists(have, spec),
            }
        }
    }
    out
}

fn join_lists(have: &mut Value, other: &Value) {
    for group in ["required", "optional"] {
        let Some(theirs) = other
            .pointer(&format!("/input/{group}"))
            .and_then(Value::as_object)
        else {
            continue;
        };
        let Some(mine) = have
            .pointer_mut(&format!("/input/{group}"))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        for (name, input) in theirs {
            let Some(extra) = combo_list(input) else {
                continue;
            };
            let Some(target) = mine.get_mut(name) else {
                mine.insert(name.clone(), input.clone());
                continue;
            };
            if let Some(list) = combo_list_mut(target) {
                for o in extra {
                    if !list.contains(o) {
                        list.push(o.clone());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn info() -> Map<String, Value> {
        json!({
            "CheckpointLoaderSimple": {"input": {"required": {"ckpt_name": [["sdxl.safetensors", "sd15.ckpt"], {"tooltip": "x"}]}}},
            "UpscaleModelLoader": {"input": {"required": {"model_name": ["COMBO", {"multiselect": false, "options": ["4x.pth"]}]}}},
            "VAELoader": {"input": {"required": {"vae_name": [["pixel_space"]]}}},
            "KSampler": {"input": {"required": {"steps": ["INT", {"default": 20}]}}},
            "SaveImage": {"input": {"required": {"filename_prefix": ["STRING", {}]}}}
        })
        .as_object()
        .unwrap()
        .clone()
    }

    fn workflow(ckpt: &str) -> Value {
        json!({
            "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
            "3": {"class_type": "KSampler", "inputs": {"steps": 20, "model": ["4", 0]}},
            "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x", "images": ["3", 0]}},
            "10": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "4x.pth"}},
            "11": {"class_type": "VAELoader", "inputs": {"vae_name": "pixel_space"}}
        })
    }

    #[test]
    fn a_workflows_loaders_name_its_model_files() {
        let n = Needs::of(&workflow("sdxl.safetensors"));
        assert_eq!(
            n.files().into_iter().collect::<Vec<_>>(),
            ["4x.pth", "sdxl.safetensors"]
        );
        assert_eq!(n.models[0].class, "CheckpointLoaderSimple", "in node order");
        assert!(n.classes.contains("KSampler"));
        assert!(!n.files().contains("pixel_space"), "not a file");
    }

    #[test]
    fn an_instance_without_the_file_or_the_class_lacks_it() {
        let offer = Offer::from_object_info(&info());
        assert_eq!(offer.lacks(&Needs::of(&workflow("sdxl.safetensors"))), None);
        assert_eq!(
            offer.lacks(&Needs::of(&workflow("flux.safetensors"))),
            Some(Missing::Model(ModelRef {
                node: "4".into(),
                class: "CheckpointLoaderSimple".into(),
                input: "ckpt_name".into(),
                file: "flux.safetensors".into()
            }))
        );
        let mut w = workflow("sdxl.safetensors");
        w["12"] = json!({"class_type": "IPAdapterApply", "inputs": {}});
        assert_eq!(
            offer.lacks(&Needs::of(&w)),
            Some(Missing::Class("IPAdapterApply".into()))
        );
        assert_eq!(
            offer.model_files()["ckpt_name"].iter().collect::<Vec<_>>(),
            ["sd15.ckpt", "sdxl.safetensors"]
        );
    }

    #[test]
    fn the_fleets_object_info_joins_every_instances_lists() {
        let mut other = info();
        other["CheckpointLoaderSimple"] = json!({"input": {"required": {"ckpt_name": [["flux.safetensors", "sdxl.safetensors"], {}]}}});
        other["UpscaleModelLoader"] =
            json!({"input": {"required": {"model_name": ["COMBO", {"options": ["2x.pth"]}]}}});
        other.insert("OnlyHere".into(), json!({"input": {"required": {}}}));
        let merged = merge_object_info(&[info(), other]);
        assert_eq!(
            merged["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0],
            json!(["sdxl.safetensors", "sd15.ckpt", "flux.safetensors"])
        );
        assert_eq!(
            merged["UpscaleModelLoader"]["input"]["required"]["model_name"][1]["options"],
            json!(["4x.pth", "2x.pth"])
        );
        assert!(merged.contains_key("OnlyHere"));
        let offer = Offer::from_object_info(&merged);
        assert_eq!(offer.lacks(&Needs::of(&workflow("flux.safetensors"))), None);
    }
}

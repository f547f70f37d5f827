//! `POST /prompt`'s validation against an `/object_info`, following
//! `execution.validate_prompt` / `validate_inputs`: the same refusals, with
//! the same bodies, as `tests/comfyui-api/errors/` recorded.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

/// Python's `str()` of a JSON value (as it appears in ComfyUI messages).
pub fn py_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => py_repr(other),
    }
}

/// Python's `repr()` of a JSON value.
pub fn py_repr(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(b) => if *b { "True" } else { "False" }.into(),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) if !n.is_f64() => i.to_string(),
            (_, Some(f)) => py_float(f),
            _ => n.to_string(),
        },
        Value::String(s) => {
            if s.contains('\'') && !s.contains('"') {
                format!("\"{s}\"")
            } else {
                format!(
                    "'{}'",
                    s.replace('\\', "\\\\")
                        .replace('\'', "\\'")
                        .replace('\n', "\\n")
                )
            }
        }
        Value::Array(a) => format!("[{}]", a.iter().map(py_repr).collect::<Vec<_>>().join(", ")),
        Value::Object(o) => format!(
            "{{{}}}",
            o.iter()
                .map(|(k, v)| format!("{}: {}", py_repr(&json!(k)), py_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

pub fn py_float(f: f64) -> String {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e16 {
        format!("{f:.1}")
    } else {
        format!("{f}")
    }
}

/// An exception raised while validating (ComfyUI catches it and reports it).
struct PyException {
    kind: &'static str,
    message: String,
}

type Reasons = Vec<Value>;

pub enum Outcome {
    /// 200: outputs to execute and (possibly non-empty) node_errors.
    Ok {
        outputs: Vec<String>,
        node_errors: Value,
    },
    /// 400 with `{"error": ..., "node_errors": ...}`.
    Invalid { error: Value, node_errors: Value },
}

fn top_error(kind: &str, message: &str, details: &str) -> Value {
    json!({"type": kind, "message": message, "details": details, "extra_info": {}})
}

fn node_sort_key(id: &str) -> (u64, String) {
    (id.parse::<u64>().unwrap_or(u64::MAX), id.to_string())
}

pub fn sorted_ids<'a>(ids: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut v: Vec<String> = ids.cloned().collect();
    v.sort_by_key(|a| node_sort_key(a));
    v
}

/// A node class's own check of one input (ComfyUI's `VALIDATE_INPUTS`),
/// which takes the place of the list check: given the class, the input's
/// name, its value and the list `/object_info` gives (if any), `None` when
/// the class has no such check for it, else its verdict (`Err`: ComfyUI's
/// `custom_validation_failed` with that reason).
pub type CustomCheck<'a> =
    &'a dyn Fn(&str, &str, &Value, Option<&[Value]>) -> Option<Result<(), String>>;

/// No class checks an input itself.
pub fn no_custom_checks(
    _: &str,
    _: &str,
    _: &Value,
    _: Option<&[Value]>,
) -> Option<Result<(), String>> {
    None
}

/// Whether `class` checks its `input` itself as ComfyUI's image loaders do
/// (`LoadImage.VALIDATE_INPUTS`: the image file must exist; the list of
/// the input folder's files is not consulted).
pub fn checks_image_file(class: &str, input: &str) -> bool {
    matches!(class, "LoadImage" | "LoadImageMask" | "LoadImageOutput") && input == "image"
}

/// The image loaders' reason when the file is not there.
pub fn invalid_image_file(value: &Value) -> String {
    format!("Invalid image file: {}", py_str(value))
}

struct Validator<'a> {
    prompt: &'a mut Map<String, Value>,
    info: &'a Value,
    custom: CustomCheck<'a>,
    validated: Vec<(String, (bool, Reasons))>,
}

const KEYERROR_TRACEBACK: [&str; 2] = [
    "  File \"/opt/comfy/ComfyUI/execution.py\", line 1010, in validate_prompt\n    m = await validate_inputs(prompt_id, prompt, o, validated)\n        ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n",
    "  File \"/opt/comfy/ComfyUI/execution.py\", line 788, in validate_inputs\n    o_class_type = prompt[o_id]['class_type']\n                   ~~~~~~^^^^^^\n",
];

impl Validator<'_> {
    fn memo(&self, id: &str) -> Option<(bool, Reasons)> {
        self.validated
            .iter()
            .find(|(k, _)| k == id)
            .map(|(_, v)| v.clone())
    }

    fn set(&mut self, id: &str, v: (bool, Reasons)) {
        match self.validated.iter_mut().find(|(k, _)| k == id) {
            Some(slot) => slot.1 = v,
            None => self.validated.push((id.to_string(), v)),
        }
    }

    fn class_of(&self, id: &str) -> Option<String> {
        self.prompt
            .get(id)?
            .get("class_type")?
            .as_str()
            .map(String::from)
    }

    fn combo_options(def: &Value) -> Option<&Vec<Value>> {
        match def.get(0) {
            Some(Value::Array(list)) => Some(list),
            Some(Value::String(s)) if s == "COMBO" => {
                def.get(1)?.get("options").and_then(Value::as_array)
            }
            _ => None,
        }
    }

    fn validate_inputs(&mut self, id: &str) -> Result<(bool, Reasons), PyException> {
        if let Some(v) = self.memo(id) {
            return Ok(v);
        }
        let class = self.class_of(id).unwrap_or_default();
        let class_info = &self.info[&class];
        let Some(inputs) = self.prompt.get(id).and_then(|n| n.get("inputs")).cloned() else {
            return Err(PyException {
                kind: "KeyError",
                message: "'inputs'".into(),
            });
        };
        let mut errors: Reasons = Vec::new();
        let mut custom_errors: Reasons = Vec::new();
        let mut valid = true;
        let mut defs: Vec<(String, Value, bool)> = Vec::new();
        for (cat, required) in [("required", true), ("optional", false)] {
            if let Some(m) = class_info["input"][cat].as_object() {
                defs.extend(m.iter().map(|(k, v)| (k.clone(), v.clone(), required)));
            }
        }
        for (x, def, required) in defs {
            let input_type = def.get(0).cloned().unwrap_or(Value::Null);
            let extra = def.get(1).cloned().unwrap_or(json!({}));
            // ComfyUI reports `input_config` as (input_type, extra_info).
            let def = json!([input_type, extra]);
            let Some(val) = inputs.get(&x).cloned() else {
                if required {
                    errors.push(json!({"type": "required_input_missing", "message": "Required input is missing", "details": x, "extra_info": {"input_name": x}}));
                }
                continue;
            };
            if let Value::Array(link) = &val {
                if link.len() != 2 {
                    errors.push(json!({"type": "bad_linked_input", "message": "Bad linked input, must be a length-2 list of [node_id, slot_index]", "details": x, "extra_info": {"input_name": x, "input_config": def, "received_value": val}}));
                    continue;
                }
                let o_id = py_str(&link[0]);
                let Some(o_class) = (link[0].is_string())
                    .then(|| self.class_of(&o_id))
                    .flatten()
                else {
                    return Err(PyException {
                        kind: "KeyError",
                        message: py_repr(&link[0]),
                    });
                };
                let outs = self.info[&o_class]["output"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let Some(received) = link[1].as_u64().and_then(|i| outs.get(i as usize)).cloned()
                else {
                    return Err(PyException {
                        kind: "IndexError",
                        message: "tuple index out of range".into(),
                    });
                };
                if !types_match(&received, &input_type) {
                    let details = format!(
                        "{x}, received_type({}) mismatch input_type({})",
                        py_str(&received),
                        py_str(&input_type)
                    );
                    errors.push(json!({"type": "return_type_mismatch", "message": "Return type mismatch between linked nodes", "details": details, "extra_info": {"input_name": x, "input_config": def, "received_type": received, "linked_node": val}}));
                    continue;
                }
                match self.validate_inputs(&o_id) {
                    Ok((true, _)) => {}
                    Ok((false, _)) => valid = false,
                    Err(ex) => {
                        valid = false;
                        let r = json!({"type": "exception_during_inner_validation", "message": "Exception when validating inner node", "details": ex.message, "extra_info": {"exception_type": ex.kind, "traceback": KEYERROR_TRACEBACK}});
                        self.set(&o_id, (false, vec![r]));
                    }
                }
                continue;
            }
            let mut val = match val {
                Value::Object(ref o) if o.contains_key("__value__") => o["__value__"].clone(),
                v => v,
            };
            let ty = input_type.as_str().unwrap_or("");
            let coerced = match ty {
                "INT" => py_int(&val).map(|i| json!(i)),
                "FLOAT" => py_float_conv(&val).map(|f| json!(f)),
                "STRING" => Ok(json!(py_str(&val))),
                "BOOLEAN" => Ok(json!(truthy(&val))),
                _ => Ok(val.clone()),
            };
            match coerced {
                Ok(v) => {
                    val = v;
                    if let Some(Value::Object(n)) = self.prompt.get_mut(id) {
                        if let Some(Value::Object(ins)) = n.get_mut("inputs") {
                            ins.insert(x.clone(), val.clone());
                        }
                    }
                }
                Err(msg) => {
                    errors.push(json!({"type": "invalid_input_type", "message": format!("Failed to convert an input value to a {ty} value"), "details": format!("{x}, {}, {msg}", py_str(&val)), "extra_info": {"input_name": x, "input_config": def, "received_value": val, "exception_message": msg}}));
                    continue;
                }
            }
            if let (Some(v), Some(min)) = (val.as_f64(), extra.get("min").and_then(Value::as_f64)) {
                if v < min {
                    errors.push(json!({"type": "value_smaller_than_min", "message": format!("Value {} smaller than min of {}", py_str(&val), py_str(&extra["min"])), "details": x, "extra_info": {"input_name": x, "input_config": def, "received_value": val}}));
                    continue;
                }
            }
            if let (Some(v), Some(max)) = (val.as_f64(), extra.get("max").and_then(Value::as_f64)) {
                if v > max {
                    errors.push(json!({"type": "value_bigger_than_max", "message": format!("Value {} bigger than max of {}", py_str(&val), py_str(&extra["max"])), "details": x, "extra_info": {"input_name": x, "input_config": def, "received_value": val}}));
                    continue;
                }
            }
            let options = Self::combo_options(&def);
            if let Some(verdict) = (self.custom)(&class, &x, &val, options.map(Vec::as_slice)) {
                // Reported after the other inputs' reasons, as ComfyUI
                // calls VALIDATE_INPUTS after its own checks.
                if let Err(why) = verdict {
                    custom_errors.push(json!({"type": "custom_validation_failed", "message": "Custom validation failed for node", "details": format!("{x} - {why}"), "extra_info": {"input_name": x}}));
                }
                continue;
            }
            if let Some(options) = options {
                let found = options
                    .iter()
                    .any(|o| o == &val || (o.as_f64().is_some() && o.as_f64() == val.as_f64()));
                if !found {
                    let (list_info, config) = if options.len() > 20 {
                        (format!("(list of length {})", options.len()), Value::Null)
                    } else {
                        (py_repr(&Value::Array(options.clone())), def.clone())
                    };
                    errors.push(json!({"type": "value_not_in_list", "message": "Value not in list", "details": format!("{x}: {} not in {list_info}", py_repr(&val)), "extra_info": {"input_name": x, "input_config": config, "received_value": val}}));
                }
            }
        }
        errors.extend(custom_errors);
        let result = (errors.is_empty() && valid, errors);
        self.set(id, result.clone());
        Ok(result)
    }
}

/// Python truthiness of `v[k]` (missing = false).
pub fn truthy_field(v: &Value, k: &str) -> bool {
    v.get(k).is_some_and(truthy)
}

pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "NoneType",
        Value::Object(_) => "dict",
        Value::Array(_) => "list",
        _ => "str",
    }
}

fn py_int(v: &Value) -> Result<i64, String> {
    match v {
        Value::Bool(b) => Ok(i64::from(*b)),
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f.trunc() as i64))
            .ok_or_else(|| "int too large".into()),
        Value::String(s) => s
            .trim()
            .replace('_', "")
            .parse::<i64>()
            .map_err(|_| format!("invalid literal for int() with base 10: {}", py_repr(v))),
        other => Err(format!(
            "int() argument must be a string, a bytes-like object or a real number, not '{}'",
            type_name(other)
        )),
    }
}

fn py_float_conv(v: &Value) -> Result<f64, String> {
    match v {
        Value::Bool(b) => Ok(f64::from(u8::from(*b))),
        Value::Number(n) => n.as_f64().ok_or_else(|| "bad number".into()),
        Value::String(s) => s
            .trim()
            .parse::<f64>()
            .map_err(|_| format!("could not convert string to float: {}", py_repr(v))),
        other => Err(format!(
            "float() argument must be a string or a real number, not '{}'",
            type_name(other)
        )),
    }
}

/// ComfyUI's `validate_node_input`: equal, `*`, or a subset of a comma list.
fn types_match(received: &Value, input: &Value) -> bool {
    match (received, input) {
        (_, Value::Array(_)) => true,
        (Value::String(r), Value::String(i)) => {
            if r == i || r == "*" || i == "*" {
                return true;
            }
            let want: Vec<&str> = i.split(',').map(str::trim).collect();
            r.split(',').map(str::trim).all(|t| want.contains(&t))
        }
        (r, i) => r == i,
    }
}

/// The real server raises on this prompt (aiohttp answers HTTP 500).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerRaises;

/// Validates `prompt` in place (coerced widget values are written back, as
/// ComfyUI does) against `info` (an `/object_info`). `Err` means the
/// real server raises (HTTP 500).
pub fn validate(
    prompt: &mut Map<String, Value>,
    info: &Value,
    custom: CustomCheck<'_>,
) -> Result<Outcome, ServerRaises> {
    let invalid = |error| Outcome::Invalid {
        error,
        node_errors: json!({}),
    };
    let mut outputs = Vec::new();
    for id in sorted_ids(prompt.keys()) {
        let class = match &prompt[&id] {
            Value::Object(n) => n.get("class_type").cloned(),
            Value::String(s) if s.contains("class_type") => return Err(ServerRaises),
            Value::String(_) | Value::Array(_) => None,
            _ => return Err(ServerRaises),
        };
        let Some(class) = class else {
            return Ok(invalid(top_error(
                "invalid_prompt",
                "Cannot execute because a node is missing the class_type property.",
                &format!("Node ID '#{id}'"),
            )));
        };
        let name = py_str(&class);
        if !class.is_string() || info.get(&name).is_none() {
            return Ok(invalid(top_error(
                "invalid_prompt",
                &format!("Cannot execute because node {name} does not exist."),
                &format!("Node ID '#{id}'"),
            )));
        }
        if info[&name]["output_node"] == json!(true) {
            outputs.push(id);
        }
    }
    if outputs.is_empty() {
        return Ok(invalid(top_error(
            "prompt_no_outputs",
            "Prompt has no outputs",
            "",
        )));
    }
    let mut v = Validator {
        prompt,
        info,
        custom,
        validated: Vec::new(),
    };
    let mut good = Vec::new();
    let mut errors: Vec<(String, Reasons)> = Vec::new();
    let mut node_errors: Map<String, Value> = Map::new();
    let mut dependents: HashMap<String, Vec<String>> = HashMap::new();
    for o in &outputs {
        let (ok, reasons) = match v.validate_inputs(o) {
            Ok(r) => r,
            Err(ex) => {
                let r = vec![
                    json!({"type": "exception_during_validation", "message": "Exception when validating node", "details": ex.message, "extra_info": {"exception_type": ex.kind, "traceback": KEYERROR_TRACEBACK}}),
                ];
                v.set(o, (false, r.clone()));
                (false, r)
            }
        };
        if ok {
            good.push(o.clone());
            continue;
        }
        if !reasons.is_empty() {
            errors.push((o.clone(), reasons));
        }
        for (node_id, (ok, reasons)) in &v.validated {
            if !ok && !reasons.is_empty() {
                if !node_errors.contains_key(node_id) {
                    let class = v.class_of(node_id).unwrap_or_default();
                    node_errors.insert(
                        node_id.clone(),
                        json!({"errors": reasons, "dependent_outputs": [], "class_type": class}),
                    );
                }
                dependents
                    .entry(node_id.clone())
                    .or_default()
                    .push(o.clone());
            }
        }
    }
    for (id, deps) in dependents {
        if let Some(e) = node_errors.get_mut(&id) {
            e["dependent_outputs"] = json!(deps);
        }
    }
    if good.is_empty() {
        let details: Vec<String> = errors
            .iter()
            .flat_map(|(_, rs)| {
                rs.iter()
                    .map(|r| format!("{}: {}", py_str(&r["message"]), py_str(&r["details"])))
            })
            .collect();
        return Ok(Outcome::Invalid {
            error: json!({"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation", "details": details.join("\n"), "extra_info": {}}),
            node_errors: Value::Object(node_errors),
        });
    }
    Ok(Outcome::Ok {
        outputs: good,
        node_errors: Value::Object(node_errors),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_reprs() {
        assert_eq!(py_repr(&json!(["a", "b'"])), "['a', \"b'\"]");
        assert_eq!(py_str(&json!(-5)), "-5");
        assert_eq!(py_str(&json!(10.0)), "10.0");
        assert_eq!(
            py_int(&json!("abc")),
            Err("invalid literal for int() with base 10: 'abc'".into())
        );
        assert_eq!(py_int(&json!("64")), Ok(64));
        assert!(types_match(&json!("IMAGE"), &json!("IMAGE,MASK")));
        assert!(!types_match(&json!("STRING"), &json!("IMAGE")));
    }
}

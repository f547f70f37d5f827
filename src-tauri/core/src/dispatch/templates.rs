//! Templates: an API-format workflow with named parameters bound to node
//! inputs. Import a workflow, mark parameters, save, run with values. Kept as
//! `<dir>/templates/<id>.json`; the built-in smoke test ships in the code.

use super::error::DispatchError;
use super::workflow::check_workflow;
use crate::store::{atomic_write, StoreError};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use storycore_types::{
    ParameterType, TemplateDraft, TemplateParameter, WorkflowFile, WorkflowInput, WorkflowTemplate,
};

/// Workflow files bigger than this are refused before reading: API-format
/// workflows are kilobytes; a bigger file is almost surely the wrong file.
pub const MAX_WORKFLOW_FILE_BYTES: u64 = super::workflow::MAX_WORKFLOW_BYTES as u64;
/// A template's name, description and parameter names.
const MAX_TEMPLATE_NAME: usize = 100;
const MAX_TEMPLATE_DESCRIPTION: usize = 2000;

pub const SMOKE_TEST_ID: &str = "builtin-smoke-test";
pub const TEMPLATES_FOLDER: &str = "templates";

fn err(id: &str, reason: impl Into<String>) -> DispatchError {
    DispatchError::Template {
        id: id.to_string(),
        reason: reason.into(),
    }
}

/// Runs on any ComfyUI, with no model files: an empty image, saved.
pub fn smoke_test_template() -> WorkflowTemplate {
    let p =
        |name: &str, node: &str, input: &str, kind, default: Value, d: &str| TemplateParameter {
            name: name.into(),
            node_id: node.into(),
            input: input.into(),
            kind,
            default,
            description: Some(d.into()),
        };
    WorkflowTemplate {
        id: SMOKE_TEST_ID.into(),
        name: "Smoke test (no models needed)".into(),
        description: Some("Makes a plain image and saves it: proves an instance runs work.".into()),
        workflow: json!({
            "1": {"class_type": "EmptyImage",
                  "inputs": {"width": 512, "height": 512, "batch_size": 1, "color": 0}},
            "2": {"class_type": "SaveImage",
                  "inputs": {"images": ["1", 0], "filename_prefix": "storycore_smoke"}}
        }),
        parameters: vec![
            p(
                "width",
                "1",
                "width",
                ParameterType::Int,
                json!(512),
                "Image width in pixels",
            ),
            p(
                "height",
                "1",
                "height",
                ParameterType::Int,
                json!(512),
                "Image height in pixels",
            ),
            p(
                "color",
                "1",
                "color",
                ParameterType::Int,
                json!(0),
                "Colour as 0xRRGGBB",
            ),
            p(
                "filenamePrefix",
                "2",
                "filename_prefix",
                ParameterType::String,
                json!("storycore_smoke"),
                "Output file name prefix",
            ),
        ],
        built_in: true,
        project_id: None,
        pinned_instances: Vec::new(),
    }
}

/// A template without parameters from a workflow file's text.
pub fn from_workflow_json(
    id: &str,
    name: &str,
    text: &str,
) -> Result<WorkflowTemplate, DispatchError> {
    check_id(id)?;
    let workflow = super::workflow::parse_workflow(text)?;
    Ok(WorkflowTemplate {
        id: id.into(),
        name: name.trim().into(),
        description: None,
        workflow,
        parameters: Vec::new(),
        built_in: false,
        project_id: None,
        pinned_instances: Vec::new(),
    })
}

/// Every plain-valued input of the workflow (what can become a parameter),
/// in node order (numeric ids by number) then input name.
pub fn markable_inputs(workflow: &Value) -> Vec<WorkflowInput> {
    let mut out = Vec::new();
    let Some(nodes) = workflow.as_object() else {
        return out;
    };
    for (node_id, node) in nodes {
        let class_type = node
            .get("class_type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let Some(inputs) = node.get("inputs").and_then(Value::as_object) else {
            continue;
        };
        for (input, value) in inputs {
            if let Some(kind) = type_of(value) {
                out.push(WorkflowInput {
                    node_id: node_id.clone(),
                    class_type: class_type.clone(),
                    input: input.clone(),
                    kind,
                    value: value.clone(),
                });
            }
        }
    }
    let key = |i: &WorkflowInput| {
        (
            i.node_id.parse::<u64>().unwrap_or(u64::MAX),
            i.node_id.clone(),
        )
    };
    out.sort_by(|a, b| key(a).cmp(&key(b)).then_with(|| a.input.cmp(&b.input)));
    out
}

/// Reads a workflow file for import: refuses what is missing, a folder, too
/// big, not UTF-8, not JSON or not in API format, saying which and why.
pub fn read_workflow_file(path: &Path) -> Result<WorkflowFile, DispatchError> {
    use crate::store::{human_size, read_regular, ReadProblem};
    let shown = crate::model::quote(&path.display().to_string());
    let choose = "choose the .json file ComfyUI's \"Save (API)\" wrote";
    let bytes = match read_regular(path, MAX_WORKFLOW_FILE_BYTES) {
        Ok(Some(b)) => b,
        Ok(None) => {
            return Err(DispatchError::bad(format!(
                "{shown} does not exist: check the path, or {choose}"
            )))
        }
        Err(ReadProblem::NotAFile(what)) => {
            return Err(DispatchError::bad(format!("{shown} is {what}; {choose}")))
        }
        Err(ReadProblem::TooBig { limit }) => {
            return Err(DispatchError::bad(format!(
                "{shown} is larger than {}, the most a workflow file may be; an API-format workflow is a small JSON file: {choose}",
                human_size(limit)
            )))
        }
        Err(ReadProblem::Io(source)) => {
            return Err(DispatchError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let text = String::from_utf8(bytes)
        .map_err(|_| DispatchError::bad(format!("{shown} is not a text (UTF-8) file")))?;
    let workflow = super::workflow::parse_workflow(&text)?;
    Ok(WorkflowFile {
        path: path.display().to_string(),
        inputs: markable_inputs(&workflow),
        workflow,
    })
}

/// Binds `name` to `input` of node `node_id`; its default is the workflow's
/// current value, its type that value's unless given.
pub fn mark_parameter(
    t: &mut WorkflowTemplate,
    name: &str,
    node_id: &str,
    input: &str,
    kind: Option<ParameterType>,
) -> Result<(), DispatchError> {
    if name.trim().is_empty() {
        return Err(err(&t.id, "a parameter needs a name"));
    }
    text_ok(&t.id, "the parameter name", name, MAX_TEMPLATE_NAME, false)?;
    if t.parameters.iter().any(|p| p.name == name) {
        return Err(err(
            &t.id,
            format!("there is already a parameter named \"{name}\""),
        ));
    }
    // The input's name is a key, taken literally ("a/b" is one name), as
    // the workflow is filled in when the template runs.
    let current = t
        .workflow
        .get(node_id)
        .ok_or_else(|| err(&t.id, format!("the workflow has no node \"{node_id}\"")))?
        .get("inputs")
        .and_then(|inputs| inputs.get(input))
        .ok_or_else(|| {
            err(
                &t.id,
                format!("node \"{node_id}\" has no input \"{input}\""),
            )
        })?
        .clone();
    if current.is_array() {
        return Err(err(
            &t.id,
            format!(
                "input \"{input}\" of node \"{node_id}\" is a link to another node, not a value"
            ),
        ));
    }
    let inferred = type_of(&current)
        .ok_or_else(|| err(&t.id, format!("input \"{input}\" holds no plain value")))?;
    let kind = kind.unwrap_or(inferred);
    if !fits(kind, &current) {
        return Err(err(
            &t.id,
            format!("the current value {current} is not a {kind:?}"),
        ));
    }
    t.parameters.push(TemplateParameter {
        name: name.into(),
        node_id: node_id.into(),
        input: input.into(),
        kind,
        default: current,
        description: None,
    });
    Ok(())
}

/// The workflow with `values` (by parameter name) filled in; missing ones
/// take their default. Unknown names and wrong types are refused.
pub fn render(t: &WorkflowTemplate, values: &Map<String, Value>) -> Result<Value, DispatchError> {
    for k in values.keys() {
        if !t.parameters.iter().any(|p| &p.name == k) {
            return Err(err(&t.id, format!("it has no parameter \"{k}\"")));
        }
    }
    let mut wf = t.workflow.clone();
    for p in &t.parameters {
        let v = values.get(&p.name).unwrap_or(&p.default);
        if !fits(p.kind, v) {
            return Err(err(
                &t.id,
                format!("parameter \"{}\" must be a {:?}, got {v}", p.name, p.kind),
            ));
        }
        let slot = wf
            .get_mut(&p.node_id)
            .and_then(|n| n.get_mut("inputs"))
            .and_then(Value::as_object_mut)
            .ok_or_else(|| {
                err(
                    &t.id,
                    format!("parameter \"{}\" points at a missing node", p.name),
                )
            })?;
        slot.insert(p.input.clone(), v.clone());
    }
    Ok(wf)
}

fn type_of(v: &Value) -> Option<ParameterType> {
    Some(match v {
        Value::String(_) => ParameterType::String,
        Value::Bool(_) => ParameterType::Bool,
        Value::Number(n) if n.is_i64() || n.is_u64() => ParameterType::Int,
        Value::Number(_) => ParameterType::Float,
        _ => return None,
    })
}

fn fits(kind: ParameterType, v: &Value) -> bool {
    match kind {
        ParameterType::String => v.is_string(),
        ParameterType::Bool => v.is_boolean(),
        ParameterType::Int => v.is_i64() || v.is_u64(),
        ParameterType::Float => v.is_number(),
    }
}

fn check_id(id: &str) -> Result<(), DispatchError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(err(id, "an id is 1-64 letters, digits, - or _"))
    }
}

/// Where a project's own templates are kept: `<root>/projects/<id>/templates/`.
pub fn project_templates_dir(root: &Path, project_id: &str) -> PathBuf {
    root.join(PROJECTS_FOLDER)
        .join(project_id)
        .join(TEMPLATES_FOLDER)
}

pub const PROJECTS_FOLDER: &str = "projects";

/// The saved templates of `<dir>/templates/`, plus the built-in ones, and,
/// for a project ([`in_project`](Self::in_project)), the project's own.
#[derive(Debug, Clone)]
pub struct TemplateStore {
    dir: PathBuf,
    /// The project's id and templates folder.
    project: Option<(String, PathBuf)>,
}

impl TemplateStore {
    pub fn new(root: &Path) -> Self {
        Self {
            dir: root.join(TEMPLATES_FOLDER),
            project: None,
        }
    }

    /// The global templates and those of project `project_id`; templates
    /// created through it belong to the project.
    pub fn in_project(root: &Path, project_id: &str) -> Self {
        Self {
            dir: root.join(TEMPLATES_FOLDER),
            project: Some((
                project_id.to_string(),
                project_templates_dir(root, project_id),
            )),
        }
    }

    /// Built-in first, then global ones, then the project's, each by name.
    pub fn list(&self) -> Vec<WorkflowTemplate> {
        let (mut out, problems) = self.read_all();
        for p in problems {
            tracing::warn!("{p}");
        }
        out.insert(0, smoke_test_template());
        out
    }

    /// Saved template files that cannot be read, each with why: they are not
    /// in the list, and the user should know (shown as startup notices).
    pub fn unreadable(&self) -> Vec<String> {
        self.read_all().1
    }

    fn read_all(&self) -> (Vec<WorkflowTemplate>, Vec<String>) {
        let (mut saved, mut problems) = read_folder(&self.dir);
        for t in &mut saved {
            t.project_id = None;
        }
        if let Some((id, dir)) = &self.project {
            let (mut own, p) = read_folder(dir);
            for t in &mut own {
                t.project_id = Some(id.clone());
            }
            saved.extend(own);
            problems.extend(p);
        }
        (saved, problems)
    }

    /// The folder a template is (or would be) kept in.
    fn folder_of(&self, t: &WorkflowTemplate) -> Result<&Path, DispatchError> {
        match (&t.project_id, &self.project) {
            (None, _) => Ok(&self.dir),
            (Some(p), Some((id, dir))) if p == id => Ok(dir),
            (Some(p), _) => Err(err(
                &t.id,
                format!("it belongs to project \"{p}\", which is not the current one"),
            )),
        }
    }

    /// Pins a saved template to instances (none: any instance): its jobs
    /// run only there, and wait, saying why, while none of them can.
    pub fn set_pins(&self, id: &str, pins: Vec<String>) -> Result<WorkflowTemplate, DispatchError> {
        if id == SMOKE_TEST_ID {
            return Err(err(
                id,
                "the built-in template cannot be pinned; import a copy of it and pin that",
            ));
        }
        let mut t = self
            .get(id)
            .ok_or_else(|| err(id, "there is no such template"))?;
        let mut seen = std::collections::HashSet::new();
        t.pinned_instances = pins
            .into_iter()
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty() && seen.insert(p.clone()))
            .collect();
        self.save(&t)?;
        Ok(t)
    }

    pub fn get(&self, id: &str) -> Option<WorkflowTemplate> {
        self.list().into_iter().find(|t| t.id == id)
    }

    pub fn save(&self, t: &WorkflowTemplate) -> Result<(), DispatchError> {
        check_id(&t.id)?;
        if t.built_in || t.id == SMOKE_TEST_ID {
            return Err(err(
                &t.id,
                "built-in templates cannot be overwritten; save a copy under another id",
            ));
        }
        check_workflow(&t.workflow)?;
        render(t, &Map::new())?;
        let dir = self.folder_of(t)?;
        crate::privacy::create_private_dir(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(format!("{}.json", t.id));
        let bytes = serde_json::to_vec_pretty(t).map_err(|source| StoreError::Encode {
            path: path.clone(),
            source,
        })?;
        Ok(atomic_write(&path, &bytes)?)
    }

    /// Saves a new template from an imported workflow and its marked
    /// parameters. Its id comes from the name (made unique); a second
    /// template of the same name is refused so the list stays readable.
    pub fn create(&self, draft: &TemplateDraft) -> Result<WorkflowTemplate, DispatchError> {
        let name = draft.name.trim();
        if name.is_empty() {
            return Err(err("", "give the template a name"));
        }
        text_ok("", "the template name", name, MAX_TEMPLATE_NAME, false)?;
        if let Some(d) = &draft.description {
            text_ok("", "the description", d, MAX_TEMPLATE_DESCRIPTION, true)?;
        }
        let existing = self.list();
        if existing.iter().any(|t| t.name.eq_ignore_ascii_case(name)) {
            return Err(err(
                "",
                format!("there is already a template named \"{name}\"; choose another name"),
            ));
        }
        check_workflow(&draft.workflow)?;
        let base = slug(name);
        let mut id = base.clone();
        let mut n = 2;
        let taken = |id: &str| {
            existing.iter().any(|t| t.id == id)
                || self.dir.join(format!("{id}.json")).exists()
                || self
                    .project
                    .as_ref()
                    .is_some_and(|(_, d)| d.join(format!("{id}.json")).exists())
        };
        while taken(&id) {
            id = format!("{base}-{n}");
            n += 1;
        }
        let mut t = WorkflowTemplate {
            id,
            name: name.into(),
            description: draft
                .description
                .as_deref()
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .map(Into::into),
            workflow: draft.workflow.clone(),
            parameters: Vec::new(),
            built_in: false,
            project_id: self.project.as_ref().map(|(id, _)| id.clone()),
            pinned_instances: Vec::new(),
        };
        for m in &draft.parameters {
            mark_parameter(&mut t, m.name.trim(), &m.node_id, &m.input, m.kind)?;
            if let Some(p) = t.parameters.last_mut() {
                p.description = m.description.clone().filter(|d| !d.trim().is_empty());
            }
        }
        self.save(&t)?;
        Ok(t)
    }

    pub fn delete(&self, id: &str) -> Result<(), DispatchError> {
        check_id(id)?;
        if id == SMOKE_TEST_ID {
            return Err(err(id, "built-in templates cannot be deleted"));
        }
        let t = self
            .get(id)
            .ok_or_else(|| err(id, "there is no such template"))?;
        let path = self.folder_of(&t)?.join(format!("{id}.json"));
        std::fs::remove_file(&path).map_err(|source| DispatchError::Read { path, source })
    }
}

/// The templates saved in one folder, by name, and the files that cannot be read.
fn read_folder(dir: &Path) -> (Vec<WorkflowTemplate>, Vec<String>) {
    let mut saved = Vec::new();
    let mut problems = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (saved, problems);
    };
    for e in entries.flatten() {
        if !e.file_name().to_string_lossy().ends_with(".json") {
            continue;
        }
        let path = e.path();
        let read = crate::store::read_regular(&path, MAX_WORKFLOW_FILE_BYTES * 2)
            .map_err(|p| p.to_string())
            .and_then(|b| b.ok_or_else(|| "it vanished".to_string()))
            .and_then(|b| {
                serde_json::from_slice::<WorkflowTemplate>(&b).map_err(|e| e.to_string())
            });
        match read {
            Ok(t) => saved.push(t),
            Err(why) => problems.push(format!(
                "the template file {} cannot be read ({why}); it is not in the list: fix or delete it",
                path.display()
            )),
        }
    }
    saved.sort_by(|a, b| a.name.cmp(&b.name));
    (saved, problems)
}

/// A name or description: not too long, no control characters, and (a
/// name) something visible.
fn text_ok(
    id: &str,
    what: &str,
    value: &str,
    max_chars: usize,
    multiline: bool,
) -> Result<(), DispatchError> {
    let mut errors = Vec::new();
    let rules = crate::model::TextRules {
        max_chars,
        multiline,
        required: !multiline,
    };
    crate::model::check_text("", what, value, rules, &mut errors);
    match errors.pop() {
        Some(e) => Err(err(id, capitalised_off(&e.message))),
        None => Ok(()),
    }
}

/// "The name is..." reads as "template x: the name is...".
fn capitalised_off(message: &str) -> String {
    let mut c = message.chars();
    match c.next() {
        Some(first) => first.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// A file-name-safe id from a name: lower-case letters and digits joined by -.
fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let out: String = out.chars().take(48).collect();
    let out = out.trim_matches('-');
    if out.is_empty() {
        "template".into()
    } else {
        out.into()
    }
}

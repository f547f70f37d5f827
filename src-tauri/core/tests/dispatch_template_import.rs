//! Importing a workflow file as a template: reading the file (with a clear
//! refusal for each kind of wrong file), the inputs it offers for marking, and
//! saving the draft with its marked parameters (nothing saved when refused).

use serde_json::{json, Map};
use std::path::Path;
use storycore_core::dispatch::templates::{self, TemplateStore, SMOKE_TEST_ID};
use storycore_types::{ParameterMark, ParameterType, TemplateDraft};

fn workflow() -> serde_json::Value {
    json!({
        "10": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "out"}},
        "2": {"class_type": "EmptyImage",
              "inputs": {"width": 512, "height": 256, "batch_size": 1, "color": 0}},
        "3": {"class_type": "Note", "inputs": {"strength": 0.5, "enabled": true}}
    })
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn mark(name: &str, node: &str, input: &str) -> ParameterMark {
    ParameterMark {
        name: name.into(),
        node_id: node.into(),
        input: input.into(),
        kind: None,
        description: None,
    }
}

#[test]
fn a_workflow_file_offers_its_plain_inputs_in_node_order() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "wf.json",
        serde_json::to_string_pretty(&workflow())
            .unwrap()
            .as_bytes(),
    );
    let f = templates::read_workflow_file(&p).unwrap();
    assert_eq!(f.workflow, workflow());
    let listed: Vec<(String, String, ParameterType)> = f
        .inputs
        .iter()
        .map(|i| (i.node_id.clone(), i.input.clone(), i.kind))
        .collect();
    let s = |a: &str, b: &str, k| (a.to_string(), b.to_string(), k);
    assert_eq!(
        listed,
        vec![
            s("2", "batch_size", ParameterType::Int),
            s("2", "color", ParameterType::Int),
            s("2", "height", ParameterType::Int),
            s("2", "width", ParameterType::Int),
            s("3", "enabled", ParameterType::Bool),
            s("3", "strength", ParameterType::Float),
            // Node 10 after node 3 (by number); its link input is not offered.
            s("10", "filename_prefix", ParameterType::String),
        ]
    );
    assert_eq!(f.inputs[0].class_type, "EmptyImage");
}

#[test]
fn wrong_files_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(std::path::PathBuf, &str)> = vec![
        (dir.path().join("missing.json"), "does not exist"),
        (dir.path().to_path_buf(), "is a folder"),
        (
            write(dir.path(), "bin.json", &[0xff, 0xfe, 0x00]),
            "not a text",
        ),
        (write(dir.path(), "half.json", b"{\"1\": {"), "not JSON"),
        (
            write(
                dir.path(),
                "editor.json",
                br#"{"nodes": [], "links": [], "version": 0.4}"#,
            ),
            "editor format",
        ),
        (write(dir.path(), "empty.json", b"{}"), "no nodes"),
    ];
    for (path, want) in cases {
        let e = templates::read_workflow_file(&path)
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{}: {e}", path.display());
    }
    let big = std::fs::File::create(dir.path().join("big.json")).unwrap();
    big.set_len(templates::MAX_WORKFLOW_FILE_BYTES + 1).unwrap();
    let e = templates::read_workflow_file(&dir.path().join("big.json"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("small JSON file"), "{e}");
}

#[test]
fn a_draft_is_saved_with_its_parameters_under_a_unique_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = TemplateStore::new(dir.path());
    let draft = TemplateDraft {
        name: "  Plain canvas!  ".into(),
        description: Some("A size test".into()),
        workflow: workflow(),
        parameters: vec![
            ParameterMark {
                description: Some("pixels".into()),
                ..mark("width", "2", "width")
            },
            ParameterMark {
                kind: Some(ParameterType::Float),
                ..mark("colour", "2", "color")
            },
            mark("prefix", "10", "filename_prefix"),
        ],
    };
    let t = store.create(&draft).unwrap();
    assert_eq!(t.id, "plain-canvas");
    assert_eq!(t.name, "Plain canvas!");
    assert_eq!(t.parameters.len(), 3);
    assert_eq!(t.parameters[0].default, json!(512));
    assert_eq!(t.parameters[0].description.as_deref(), Some("pixels"));
    assert_eq!(t.parameters[1].kind, ParameterType::Float);
    assert_eq!(store.get("plain-canvas").unwrap(), t, "saved as written");
    let mut values = Map::new();
    values.insert("width".into(), json!(64));
    let rendered = templates::render(&t, &values).unwrap();
    assert_eq!(rendered["2"]["inputs"]["width"], 64);

    // The same name again is refused; another name with the same slug gets a new id.
    let e = store.create(&draft).unwrap_err().to_string();
    assert!(e.contains("already a template named"), "{e}");
    let t2 = store
        .create(&TemplateDraft {
            name: "plain CANVAS!".into(),
            ..draft.clone()
        })
        .unwrap_err()
        .to_string();
    assert!(t2.contains("already a template named"), "case-blind: {t2}");
    let other = store
        .create(&TemplateDraft {
            name: "Plain, canvas".into(),
            ..draft.clone()
        })
        .unwrap();
    assert_eq!(other.id, "plain-canvas-2");
    assert_eq!(store.list().len(), 3, "the smoke test and two saved");
    assert_eq!(store.list()[0].id, SMOKE_TEST_ID);
}

#[test]
fn a_refused_draft_saves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = TemplateStore::new(dir.path());
    let base = TemplateDraft {
        name: "Canvas".into(),
        description: None,
        workflow: workflow(),
        parameters: vec![],
    };
    let refusals = [
        (
            TemplateDraft {
                name: "   ".into(),
                ..base.clone()
            },
            "give the template a name",
        ),
        (
            TemplateDraft {
                parameters: vec![mark("img", "10", "images")],
                ..base.clone()
            },
            "is a link",
        ),
        (
            TemplateDraft {
                parameters: vec![mark("w", "2", "width"), mark("w", "2", "height")],
                ..base.clone()
            },
            "already a parameter named",
        ),
        (
            TemplateDraft {
                parameters: vec![mark("w", "7", "width")],
                ..base.clone()
            },
            "no node \"7\"",
        ),
        (
            TemplateDraft {
                parameters: vec![ParameterMark {
                    kind: Some(ParameterType::String),
                    ..mark("w", "2", "width")
                }],
                ..base.clone()
            },
            "is not a String",
        ),
        (
            TemplateDraft {
                workflow: json!({"nodes": [], "links": []}),
                ..base.clone()
            },
            "editor format",
        ),
        (
            TemplateDraft {
                name: "Smoke test (no models needed)".into(),
                ..base.clone()
            },
            "already a template named",
        ),
    ];
    for (draft, want) in refusals {
        let e = store.create(&draft).unwrap_err().to_string();
        assert!(e.contains(want), "{want}: {e}");
    }
    assert_eq!(store.list().len(), 1, "only the built-in smoke test");
    assert!(
        !dir.path().join("templates").exists() || {
            std::fs::read_dir(dir.path().join("templates"))
                .unwrap()
                .next()
                .is_none()
        }
    );
}

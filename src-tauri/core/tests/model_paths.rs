//! Paths of instances the app launches, checked on real folders in a temp dir:
//! existing, absolute, canonical, ComfyUI's main.py, an executable Python.

use std::fs;
use std::path::Path;
use storycore_core::model::validate_config;
use storycore_types::InstanceConfig;

fn base() -> InstanceConfig {
    InstanceConfig::new("instance_002", "Second GPU", 8189)
}

/// The fields `c` is faulted on, in order.
fn fields(c: &InstanceConfig) -> Vec<String> {
    match validate_config(c, &[]) {
        Ok(()) => vec![],
        Err(errors) => errors.into_iter().map(|e| e.field).collect(),
    }
}

/// A ComfyUI folder with main.py and an executable "python" in a temp folder.
fn comfy_setup(root: &Path) -> (String, String) {
    let comfy = root.join("ComfyUI");
    fs::create_dir_all(comfy.join("custom_nodes")).unwrap();
    fs::write(comfy.join("main.py"), "print('hi')").unwrap();
    let python = root.join("python3");
    fs::write(&python, "#!/bin/sh\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&python, fs::Permissions::from_mode(0o755)).unwrap();
    }
    (
        comfy.to_string_lossy().into_owned(),
        python.to_string_lossy().into_owned(),
    )
}

/// What is wrong, how to make it wrong, and the fields then faulted.
type PathCase<'a> = (
    &'a str,
    Box<dyn Fn(&mut InstanceConfig) + 'a>,
    &'a [&'a str],
);

#[test]
fn paths_of_a_launched_instance_are_checked_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let (comfy, python) = comfy_setup(&root);
    let launched = |edit: &dyn Fn(&mut InstanceConfig)| {
        let mut c = base();
        c.comfyui_path = Some(comfy.clone());
        c.python_path = Some(python.clone());
        c.custom_nodes_path = Some(format!("{comfy}/custom_nodes"));
        edit(&mut c);
        fields(&c)
    };
    assert!(launched(&|_| {}).is_empty(), "{:?}", launched(&|_| {}));
    let no_main = root.join("empty");
    fs::create_dir(&no_main).unwrap();
    let cases: Vec<PathCase> = vec![
        (
            "folder without main.py",
            Box::new(|c| c.comfyui_path = Some(no_main.to_string_lossy().into())),
            &["comfyuiPath"],
        ),
        (
            "missing folder",
            Box::new(|c| c.comfyui_path = Some(format!("{comfy}-gone"))),
            &["comfyuiPath"],
        ),
        (
            "a file as folder",
            Box::new(|c| c.custom_nodes_path = Some(format!("{comfy}/main.py"))),
            &["customNodesPath"],
        ),
        (
            "dot-dot",
            Box::new(|c| c.custom_nodes_path = Some(format!("{comfy}/../ComfyUI/custom_nodes"))),
            &["customNodesPath"],
        ),
        (
            "relative",
            Box::new(|c| c.comfyui_path = Some("ComfyUI".into())),
            &["comfyuiPath"],
        ),
        (
            "python missing",
            Box::new(|c| c.python_path = Some(format!("{python}-gone"))),
            &["pythonPath"],
        ),
        (
            "python a folder",
            Box::new(|c| c.python_path = Some(comfy.clone())),
            &["pythonPath"],
        ),
        (
            "python not executable",
            Box::new(|c| c.python_path = Some(format!("{comfy}/main.py"))),
            &["pythonPath"],
        ),
    ];
    for (what, edit, expected) in &cases {
        assert_eq!(launched(edit.as_ref()), *expected, "{what}");
    }
    // The same bad paths on an instance attached on another host are not looked at.
    let mut remote = base();
    remote.host = Some("gpu.lan".into());
    remote.comfyui_path = Some(no_main.to_string_lossy().into());
    assert_eq!(fields(&remote), Vec::<String>::new());
}

#[cfg(unix)]
#[test]
fn symlinked_folders_are_refused_but_a_venv_python_link_is_fine() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let (comfy, python) = comfy_setup(&root);
    let link = root.join("comfy-link");
    std::os::unix::fs::symlink(&comfy, &link).unwrap();
    let venv_bin = root.join("venv/bin");
    fs::create_dir_all(&venv_bin).unwrap();
    std::os::unix::fs::symlink(&python, venv_bin.join("python")).unwrap();

    let mut c = base();
    c.comfyui_path = Some(link.to_string_lossy().into());
    let errors = validate_config(&c, &[]).unwrap_err();
    assert_eq!(errors[0].field, "comfyuiPath");
    assert!(
        errors[0].message.contains(&comfy),
        "names the real path: {}",
        errors[0].message
    );

    c.comfyui_path = Some(comfy.clone());
    c.python_path = Some(venv_bin.join("python").to_string_lossy().into());
    assert_eq!(validate_config(&c, &[]), Ok(()));
    // A link in the folder part is refused, though.
    c.python_path = Some(root.join("comfy-link/main.py").to_string_lossy().into());
    assert_eq!(validate_config(&c, &[]).unwrap_err()[0].field, "pythonPath");
}

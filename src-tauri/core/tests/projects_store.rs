//! `projects.json`: projects created, switched, saved like the instances
//! file (atomic, backup, corrupt-file recovery, a bad project set aside
//! alone, a newer app's file read-only), and the migration of old project
//! settings that name the single-instance server, run once.

use crate::dispatch_fleet;

use dispatch_fleet::open_manager;
use std::path::Path;
use storycore_core::projects::Projects;
use storycore_core::store::{ProjectStore, PROJECTS_BACKUP_NAME, PROJECTS_FILE_NAME};
use storycore_types::{InstanceDefaults, JobTarget, ProjectDraft};

fn draft(name: &str, folder: &Path) -> ProjectDraft {
    ProjectDraft {
        name: name.into(),
        folder: folder.to_string_lossy().into_owned(),
        ..ProjectDraft::default()
    }
}

fn names_in(dir: &Path, prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect();
    v.sort();
    v
}

#[test]
fn two_projects_are_created_switched_and_read_back() {
    let config = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let (p, notices, legacy) = Projects::open(config.path()).unwrap();
    assert!(notices.is_empty() && legacy.is_empty());
    assert!(p.list().projects.is_empty());

    let film = p
        .create(&draft("Film", &work.path().join("film")), &[])
        .unwrap();
    // The folder is made, and a new project becomes the current one.
    assert!(work.path().join("film").is_dir());
    assert_eq!(p.current().unwrap().id, film.id);
    assert_eq!(
        film.outputs_folder(),
        work.path().join("film/outputs").to_string_lossy()
    );
    let mut d = draft("Ads", &work.path().join("ads"));
    d.output_folder = Some(work.path().join("renders").to_string_lossy().into_owned());
    d.default_target = JobTarget::Active;
    d.instance_defaults = InstanceDefaults {
        extra_args: Some(vec!["--lowvram".into()]),
        ..InstanceDefaults::default()
    };
    let ads = p.create(&d, &[]).unwrap();
    assert_ne!(film.id, ads.id);
    assert_eq!(p.current().unwrap().id, ads.id);
    // A new instance while "Ads" is current starts with its defaults.
    assert_eq!(
        p.new_instance_config().extra_args,
        Some(vec!["--lowvram".to_string()])
    );
    p.set_current(Some(&film.id)).unwrap();
    assert_eq!(p.new_instance_config().extra_args, None);

    // Saved like the instances file: 0600, with the previous copy as backup.
    let file = config.path().join(PROJECTS_FILE_NAME);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(config.path().join(PROJECTS_BACKUP_NAME).is_file());

    let (again, notices, _) = Projects::open(config.path()).unwrap();
    assert!(notices.is_empty(), "{notices:?}");
    let list = again.list();
    assert_eq!(list.projects.len(), 2);
    assert_eq!(list.current_project_id.as_deref(), Some(film.id.as_str()));
    assert_eq!(list.projects[1].default_target, JobTarget::Active);
    assert_eq!(
        list.projects[1].output_folder.as_deref(),
        Some(work.path().join("renders").to_str().unwrap())
    );
}

#[test]
fn bad_drafts_are_refused_with_the_field_and_change_nothing() {
    let config = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let (p, ..) = Projects::open(config.path()).unwrap();
    p.create(&draft("Film", &work.path().join("film")), &[])
        .unwrap();
    let before = std::fs::read(config.path().join(PROJECTS_FILE_NAME)).unwrap();
    let file_there = work.path().join("a-file");
    std::fs::write(&file_there, b"x").unwrap();
    let mut bad_target = draft("Other", &work.path().join("o"));
    bad_target.default_target = JobTarget::Instance { id: "gone".into() };
    let mut bad_defaults = draft("Other", &work.path().join("o"));
    bad_defaults.instance_defaults.extra_args = Some(vec!["--listen".into()]);
    let cases = [
        (draft("  ", &work.path().join("x")), "name", "name"),
        (
            draft("film", &work.path().join("x")),
            "name",
            "already a project",
        ),
        (
            draft("Other", Path::new("relative/folder")),
            "folder",
            "relative",
        ),
        (draft("Other", &file_there), "folder", "is a file"),
        (bad_target, "defaultTarget", "does not exist"),
        (bad_defaults, "instanceDefaults.extraArgs[0]", "--listen"),
    ];
    for (d, field, says) in cases {
        let e = p.create(&d, &["gpu0".into()]).unwrap_err();
        let api = storycore_types::ApiError::from(e);
        assert_eq!(api.fields[0].field, field, "{api:?}");
        assert!(
            api.message.contains(says) || api.fields[0].message.contains(says),
            "{says}: {api:?}"
        );
    }
    assert_eq!(p.list().projects.len(), 1);
    assert_eq!(
        std::fs::read(config.path().join(PROJECTS_FILE_NAME)).unwrap(),
        before
    );
}

#[test]
fn a_corrupt_file_is_kept_aside_and_the_backup_loaded() {
    let config = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let (p, ..) = Projects::open(config.path()).unwrap();
    p.create(&draft("Film", &work.path().join("film")), &[])
        .unwrap();
    p.create(&draft("Ads", &work.path().join("ads")), &[])
        .unwrap();
    // A crash mid-write cannot do this (atomic writes); a disk or a hand edit can.
    std::fs::write(
        config.path().join(PROJECTS_FILE_NAME),
        b"{\"version\": \"1.0\", \"proj",
    )
    .unwrap();
    let (p, notices, _) = Projects::open(config.path()).unwrap();
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert!(notices[0].contains("could not be read"), "{notices:?}");
    assert!(notices[0].contains("backup"), "{notices:?}");
    // The backup is the file before the last save: one project.
    assert_eq!(p.list().projects.len(), 1);
    assert_eq!(names_in(config.path(), "projects.json.corrupt-").len(), 1);
    // And the folder is whole again.
    let reread = ProjectStore::new(config.path()).load().unwrap();
    assert!(reread.notices.is_empty(), "{:?}", reread.notices);
}

#[test]
fn a_project_that_breaks_the_rules_is_set_aside_alone() {
    let config = tempfile::tempdir().unwrap();
    std::fs::write(
        config.path().join(PROJECTS_FILE_NAME),
        r#"{"version": "1.0", "currentProjectId": "p2", "projects": [
            {"id": "p1", "name": "Good", "folder": "/tmp/good"},
            {"id": "p2", "name": "Relative", "folder": "renders"},
            {"id": "p3", "name": 42, "folder": "/tmp/x"}
        ]}"#,
    )
    .unwrap();
    let (p, notices, _) = Projects::open(config.path()).unwrap();
    let list = p.list();
    assert_eq!(list.projects.len(), 1);
    assert_eq!(list.projects[0].id, "p1");
    // The current one was refused: none is current.
    assert_eq!(list.current_project_id, None);
    assert_eq!(notices.len(), 1);
    assert!(notices[0].contains("2 project(s)"), "{notices:?}");
    assert!(notices[0].contains("relative path"), "{notices:?}");
    assert_eq!(names_in(config.path(), "projects.json.refused-").len(), 1);
}

#[test]
fn a_newer_apps_file_is_shown_read_only() {
    let config = tempfile::tempdir().unwrap();
    let text = r#"{"version": "2.0", "projects": [{"id": "p1", "name": "A", "folder": "/tmp/a", "x": 1}]}"#;
    std::fs::write(config.path().join(PROJECTS_FILE_NAME), text).unwrap();
    let (p, notices, _) = Projects::open(config.path()).unwrap();
    assert!(notices[0].contains("newer version"), "{notices:?}");
    assert!(p.list().read_only);
    assert_eq!(p.list().projects.len(), 1);
    let e = p.set_current(Some("p1")).unwrap_err();
    assert!(e.to_string().contains("newer version"), "{e}");
    assert_eq!(
        std::fs::read_to_string(config.path().join(PROJECTS_FILE_NAME)).unwrap(),
        text
    );
}

/// Old files: the single-instance `comfyui.json`, and projects whose
/// settings still name its endpoint (or another server, or the seed's
/// `instanceId`). Each project ends up with an instance id, once.
#[tokio::test]
async fn old_project_settings_are_migrated_to_instance_ids_once() {
    let config = tempfile::tempdir().unwrap();
    std::fs::write(
        config.path().join("comfyui.json"),
        r#"{"endpoint": "http://localhost:8190", "timeoutMs": 30000}"#,
    )
    .unwrap();
    let old_projects = r#"{"version": "1.0", "projects": [
        {"id": "p1", "name": "Same server", "folder": "/tmp/p1",
         "comfyui": {"endpoint": "http://127.0.0.1:8190/"}},
        {"id": "p2", "name": "Other server", "folder": "/tmp/p2",
         "comfyui": {"endpoint": "http://127.0.0.1:8299", "timeoutMs": 5000}},
        {"id": "p3", "name": "Seed shape", "folder": "/tmp/p3",
         "comfyui": {"instanceId": "instance_001"}},
        {"id": "p4", "name": "Broken", "folder": "/tmp/p4",
         "comfyui": {"endpoint": "ftp://nowhere"}},
        {"id": "p5", "name": "Never had one", "folder": "/tmp/p5"}
    ]}"#;
    std::fs::write(config.path().join(PROJECTS_FILE_NAME), old_projects).unwrap();

    let manager = open_manager(config.path());
    assert_eq!(manager.list().len(), 1, "comfyui.json became instance_001");
    let (p, _, legacy) = Projects::open(config.path()).unwrap();
    assert_eq!(legacy.len(), 4);
    let notices = p.migrate(&manager, legacy).await;
    let target = |id: &str| p.get(id).unwrap().default_target;
    let inst = |id: &str| JobTarget::Instance { id: id.into() };
    assert_eq!(
        target("p1"),
        inst("instance_001"),
        "same server, another spelling"
    );
    assert_eq!(target("p3"), inst("instance_001"));
    // A server the fleet did not have became an instance, with its timeout.
    assert_eq!(target("p2"), inst("instance_002"));
    let created = manager.get("instance_002").unwrap().config;
    assert_eq!(created.port, 8299);
    assert_eq!(created.timeout_ms, Some(5000));
    assert_eq!(target("p4"), JobTarget::Auto);
    assert_eq!(target("p5"), JobTarget::Auto);
    let all = notices.join("\n");
    assert!(all.contains("8299 was not in the fleet"), "{all}");
    assert!(
        all.contains("ftp://nowhere could not become an instance"),
        "{all}"
    );
    assert!(all.contains("3 project(s)"), "{all}");
    // The file no longer has the old key; the backup keeps it.
    let now = std::fs::read_to_string(config.path().join(PROJECTS_FILE_NAME)).unwrap();
    assert!(!now.contains("\"comfyui\""), "{now}");
    let bak = std::fs::read_to_string(config.path().join(PROJECTS_BACKUP_NAME)).unwrap();
    assert_eq!(bak, old_projects);

    // Once: a second start finds nothing to migrate and creates nothing.
    drop(p);
    manager.shutdown().await;
    let manager = open_manager(config.path());
    let (p, notices, legacy) = Projects::open(config.path()).unwrap();
    assert!(
        legacy.is_empty() && notices.is_empty(),
        "{legacy:?} {notices:?}"
    );
    assert!(p.migrate(&manager, legacy).await.is_empty());
    assert_eq!(manager.list().len(), 2);
    assert_eq!(p.get("p2").unwrap().default_target, inst("instance_002"));
    manager.shutdown().await;
}

/// A job from the window runs on the current project's default target; a
/// default instance deleted since is refused with what to do.
#[tokio::test]
async fn jobs_take_the_projects_default_target_and_a_deleted_one_is_refused() {
    let config = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let manager = open_manager(config.path());
    manager
        .create(storycore_types::InstanceConfig::new("gpu0", "GPU 0", 8188))
        .await
        .unwrap();
    let (p, ..) = Projects::open(config.path()).unwrap();
    // No project: automatic, untagged.
    let (t, c) = p.job_target(&manager, None).unwrap();
    assert_eq!((t, c.project_id), (JobTarget::Auto, None));
    let mut d = draft("Film", &work.path().join("film"));
    d.default_target = JobTarget::Instance { id: "gpu0".into() };
    let film = p.create(&d, &["gpu0".into()]).unwrap();
    let (t, c) = p.job_target(&manager, None).unwrap();
    assert_eq!(t, JobTarget::Instance { id: "gpu0".into() });
    assert_eq!(c.project_id.as_deref(), Some(film.id.as_str()));
    assert_eq!(c.output_folder, Some(film.outputs_folder()));
    // An explicit target wins over the default.
    let (t, _) = p.job_target(&manager, Some(JobTarget::Active)).unwrap();
    assert_eq!(t, JobTarget::Active);
    manager.delete("gpu0").await.unwrap();
    let e = p.job_target(&manager, None).unwrap_err().to_string();
    assert!(
        e.contains("default instance 'gpu0' no longer exists"),
        "{e}"
    );
    manager.shutdown().await;
}

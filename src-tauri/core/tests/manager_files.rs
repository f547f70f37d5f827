//! The manager's persistence: what it writes survives a restart; export and
//! import go through the same validation.

use storycore_core::manager::{InstanceManager, ManagerOptions};
use storycore_core::store::ClashPolicy;
use storycore_types::{ErrorCode, InstanceConfig, InstanceConfigPatch};

fn open(dir: &std::path::Path) -> InstanceManager {
    InstanceManager::open(ManagerOptions::new(dir)).unwrap().0
}

#[tokio::test]
async fn crud_and_active_instance_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let m = open(dir.path());
    let a = m
        .create(InstanceConfig::new("", "First", 8188))
        .await
        .unwrap();
    let b = m
        .create(InstanceConfig::new("", "Second", 8189))
        .await
        .unwrap();
    assert_eq!(
        (a.id.as_str(), b.id.as_str()),
        ("instance_001", "instance_002")
    );
    assert_eq!(
        m.active_instance().unwrap().id,
        "instance_001",
        "default: the first"
    );
    m.set_active(Some("instance_002")).await.unwrap();
    m.update(
        "instance_001",
        InstanceConfigPatch {
            description: Some(Some("renamed box".into())),
            port: Some(8190),
            ..Default::default()
        },
    )
    .await
    .unwrap();

    let again = open(dir.path());
    let list = again.list();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].config.port, 8190);
    assert_eq!(list[0].config.description.as_deref(), Some("renamed box"));
    assert_eq!(again.active_instance().unwrap().id, "instance_002");

    again.delete("instance_002").await.unwrap();
    assert_eq!(again.active_instance().unwrap().id, "instance_001");
    assert!(again.set_active(Some("nope")).await.unwrap_err().code() == ErrorCode::NotFound);
    assert_eq!(open(dir.path()).list().len(), 1);
}

#[tokio::test]
async fn export_then_import_elsewhere_all_or_nothing() {
    let src = tempfile::tempdir().unwrap();
    let m = open(src.path());
    m.create(InstanceConfig::new("", "One", 8188))
        .await
        .unwrap();
    m.create(InstanceConfig::new("", "Two", 8189))
        .await
        .unwrap();
    let data = m.export();

    let dst = tempfile::tempdir().unwrap();
    let n = open(dst.path());
    let report = n.import(&data, ClashPolicy::Fail).await.unwrap();
    assert_eq!(report.entries.len(), 2);
    assert_eq!(n.list().len(), 2);

    // Importing again clashes: with the default policy nothing changes.
    let err = n.import(&data, ClashPolicy::Fail).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidInput);
    assert_eq!(n.list().len(), 2);
    // Renaming resolves the clash explicitly.
    n.import(&data, ClashPolicy::Rename).await.unwrap();
    assert_eq!(n.list().len(), 4);
    assert_eq!(open(dst.path()).list().len(), 4);

    assert!(n.import("{not json", ClashPolicy::Fail).await.is_err());
    assert_eq!(n.list().len(), 4);
}

#[tokio::test]
async fn a_deleted_instance_takes_its_history_along_and_a_new_one_inherits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let m = open(dir.path());
    m.create(InstanceConfig::new("", "Old", 8188))
        .await
        .unwrap();
    // What the instance accumulated: health and workflow history, a log, images.
    let config = dir.path();
    let data = config.join("data/instances/instance_001");
    std::fs::write(config.join("instance_instance_001_health.json"), "{}").unwrap();
    std::fs::write(config.join("instance_instance_001_workflows.json"), "{}").unwrap();
    std::fs::create_dir_all(data.join("logs")).unwrap();
    std::fs::write(data.join("logs/comfyui.log"), "old lines\n").unwrap();
    std::fs::create_dir_all(data.join("output")).unwrap();
    std::fs::write(data.join("output/ComfyUI_00001_.png"), b"png").unwrap();

    m.delete("instance_001").await.unwrap();
    assert!(!config.join("instance_instance_001_health.json").exists());
    assert!(!config.join("instance_instance_001_workflows.json").exists());
    assert!(!data.join("logs").exists(), "its log went with it");
    assert!(
        data.join("output/ComfyUI_00001_.png").exists(),
        "the user's images stay"
    );
    // The next new instance gets another id: nothing of the old one is its.
    let next = m
        .create(InstanceConfig::new("", "New", 8189))
        .await
        .unwrap();
    assert_eq!(next.id, "instance_002");

    // Files a crash left for an id (deleted from the list, files not yet):
    // an instance created with that id starts with no history.
    std::fs::write(config.join("instance_reused_health.json"), "{}").unwrap();
    std::fs::write(config.join("instance_reused_workflows.json"), "{}").unwrap();
    m.create(InstanceConfig::new("reused", "Reused", 8190))
        .await
        .unwrap();
    assert!(!config.join("instance_reused_health.json").exists());
    assert!(!config.join("instance_reused_workflows.json").exists());
}

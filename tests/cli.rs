//! The binary's own error handling, without a window.

use std::process::Command;

const APP_BIN: &str = env!("CARGO_BIN_EXE_storycore-engine");

#[test]
fn a_relative_config_dir_is_refused_with_a_clear_message() {
    let out = Command::new(APP_BIN)
        .env("STORYCORE_CONFIG_DIR", "relative/folder")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not an absolute path"), "{err}");
}

#[test]
fn a_bad_log_filter_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(APP_BIN)
        .env("STORYCORE_CONFIG_DIR", dir.path())
        .env("STORYCORE_DATA_DIR", dir.path())
        .env("STORYCORE_LOG", "info,[[[")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("STORYCORE_LOG"), "{err}");
}

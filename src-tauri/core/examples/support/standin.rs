//! The stand-in for the examples that launch it as ComfyUI (chaos_soak,
//! pool_bench): built beside the example, and a free port.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds the stand-in in the example's own profile and returns its path:
/// `<target>/<profile>/comfyui-standin`. Under the README's test command
/// (`STORYCORE_TESTS_PREBUILT`), which built every target before, it is
/// taken as it is: no cargo beside the running tests.
pub fn standin_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    let built = profile_dir.join("comfyui-standin");
    if std::env::var_os("STORYCORE_TESTS_PREBUILT").is_some() && built.is_file() {
        return built;
    }
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "-p", "comfyui-standin"])
        .current_dir(&workspace);
    if release {
        cmd.arg("--release");
    }
    assert!(
        cmd.status().is_ok_and(|s| s.success()),
        "building the stand-in failed"
    );
    profile_dir.join("comfyui-standin")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

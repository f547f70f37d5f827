use std::path::Path;

fn main() {
    // The binary embeds the UI that scripts/build-ui.sh writes to ui/dist. A plain
    // `cargo build` before that would fail inside tauri's macros, so leave a page
    // that says what to run instead.
    let dist = Path::new("ui/dist");
    if !dist.join("index.html").exists() {
        std::fs::create_dir_all(dist).expect("create ui/dist");
        std::fs::write(
            dist.join("index.html"),
            "<!doctype html><title>StoryCore Engine</title>\
             <p>The UI was not built. Run <code>scripts/run.sh</code> (or \
             <code>scripts/build-ui.sh</code>) and start the app again.</p>",
        )
        .expect("write placeholder ui/dist/index.html");
    }
    println!("cargo:rerun-if-changed=ui/dist");
    tauri_build::build()
}

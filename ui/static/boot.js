// Loads the WASM UI that wasm-bindgen generated next to this file.
import init from "./storycore_ui.js";
init();

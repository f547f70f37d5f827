//! Output files: ComfyUI's save-path scheme, `/view` and `/upload/image`.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Multipart, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use comfyui_rules::upload::{self, inside, normalize};

use crate::exec::Val;
use crate::routes::{empty, json_ok};
use crate::state::{App, Dirs};

/// `name [output]` / `[input]` / `[temp]` annotations (folder_paths.annotated_filepath).
pub fn annotated<'a>(name: &str, dirs: &'a Dirs) -> (String, Option<&'a PathBuf>) {
    let (name, kind) = upload::annotated(name);
    (name.to_string(), kind.and_then(|k| dirs.by_type(k)))
}

/// Lexical normalisation (os.path.normpath without touching the disk).
/// Saves every image of the batch as `<prefix>_<counter:05>_.png` and returns
/// `(filename, subfolder)` pairs. The counter continues after the highest one
/// found in the folder; files are created exclusively so concurrent
/// instances never overwrite each other.
pub fn save_images(
    dir: &Path,
    prefix: &str,
    img: &Val,
    prompt_json: &str,
) -> Result<Vec<(String, String)>, String> {
    let Val::Image { w, h, batch, color } = *img else {
        return Ok(vec![]);
    };
    let norm = normalize(Path::new(prefix));
    let base = norm
        .file_name()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    let subfolder = norm
        .parent()
        .map(|p| p.to_string_lossy().to_string())
        .unwrap_or_default();
    let folder = dir.join(&subfolder);
    if !inside(dir, &folder) {
        return Err("Saving image outside the output folder is not allowed.".into());
    }
    std::fs::create_dir_all(&folder).map_err(|e| e.to_string())?;
    let mut counter = std::fs::read_dir(&folder)
        .map_err(|e| e.to_string())?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let rest = name.strip_prefix(&base)?.strip_prefix('_')?;
            let (digits, _) = rest.split_once('_')?;
            digits.parse::<u64>().ok()
        })
        .max()
        .unwrap_or(0)
        + 1;
    let rgb = [(color >> 16) as u8, (color >> 8) as u8, color as u8];
    let data = crate::png::solid(w.min(8192), h.min(8192), rgb, &[("prompt", prompt_json)]);
    let mut out = Vec::new();
    for _ in 0..batch.max(1) {
        loop {
            let name = format!("{base}_{counter:05}_.png");
            counter += 1;
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(folder.join(&name))
            {
                Ok(mut f) => {
                    f.write_all(&data).map_err(|e| e.to_string())?;
                    out.push((name, subfolder.clone()));
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e.to_string()),
            }
        }
    }
    Ok(out)
}

pub async fn view(
    State(app): State<Arc<App>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(filename) = q.get("filename") else {
        return empty(StatusCode::NOT_FOUND);
    };
    let (filename, annotated_dir) = annotated(filename, &app.dirs);
    if filename.is_empty() || filename.starts_with('/') || filename.contains("..") {
        return empty(StatusCode::BAD_REQUEST);
    }
    let mut dir = match annotated_dir {
        Some(d) => d.clone(),
        None => match app
            .dirs
            .by_type(q.get("type").map(String::as_str).unwrap_or("output"))
        {
            Some(d) => d.clone(),
            None => return empty(StatusCode::BAD_REQUEST),
        },
    };
    if let Some(sub) = q.get("subfolder") {
        let full = dir.join(sub);
        if !inside(&dir, &full) {
            return empty(StatusCode::FORBIDDEN);
        }
        dir = full;
    }
    let name = Path::new(&filename)
        .file_name()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    let path = dir.join(&name);
    match tokio::fs::read(&path).await {
        Ok(data) if path.is_file() => {
            let ctype = match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
                "png" => "image/png",
                "jpg" | "jpeg" => "image/jpeg",
                "webp" => "image/webp",
                "gif" => "image/gif",
                "json" => "application/json",
                "txt" => "text/plain",
                _ => "application/octet-stream",
            };
            (
                [
                    (header::CONTENT_TYPE, ctype.to_string()),
                    (header::CONTENT_DISPOSITION, format!("filename=\"{name}\"")),
                    (header::ACCEPT_RANGES, "bytes".to_string()),
                ],
                Body::from(data),
            )
                .into_response()
        }
        _ => empty(StatusCode::NOT_FOUND),
    }
}

/// A multipart form: the `image` file (name, bytes) and the text fields.
async fn read_form(mut form: Multipart) -> (Option<(String, Vec<u8>)>, HashMap<String, String>) {
    let mut image: Option<(String, Vec<u8>)> = None;
    let mut fields: HashMap<String, String> = HashMap::new();
    while let Ok(Some(field)) = form.next_field().await {
        let name = field.name().unwrap_or("").to_string();
        if name == "image" {
            let fname = field.file_name().unwrap_or("").to_string();
            let data = field.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
            image = Some((fname, data));
        } else {
            let text = field.text().await.unwrap_or_default();
            fields.insert(name, text);
        }
    }
    (image, fields)
}

pub async fn upload_image(State(app): State<Arc<App>>, form: Multipart) -> Response {
    upload(&app, form, false).await
}

/// `/upload/mask`: named as an image upload; the file written is the
/// `original_ref` image masked. This stand-in decodes no image: its
/// "masked" file is the original carrying a `tEXt` chunk that names the
/// mask (name and size), which shows both reached it. Like ComfyUI, it
/// answers the name even when the original is not there (nothing written).
pub async fn upload_mask(State(app): State<Arc<App>>, form: Multipart) -> Response {
    upload(&app, form, true).await
}

async fn upload(app: &App, form: Multipart, mask: bool) -> Response {
    let (image, fields) = read_form(form).await;
    let Some((filename, data)) = image else {
        return empty(StatusCode::BAD_REQUEST);
    };
    let field = |k: &str| fields.get(k).map(String::as_str);
    let kind = upload::upload_kind(field("type"));
    let folder = app
        .dirs
        .by_type(kind)
        .cloned()
        .unwrap_or_else(|| app.dirs.input.clone());
    let subfolder = field("subfolder").unwrap_or_default();
    let overwrite = upload::overwrites(field("overwrite"));
    let original = if mask {
        let Some(Ok(r)) = field("original_ref").map(serde_json::from_str::<serde_json::Value>)
        else {
            return crate::routes::trouble();
        };
        masked_original(&app.dirs, &r)
    } else {
        None
    };
    let saved = upload::save_upload_with(
        &folder,
        kind,
        subfolder,
        &filename,
        &data,
        overwrite,
        |path| match (mask, &original) {
            (false, _) => std::fs::write(path, &data),
            (true, Some(orig)) => {
                let note = format!("{filename} ({} bytes)", data.len());
                let out = crate::png::with_text(orig, "storycore-standin-mask", &note)
                    .unwrap_or_else(|| orig.clone());
                std::fs::write(path, out)
            }
            (true, None) => Ok(()),
        },
    );
    match saved {
        Ok(s) => json_ok(&json!({"name": s.name, "subfolder": s.subfolder, "type": s.kind})),
        Err(upload::UploadError::OutsideFolder) => empty(StatusCode::BAD_REQUEST),
        Err(upload::UploadError::Io(_)) => empty(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

/// The bytes of the image an `original_ref` names (type `output` unless
/// said or annotated), if it is there and inside its folder.
fn masked_original(dirs: &Dirs, r: &serde_json::Value) -> Option<Vec<u8>> {
    let (name, annotated) = upload::annotated(r["filename"].as_str()?);
    if name.is_empty() || name.starts_with('/') || name.contains("..") {
        return None;
    }
    let kind = annotated.unwrap_or_else(|| r["type"].as_str().unwrap_or("output"));
    let folder = dirs.by_type(kind)?;
    let dir = folder.join(r["subfolder"].as_str().unwrap_or(""));
    let path = dir.join(name);
    if !inside(folder, &path) {
        return None;
    }
    std::fs::read(path).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_continues_and_subfolders_work() {
        let d = tempfile::tempdir().unwrap();
        let img = Val::Image {
            w: 8,
            h: 8,
            batch: 2,
            color: 0xff0000,
        };
        let a = save_images(d.path(), "fixture_sub/batch", &img, "{}").unwrap();
        assert_eq!(
            a,
            vec![
                ("batch_00001_.png".into(), "fixture_sub".into()),
                ("batch_00002_.png".into(), "fixture_sub".into())
            ]
        );
        let b = save_images(d.path(), "fixture_sub/batch", &img, "{}").unwrap();
        assert_eq!(b[0].0, "batch_00003_.png");
        assert!(save_images(d.path(), "../evil", &img, "{}").is_err());
    }
}

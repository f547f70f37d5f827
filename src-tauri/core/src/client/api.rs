//! ComfyUI's HTTP routes as typed methods. Behaviour noted here (status codes,
//! empty bodies) was observed on a real 0.3.64 server (see comfyui-api/FACTS.md).

use super::error::ClientError;
use super::responses::{HistoryEntry, PromptAccepted, QueueSnapshot, SystemStatsResponse};
use super::ComfyClient;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

impl ComfyClient {
    /// `GET /system_stats`: versions, RAM and devices. The health probe.
    pub async fn system_stats(&self) -> Result<SystemStatsResponse, ClientError> {
        self.get_json("/system_stats", "reading system stats (GET /system_stats)")
            .await
    }

    /// `GET /queue`: the running and pending prompts.
    pub async fn queue(&self) -> Result<QueueSnapshot, ClientError> {
        self.get_json("/queue", "reading the queue (GET /queue)")
            .await
    }

    /// `POST /prompt` with a prompt id chosen by the app, so that after a crash
    /// the app can ask what became of it. `client_id` routes the prompt's
    /// progress messages to the WebSocket opened with the same id.
    pub async fn submit_prompt(
        &self,
        prompt: Value,
        prompt_id: &str,
        client_id: &str,
    ) -> Result<PromptAccepted, ClientError> {
        let action = format!("submitting prompt {prompt_id} (POST /prompt)");
        let body = json!({"prompt": prompt, "prompt_id": prompt_id, "client_id": client_id});
        let resp = self
            .send(&action, self.http.post(self.url("/prompt")).json(&body))
            .await?;
        let accepted: PromptAccepted = self.read_json(&action, resp).await?;
        if accepted.prompt_id != prompt_id {
            // The app tracks jobs by the id it chose; a server that ignores it
            // would make every job untraceable after a crash.
            return Err(self.malformed(
                &action,
                "prompt id",
                format!(
                    "asked for '{prompt_id}' but the server assigned '{}'",
                    accepted.prompt_id
                ),
            ));
        }
        Ok(accepted)
    }

    /// `GET /history/{prompt_id}`. `None` while the prompt is queued or running,
    /// and for ids the server never saw (ComfyUI answers 200 `{}` for those).
    pub async fn history(&self, prompt_id: &str) -> Result<Option<HistoryEntry>, ClientError> {
        let action = format!("reading the history of prompt {prompt_id} (GET /history)");
        let path = format!("/history/{}", encode_path_segment(prompt_id));
        let mut all: HashMap<String, Value> = self.get_json(&path, &action).await?;
        match all.remove(prompt_id) {
            None => Ok(None),
            Some(v) => serde_json::from_value(v)
                .map(Some)
                .map_err(|e| self.malformed(&action, "history entry", e)),
        }
    }

    /// `GET /view`: the bytes of an output, temp or input file.
    pub async fn view(
        &self,
        filename: &str,
        subfolder: &str,
        kind: &str,
    ) -> Result<Vec<u8>, ClientError> {
        let action = format!("downloading {kind}/{subfolder}/{filename} (GET /view)");
        let req = self.http.get(self.url("/view")).query(&[
            ("filename", filename),
            ("subfolder", subfolder),
            ("type", kind),
        ]);
        let resp = self.send(&action, req).await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| self.malformed(&action, "file body", e))?;
        Ok(bytes.to_vec())
    }

    /// `POST /upload/image` (or `/upload/mask` with the image it masks, as
    /// `original_ref`): `data` as `filename` in the folder of `kind`, in
    /// `subfolder`, replacing a file of that name. Answers where it went:
    /// `{"name", "subfolder", "type"}`.
    pub async fn upload(
        &self,
        data: Vec<u8>,
        filename: &str,
        subfolder: &str,
        kind: &str,
        original_ref: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let route = if original_ref.is_some() {
            "/upload/mask"
        } else {
            "/upload/image"
        };
        let action = format!("uploading {kind}/{subfolder}/{filename} (POST {route})");
        let image = reqwest::multipart::Part::bytes(data).file_name(filename.to_string());
        let mut form = reqwest::multipart::Form::new()
            .part("image", image)
            .text("type", kind.to_string())
            .text("subfolder", subfolder.to_string())
            .text("overwrite", "true");
        if let Some(r) = original_ref {
            form = form.text("original_ref", r.to_string());
        }
        let resp = self
            .send(&action, self.http.post(self.url(route)).multipart(form))
            .await?;
        self.read_json(&action, resp).await
    }

    /// `POST /interrupt`. With an id, only that prompt is stopped if it is the
    /// running one (otherwise nothing happens); without, whatever runs.
    pub async fn interrupt(&self, prompt_id: Option<&str>) -> Result<(), ClientError> {
        let body = match prompt_id {
            Some(id) => json!({ "prompt_id": id }),
            None => json!({}),
        };
        let action = match prompt_id {
            Some(id) => format!("interrupting prompt {id} (POST /interrupt)"),
            None => "interrupting the running prompt (POST /interrupt)".to_string(),
        };
        self.post_for_nothing("/interrupt", &body, &action).await
    }

    /// `POST /queue {"delete": [...]}`: removes pending prompts. The running one
    /// is not affected (use [`interrupt`](Self::interrupt)).
    pub async fn delete_from_queue(&self, prompt_ids: &[String]) -> Result<(), ClientError> {
        let action = format!(
            "deleting {} prompt(s) from the queue (POST /queue)",
            prompt_ids.len()
        );
        self.post_for_nothing("/queue", &json!({ "delete": prompt_ids }), &action)
            .await
    }

    /// `POST /queue {"clear": true}`: drops every pending prompt.
    pub async fn clear_queue(&self) -> Result<(), ClientError> {
        self.post_for_nothing(
            "/queue",
            &json!({"clear": true}),
            "clearing the queue (POST /queue)",
        )
        .await
    }

    /// `POST /free`: unloads models and/or frees memory. Also drops ComfyUI's
    /// execution cache.
    pub async fn free(&self, unload_models: bool, free_memory: bool) -> Result<(), ClientError> {
        self.post_for_nothing(
            "/free",
            &json!({"unload_models": unload_models, "free_memory": free_memory}),
            "freeing memory (POST /free)",
        )
        .await
    }

    /// `GET /object_info`: every node class the server knows (about 500 KB).
    pub async fn object_info(&self) -> Result<Map<String, Value>, ClientError> {
        self.get_json("/object_info", "listing node classes (GET /object_info)")
            .await
    }

    /// `GET /prompt`: how many prompts are running plus pending.
    pub async fn queue_remaining(&self) -> Result<u64, ClientError> {
        let action = "reading the queue size (GET /prompt)";
        let v: Value = self.get_json("/prompt", action).await?;
        v.pointer("/exec_info/queue_remaining")
            .and_then(Value::as_u64)
            .ok_or_else(|| self.malformed(action, "answer", "no exec_info.queue_remaining"))
    }
}

/// Prompt ids are chosen by the app (uuids), but one from an imported file
/// could contain anything: keep it inside one path segment.
fn encode_path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::encode_path_segment;

    #[test]
    fn path_segments_cannot_escape() {
        assert_eq!(encode_path_segment("abc-123_x.y"), "abc-123_x.y");
        assert_eq!(encode_path_segment("../x?y#z"), "..%2Fx%3Fy%23z");
    }
}

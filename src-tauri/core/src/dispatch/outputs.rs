//! A finished job's images, fetched through `/view` into `<dir>/outputs/<job id>/`.
//!
//! Written on the blocking pool without a sync of their own: the job's end is
//! recorded after them, and the journal writer's sync of that record (one
//! `syncfs` of the whole filesystem, on Linux) makes them durable too. A crash before it leaves the job
//! unfinished on disk, and the restarted app fetches them again.

use super::shared::Shared;
use crate::client::{ClientError, ComfyClient, HistoryEntry};
use crate::store::StoreError;
use std::path::PathBuf;
use storycore_types::JobOutput;

pub const OUTPUTS_FOLDER: &str = "outputs";

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("downloading {filename} of job {job_id}: {source}")]
    Download {
        job_id: String,
        filename: String,
        #[source]
        source: ClientError,
    },
    #[error("keeping {filename} of job {job_id}: {source}")]
    Keep {
        job_id: String,
        filename: String,
        #[source]
        source: StoreError,
    },
}

pub fn job_folder(shared_dir: &std::path::Path, job_id: &str) -> PathBuf {
    shared_dir.join(OUTPUTS_FOLDER).join(job_id)
}

pub(crate) async fn fetch(
    shared: &Shared,
    client: &ComfyClient,
    job_id: &str,
    entry: &HistoryEntry,
) -> Result<Vec<JobOutput>, OutputError> {
    if !entry.succeeded() {
        return Ok(Vec::new());
    }
    let folder = job_folder(&shared.dir, job_id);
    let mut out = Vec::new();
    for (node, image) in entry.images() {
        let bytes = client
            .view(&image.filename, &image.subfolder, &image.kind)
            .await
            .map_err(|source| OutputError::Download {
                job_id: job_id.into(),
                filename: image.filename.clone(),
                source,
            })?;
        let local = folder.join(local_name(node, &image.filename));
        let path = local.clone();
        let kept =
            tokio::task::spawn_blocking(move || crate::store::replace_unsynced(&path, &bytes))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        kept.map_err(|source| OutputError::Keep {
            job_id: job_id.into(),
            filename: image.filename.clone(),
            source: StoreError::Write {
                path: local.clone(),
                source,
            },
        })?;
        out.push(JobOutput {
            node_id: node.to_string(),
            filename: image.filename.clone(),
            subfolder: image.subfolder.clone(),
            kind: image.kind.clone(),
            path: local.to_string_lossy().into_owned(),
        });
    }
    Ok(out)
}

/// `<node>_<file name>`, reduced to safe characters: the name comes from the
/// server, and must not climb out of the job's folder.
fn local_name(node: &str, filename: &str) -> String {
    let base = filename.rsplit(['/', '\\']).next().unwrap_or(filename);
    format!("{node}_{base}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        .trim_start_matches('.')
        .to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn local_names_stay_in_the_folder() {
        assert_eq!(super::local_name("9", "a_00001_.png"), "9_a_00001_.png");
        assert_eq!(super::local_name("9", "../../etc/passwd"), "9_passwd");
        assert_eq!(super::local_name("..", "x y.png"), "_x_y.png");
    }
}

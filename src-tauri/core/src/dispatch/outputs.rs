//! A finished job's images, fetched through `/view` into `<dir>/outputs/<job id>/`.
//!
//! Written on the blocking pool without a sync of their own: the job's end is
//! recorded after them, and the journal writer's sync of that record (one
//! `syncfs` of the whole filesystem, on Linux) makes them durable too. A crash before it leaves the job
//! unfinished on disk, and the restarted app fetches them again.

use super::state::Shared;
use crate::client::{ClientError, ComfyClient, HistoryEntry};
use crate::store::StoreError;
use std::path::PathBuf;
use storycore_types::JobOutput;

pub use super::journal::OUTPUTS_FOLDER;

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

/// A finished job's files, and why they are not all in its project's folder.
#[derive(Debug, Default)]
pub(crate) struct Fetched {
    pub outputs: Vec<JobOutput>,
    pub not_copied: Option<String>,
}

pub(crate) async fn fetch(
    shared: &Shared,
    client: &ComfyClient,
    job_id: &str,
    entry: &HistoryEntry,
) -> Result<Fetched, OutputError> {
    if !entry.succeeded() {
        return Ok(Fetched::default());
    }
    let folder = job_folder(&shared.dir, job_id);
    // The project's copy: `<output folder>/<job id's first 8>_<name>`, so
    // runs of one template on two instances (both counting from 00001) do
    // not overwrite each other, and a fetch repeated after a crash does.
    let project = shared
        .lock()
        .entry(job_id)
        .and_then(|e| e.job().output_folder.clone())
        .map(PathBuf::from);
    let short: String = job_id.chars().take(8).collect();
    let mut out = Vec::new();
    let mut not_copied = None;
    for (node, image) in entry.images() {
        let bytes = client
            .view(&image.filename, &image.subfolder, &image.kind)
            .await
            .map_err(|source| OutputError::Download {
                job_id: job_id.into(),
                filename: image.filename.clone(),
                source,
            })?;
        let name = local_name(node, &image.filename);
        let local = folder.join(&name);
        let copy = project.as_ref().map(|p| p.join(format!("{short}_{name}")));
        let path = local.clone();
        let (kept, copied) = tokio::task::spawn_blocking(move || {
            let kept = crate::store::replace_unsynced(&path, &bytes);
            // The project's copy is a convenience: when it cannot be made the
            // job still succeeds, with the outputs in the app's folder.
            let copied = match (&kept, copy) {
                (Ok(()), Some(c)) => Some(crate::store::replace_unsynced(&c, &bytes).map(|()| c)),
                _ => None,
            };
            (kept, copied)
        })
        .await
        .unwrap_or_else(|e| (Err(std::io::Error::other(e)), None));
        kept.map_err(|source| OutputError::Keep {
            job_id: job_id.into(),
            filename: image.filename.clone(),
            source: StoreError::Write {
                path: local.clone(),
                source,
            },
        })?;
        let project_path = match copied {
            Some(Ok(c)) => Some(c.to_string_lossy().into_owned()),
            Some(Err(e)) => {
                let folder = project.as_deref().unwrap_or(&folder).display();
                tracing::warn!(job = %job_id, "copying an output to {folder}: {e}");
                not_copied.get_or_insert(format!(
                    "The outputs are in the app's folder, but could not be copied to the project's folder {folder} ({e}): make it writable or choose another output folder in the project's settings."
                ));
                None
            }
            None => None,
        };
        out.push(JobOutput {
            node_id: node.to_string(),
            filename: image.filename.clone(),
            subfolder: image.subfolder.clone(),
            kind: image.kind.clone(),
            path: local.to_string_lossy().into_owned(),
            project_path,
        });
    }
    Ok(Fetched {
        outputs: out,
        not_copied,
    })
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

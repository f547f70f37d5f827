//! A job's record, `<dir>/jobs/<job id>.json`: the job's fields with its
//! workflow first, and the version of the record's format.
//!
//! | version | what changed |
//! | --- | --- |
//! | 1.0 | today's records before versions: no `version` field |
//! | 1.1 | `version` written first |
//!
//! A record of a newer version (a newer app wrote it, and this one was
//! started again on the same folder) is not read: it is left as it is,
//! never rewritten, pruned or moved aside, and the user is told.

use crate::store::{format_age, FormatAge};
use serde::Deserialize;
use std::io::Write as _;
use storycore_types::Job;

/// The version this app writes.
pub const JOB_RECORD_VERSION: &str = "1.1";

/// What a record without a `version` field is.
const UNVERSIONED: &str = "1.0";

/// What reading a record found.
#[derive(Debug)]
pub(crate) enum Record {
    Job(Box<Job>),
    /// Written by a newer app, in this version of the format.
    Newer(String),
}

/// `{"version":"1.1","workflow":<workflow>,<the summary's other fields>}`:
/// the summary's workflow is null, so it serialises without that field.
pub(crate) fn write_job(
    f: &mut std::fs::File,
    summary: &Job,
    workflow: &[u8],
) -> std::io::Result<()> {
    let head = serde_json::to_vec(summary).map_err(std::io::Error::other)?;
    let mut w = std::io::BufWriter::new(f);
    write!(w, "{{\"version\":\"{JOB_RECORD_VERSION}\",")?;
    if !(workflow.is_empty() || workflow == b"null") {
        w.write_all(b"\"workflow\":")?;
        w.write_all(workflow)?;
        w.write_all(b",")?;
    }
    w.write_all(&head[1..])?;
    w.flush()
}

#[derive(Deserialize)]
struct Head {
    #[serde(default)]
    version: Option<String>,
}

/// Reads a record: the job, or the newer version it was written in.
pub(crate) fn read_job(bytes: &[u8]) -> Result<Record, String> {
    let head: Head = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let version = head.version.unwrap_or_else(|| UNVERSIONED.to_string());
    if let FormatAge::Newer(v) = format_age(&version, JOB_RECORD_VERSION) {
        return Ok(Record::Newer(v));
    }
    serde_json::from_slice::<Job>(bytes)
        .map(|j| Record::Job(Box::new(j)))
        .map_err(|e| e.to_string())
}

//! The queue's persistence, behind one interface: the seam a second store
//! (PostgreSQL, for a cluster) implements. The file journal (`journal.rs`)
//! is the store of a single machine.
//!
//! The queue's state owner calls it with the lock held and never waits on
//! it there: `put` and `remove` only hand the record over; the `_durable`
//! forms answer once it is durable (or failed), awaited after the lock is
//! let go. A store keeps the order records of one job were handed in.

use super::writer::{Durable, WriterCounts};
use crate::store::StoreError;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use storycore_types::Job;

/// A file kept beside the records (an instance's workflows log), rendered
/// when it is written, in order with the records.
pub type Render = Box<dyn FnOnce() -> Result<Vec<u8>, String> + Send>;

/// What reading a store found.
#[derive(Debug, Default)]
pub struct Replayed {
    /// In submission order.
    pub jobs: Vec<Job>,
    /// For the user: files that could not be read and were moved aside.
    pub notices: Vec<String>,
}

pub trait JobStore: Send + Sync {
    /// Every job kept, in submission order, and what could not be read.
    fn replay(&self) -> Result<Replayed, StoreError>;
    /// Keeps the job's record soon; nobody waits.
    fn put(&self, job: &Job, workflow: &Arc<[u8]>);
    /// Keeps the job's record now; the answer says when it is durable.
    fn put_durable(&self, job: &Job, workflow: &Arc<[u8]>) -> Durable;
    /// Forgets the job's record soon.
    fn remove(&self, id: &str);
    /// Forgets the job's record; the answer says when that is durable.
    fn remove_durable(&self, id: &str) -> Durable;
    /// Keeps a file beside the records.
    fn put_file(&self, path: PathBuf, render: Render);
    /// Resolves once everything handed in before is durable (or failed).
    fn flush(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
    /// What the store did so far (records, syncs, groups).
    fn counts(&self) -> WriterCounts;
}

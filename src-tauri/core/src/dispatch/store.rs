//! The queue's persistence, behind one interface: the seam a second store
//! (PostgreSQL, for a cluster) implements. The file journal (`journal.rs`)
//! is the store of a single machine.
//!
//! The queue's state owner calls it with the lock held and never waits on
//! it there: `put` and `remove` only hand the record over; the `_durable`
//! forms answer once it is durable (or failed), awaited after the lock is
//! let go. A store keeps the order records of one job were handed in.
//!
//! Every write of a job's record is a compare-and-set: it names the
//! [`Revision`] it read, and a store writes it only while that is still the
//! stored revision. One process's file journal holds its records alone, so
//! there a conflict is a fault of the queue; a store that several
//! processes share (PostgreSQL) makes it the rule that no two of them ever
//! both move one job. After a conflict the store is the truth: the owner
//! reads the job again ([`JobStore::get`]).

use super::writer::{Durable, WriterCounts};
use crate::store::StoreError;
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use storycore_types::Job;

/// A file kept beside the records (an instance's workflows log), rendered
/// when it is written, in order with the records.
pub type Render = Box<dyn FnOnce() -> Result<Vec<u8>, String> + Send>;

/// Which write made a job's record: each write names the revision it read
/// and brings a new one, unique (random), so that a write that was lost
/// never makes a later one look current. A job not stored is at
/// [`Revision::NONE`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Revision(pub u64);

impl Revision {
    pub const NONE: Revision = Revision(0);

    /// A revision for a new write.
    pub fn fresh() -> Self {
        loop {
            let (r, _) = uuid::Uuid::new_v4().as_u64_pair();
            if r != 0 {
                return Self(r);
            }
        }
    }
}

/// What reading a store found.
#[derive(Debug, Default)]
pub struct Replayed {
    /// In submission order.
    pub jobs: Vec<Job>,
    /// Each job's stored revision.
    pub revisions: HashMap<String, Revision>,
    /// For the user: files that could not be read and were moved aside.
    pub notices: Vec<String>,
}

pub trait JobStore: Send + Sync {
    /// Every job kept, in submission order, and what could not be read.
    fn replay(&self) -> Result<Replayed, StoreError>;
    /// Keeps the job's record soon, as revision `cas.next`, if its stored
    /// revision is still `cas.read`; nobody waits (a conflict is logged, and
    /// found by the next durable write of the job).
    fn put(&self, job: &Job, workflow: &Arc<[u8]>, cas: Cas);
    /// Keeps the job's record now, as revision `cas.next`, if its stored
    /// revision is still `cas.read`; the answer says when it is durable, or
    /// that the record moved on
    /// ([`WriteFailure::conflict`](super::writer::WriteFailure)).
    fn put_durable(&self, job: &Job, workflow: &Arc<[u8]>, cas: Cas) -> Durable;
    /// The job's record as stored now, with its revision; `None` when the
    /// store has no such job.
    fn get(&self, id: &str) -> BoxFuture<'_, Result<Option<(Job, Revision)>, StoreError>>;
    /// Forgets the job's record soon.
    fn remove(&self, id: &str);
    /// Forgets the job's record; the answer says when that is durable.
    fn remove_durable(&self, id: &str) -> Durable;
    /// Keeps a file beside the records.
    fn put_file(&self, path: PathBuf, render: Render);
    /// Resolves once everything handed in before is durable (or failed).
    fn flush(&self) -> BoxFuture<'_, ()>;
    /// What the store did so far (records, syncs, groups).
    fn counts(&self) -> WriterCounts;
}

/// A compare-and-set write: the revision it read, the one it makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cas {
    pub read: Revision,
    pub next: Revision,
}

impl Cas {
    /// A write over `read`, with a fresh revision.
    pub fn over(read: Revision) -> Self {
        Self {
            read,
            next: Revision::fresh(),
        }
    }
}

/// A store's answer that comes later.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

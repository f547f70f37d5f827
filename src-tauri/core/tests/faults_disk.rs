//! The write-ahead promise on a real full and a real read-only file system
//! (a small tmpfs mounted for the test): a job is sent only once its record
//! is on disk. When the record cannot be written, nothing is sent, the job
//! waits with an error that says what to do, and it goes out by itself once
//! writing works again. Mounting needs root (CI runs as root); elsewhere the
//! test says so and does nothing.

use crate::dispatch_fleet;
use crate::support;

use dispatch_fleet::{attached, chain_workflow, fast_options, history_runs, Fleet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use storycore_core::dispatch::JobQueue;
use storycore_types::{JobState, JobTarget};
use support::standin::StandIn;

const LONG: Duration = Duration::from_secs(30);

/// A tmpfs of `size` at a fresh folder, unmounted on drop.
struct SmallDisk {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        std::fs::create_dir(&path).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallDisk { path, _dir: dir })
    }

    fn remount(&self, mode: &str) {
        let s = Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(&self.path)
            .status()
            .unwrap();
        assert!(s.success(), "remount {mode}");
    }

    /// Fills the disk to the last byte; returns the filler file.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let filler = self.path.join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        loop {
            if f.write_all(&block).is_err() {
                break;
            }
        }
        // Byte by byte for what is left of the last block.
        while f.write_all(&[0]).is_ok() {}
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

async fn open_on(disk: &Path, server: &StandIn) -> Fleet {
    let dir = tempfile::tempdir_in(disk).unwrap();
    let manager = dispatch_fleet::open_manager(dir.path());
    manager
        .create(attached("gpu", server.port(), 1))
        .await
        .unwrap();
    let (queue, _) = JobQueue::open(manager.clone(), dir.path(), fast_options()).unwrap();
    let fleet = Fleet {
        dir,
        manager,
        queue,
    };
    fleet.start("gpu").await;
    fleet
}

/// The instance can take the job, but its record cannot be written: it must
/// not be sent, and it says why.
async fn assert_held_and_not_sent(fleet: &Fleet, server: &StandIn, job: &str, prefix: &str) {
    fleet.manager.resume("gpu").await.unwrap();
    // The instance is idle and healthy, yet nothing goes out.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        history_runs(server, prefix).await,
        0,
        "sent without a record"
    );
    let j = fleet.queue.get(job).unwrap();
    assert_eq!(j.state, JobState::Queued, "{j:?}");
    let msg = j.error.expect("an error that says why it waits").message;
    assert!(
        msg.contains("Not sent") && msg.contains("sent by itself once saving works"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_job_whose_record_cannot_be_written_is_not_sent_and_resumes_when_it_can() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("faults_disk: not root, cannot mount a small file system: skipped");
        return;
    }
    let Some(disk) = SmallDisk::mount("4m") else {
        panic!("mount -t tmpfs failed although running as root");
    };
    let server = StandIn::start();
    let fleet = open_on(&disk.path, &server).await;

    // A full disk.
    fleet.manager.pause("gpu").await.unwrap();
    let job = fleet
        .queue
        .submit(chain_workflow(1, 1, "full"), JobTarget::Auto)
        .await
        .unwrap();
    let filler = disk.fill();
    assert_held_and_not_sent(&fleet, &server, &job.id, "full").await;
    std::fs::remove_file(filler).unwrap();
    let done = fleet.wait_state(&job.id, JobState::Succeeded, LONG).await;
    assert!(done.error.is_none(), "the error went: {:?}", done.error);
    assert_eq!(history_runs(&server, "full").await, 1);

    // A read-only file system.
    fleet.manager.pause("gpu").await.unwrap();
    let job = fleet
        .queue
        .submit(chain_workflow(1, 2, "readonly"), JobTarget::Auto)
        .await
        .unwrap();
    disk.remount("ro");
    assert_held_and_not_sent(&fleet, &server, &job.id, "readonly").await;
    disk.remount("rw");
    fleet.wait_state(&job.id, JobState::Succeeded, LONG).await;
    assert_eq!(history_runs(&server, "readonly").await, 1);

    // What the journal holds after all this is what happened.
    fleet.queue.shutdown().await;
    let (again, _) = JobQueue::open(
        dispatch_fleet::open_manager(fleet.dir.path()),
        fleet.dir.path(),
        fast_options(),
    )
    .unwrap();
    for j in again.list() {
        assert_eq!(j.state, JobState::Succeeded, "{j:?}");
    }
    assert_eq!(again.list().len(), 2);
    again.shutdown().await;
    drop(fleet);
}

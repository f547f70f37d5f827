//! A save killed at random moments never leaves a torn file: the test re-runs
//! its own binary as a child that saves two large fleets in turn, SIGKILLs it,
//! and checks what is on disk, many times over.
#![cfg(unix)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use storycore_core::store::{InstanceStore, INSTANCES_FILE_NAME};
use storycore_types::{InstanceConfig, InstancesFile};

const CHILD_DIR_VAR: &str = "STORYCORE_CRASH_CHILD_DIR";
const KILLS: usize = 30;
/// Kills go on past [`KILLS`] until this many landed inside a write...
const MIN_KILLS_MID_WRITE: usize = 3;
/// ...but never past this many.
const MAX_KILLS: usize = 150;

/// Two fleets, large enough (a few MB) that a save takes long enough to be
/// killed in the middle, and different in every instance.
fn big_fleet(variant: char) -> InstancesFile {
    let instances = (0..1500)
        .map(|i| {
            let mut c = InstanceConfig::new(
                format!("instance_{i:04}"),
                format!("{variant} {i}"),
                1024 + i,
            );
            c.description = Some(variant.to_string().repeat(1500));
            c
        })
        .collect();
    InstancesFile {
        version: "1.0".into(),
        instances,
        active_instance_id: None,
        last_saved: None,
    }
}

/// The child: saves A, B, A, B... forever, saying "saved" after each save.
#[test]
#[ignore = "runs only as the child process of saves_killed_at_random_moments_never_tear_the_file"]
fn crash_child_saves_forever() {
    let dir = std::env::var(CHILD_DIR_VAR).expect("started by the crash test");
    let store = InstanceStore::new(dir);
    let fleets = [big_fleet('A'), big_fleet('B')];
    for n in 0.. {
        store.save(&mut fleets[n % 2].clone()).unwrap();
        println!("saved");
    }
}

/// xorshift seeded from the clock; the seed is printed so a failure can be replayed.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn which_fleet(path: &Path, a: &InstancesFile, b: &InstancesFile) -> char {
    let bytes =
        std::fs::read(path).unwrap_or_else(|e| panic!("{} unreadable: {e}", path.display()));
    let file: InstancesFile = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{} torn ({} bytes): {e}", path.display(), bytes.len()));
    if file.instances == a.instances {
        'A'
    } else if file.instances == b.instances {
        'B'
    } else {
        panic!("{} holds neither fleet", path.display())
    }
}

/// Temp files of writes in progress (or killed).
fn count_partials(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains(".partial-"))
        .count()
}

#[test]
fn saves_killed_at_random_moments_never_tear_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (big_fleet('A'), big_fleet('B'));
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("seed {seed}");
    let mut rng = Rng(seed);
    let mut kills_mid_write = 0;

    let mut round = 0;
    while round < KILLS || (kills_mid_write < MIN_KILLS_MID_WRITE && round < MAX_KILLS) {
        round += 1;
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "store_crash::crash_child_saves_forever",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR_VAR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // Let it finish a few saves, so the kill lands on a save that replaces
        // a file (and refreshes the backup), timing the last one; then kill it
        // at a random point within the length of a save.
        let saves_first = 2 + rng.below(2);
        let started = Instant::now();
        let (mut seen, mut last_saved_at, mut save_length) = (0, started, Duration::ZERO);
        while seen < saves_first {
            let line = lines
                .next()
                .expect("the child stopped before saving")
                .unwrap();
            if line == "saved" {
                seen += 1;
                save_length = last_saved_at.elapsed();
                last_saved_at = Instant::now();
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the child saves too slowly"
            );
        }
        if rng.below(2) == 0 {
            // Anywhere in a save: reading, encoding, writing, renaming.
            let window = save_length.as_micros().max(1) as u64;
            std::thread::sleep(Duration::from_micros(rng.below(window)));
        } else {
            // Inside a write: wait until a temp file exists, then a little more.
            let polling = Instant::now();
            while count_partials(dir.path()) == 0 {
                assert!(
                    polling.elapsed() < Duration::from_secs(60),
                    "the child never wrote"
                );
                std::thread::yield_now();
            }
            std::thread::sleep(Duration::from_micros(rng.below(2_000)));
        }
        child.kill().unwrap();
        child.wait().unwrap();

        let main = dir.path().join(INSTANCES_FILE_NAME);
        let store = InstanceStore::new(dir.path());
        let on_disk = which_fleet(&main, &a, &b);
        which_fleet(&store.backup_path(), &a, &b);
        let partials = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains(".partial-")
            })
            .count();
        kills_mid_write += usize::from(partials > 0);

        let loaded = store.load().unwrap();
        assert!(
            loaded.notices.is_empty(),
            "round {round}: {:?}",
            loaded.notices
        );
        assert_eq!(
            loaded.file.instances,
            if on_disk == 'A' { &a } else { &b }.instances
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            2,
            "round {round}: load removed the temp files"
        );
    }
    println!("{kills_mid_write} of {KILLS} kills landed in the middle of a write");
    // Without kills inside writes this test would prove nothing.
    assert!(
        kills_mid_write > 0,
        "no kill interrupted a write; seed {seed}"
    );
}

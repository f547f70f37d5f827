//! The app's files hold configs, environment values, jobs and, at the user's
//! explicit choice, API keys: they are readable by the user only (files 0600,
//! folders 0700), whoever else shares the machine.
//!
//! The app sets its umask to 0077 at start ([`restrict_umask`]), so whatever
//! it or its libraries create is private; the writers of this crate also ask
//! for those modes themselves, so a library user or a test without that umask
//! gets them too. ComfyUI, started by the supervisor, gets the umask the app
//! was started with back ([`inherited_umask`]): its images stay as shareable
//! as the user's ComfyUI makes them.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

/// Mode of a file the app writes.
pub const FILE_MODE: u32 = 0o600;
/// Mode of a folder the app makes.
pub const DIR_MODE: u32 = 0o700;

/// The umask the process had before [`restrict_umask`]; 0o022 until then.
static INHERITED: AtomicU32 = AtomicU32::new(0o022);
static RESTRICTED: AtomicU32 = AtomicU32::new(0);

/// Makes every file and folder the process creates from now on private.
/// Call once, first thing, before threads start.
#[cfg(unix)]
pub fn restrict_umask() {
    // SAFETY: umask only swaps the process's mask.
    let old = unsafe { libc::umask(0o077) };
    if RESTRICTED.swap(1, Ordering::SeqCst) == 0 {
        // mode_t is u32 on Linux, u16 on macOS.
        #[allow(clippy::useless_conversion)]
        INHERITED.store(u32::from(old), Ordering::SeqCst);
    }
}

#[cfg(not(unix))]
pub fn restrict_umask() {}

/// The umask to give a child process: the one the app was started with.
pub fn inherited_umask() -> u32 {
    INHERITED.load(Ordering::SeqCst)
}

/// `create_dir_all` whose new folders are 0700.
pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, DIR_MODE);
    b.create(path)
}

/// Takes group and other access away from a folder that an earlier version
/// (or the user) made wider, so what is inside is private whatever its own
/// modes. Only the owner may do this; anything else is left alone.
#[cfg(unix)]
pub fn tighten_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        // Not made yet: it will be made private.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    // SAFETY: getuid cannot fail.
    if !meta.is_dir() || meta.uid() != unsafe { libc::getuid() } {
        return Ok(());
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700))?;
    }
    Ok(())
}

#[cfg(not(unix))]
pub fn tighten_dir(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn what_the_store_writes_is_private_whatever_the_umask() {
        // The test process keeps its usual umask (0022): the modes come from
        // the writers themselves.
        let d = tempfile::tempdir().unwrap();
        let sub = d.path().join("a/b");
        create_private_dir(&sub).unwrap();
        assert_eq!(mode(&d.path().join("a")), 0o700);
        assert_eq!(mode(&sub), 0o700);
        let f = sub.join("instances.json");
        crate::store::atomic_write(&f, b"{}").unwrap();
        assert_eq!(mode(&f), 0o600);
        let g = d.path().join("c/out.json");
        crate::store::replace_unsynced(&g, b"{}").unwrap();
        assert_eq!(mode(&g), 0o600);
        assert_eq!(mode(&d.path().join("c")), 0o700);
    }

    #[test]
    fn a_wide_folder_is_tightened() {
        let d = tempfile::tempdir().unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        tighten_dir(d.path()).unwrap();
        assert_eq!(mode(d.path()), 0o700);
    }
}

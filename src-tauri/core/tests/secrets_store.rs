//! API keys in a real Secret Service (GNOME Keyring on a private D-Bus
//! session), the explicit file fallback, and what a machine without a
//! keyring answers. One test: the bus is the process's environment.

use crate::support;

use std::os::unix::fs::PermissionsExt;
use storycore_core::secrets::{self, SecretError, Vault};
use support::keyring::TestKeyring;

/// The keyring crate finds the bus through the environment; this binary has
/// one test, so nothing else reads it meanwhile.
fn use_bus(address: &str) {
    std::env::set_var("DBUS_SESSION_BUS_ADDRESS", address);
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test]
async fn keys_live_in_the_keyring_or_by_choice_in_a_private_file() {
    let config = tempfile::tempdir().unwrap();
    let vault = Vault::new(config.path());
    let reference = secrets::api_key_reference("remote-1", false);

    // A machine whose bus has no unlocked keyring: a clear error that offers
    // the file, and nothing written.
    let headless = TestKeyring::bus_only();
    use_bus(&headless.bus_address);
    let (v, r) = (vault.clone(), reference.clone());
    let e = blocking(move || v.store(&r, "sk-1")).await.unwrap_err();
    assert!(matches!(e, SecretError::NoKeyring { .. }), "{e:?}");
    let said = e.to_string();
    assert!(said.contains("No OS keyring answered"), "{said}");
    assert!(said.contains("a file readable only by you"), "{said}");
    assert!(secrets::known(&reference).is_none());
    drop(headless);

    // A real keyring: stored there, readable by other programs (secret-tool),
    // known to this process, deleted again.
    let keyring = TestKeyring::start();
    use_bus(&keyring.bus_address);
    let (v, r) = (vault.clone(), reference.clone());
    blocking(move || v.store(&r, "sk-live-123")).await.unwrap();
    assert_eq!(keyring.lookup(&reference).as_deref(), Some("sk-live-123"));
    assert_eq!(secrets::known(&reference).as_deref(), Some("sk-live-123"));
    let (v, r) = (vault.clone(), reference.clone());
    let read = blocking(move || v.load(&r)).await.unwrap();
    assert_eq!(read.as_deref(), Some("sk-live-123"));
    assert!(!vault.file_path().exists(), "the keyring path wrote a file");
    let (v, r) = (vault.clone(), reference.clone());
    blocking(move || v.delete(&r)).await.unwrap();
    assert_eq!(keyring.lookup(&reference), None);
    let (v, r) = (vault.clone(), reference.clone());
    assert!(blocking(move || v.load(&r)).await.unwrap().is_none());
    assert!(secrets::known(&reference).is_none());

    // The file, chosen explicitly: 0600, in a 0700 folder it made.
    let nested = Vault::new(&config.path().join("deeper"));
    let file_ref = secrets::api_key_reference("remote-2", true);
    assert!(secrets::is_file_reference(&file_ref));
    let (v, r) = (nested.clone(), file_ref.clone());
    blocking(move || v.store(&r, "sk-file-456")).await.unwrap();
    let meta = std::fs::metadata(nested.file_path()).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let folder = std::fs::metadata(config.path().join("deeper")).unwrap();
    assert_eq!(folder.permissions().mode() & 0o777, 0o700);
    let (v, r) = (nested.clone(), file_ref.clone());
    assert_eq!(
        blocking(move || v.load(&r)).await.unwrap().as_deref(),
        Some("sk-file-456")
    );
    assert_eq!(
        keyring.lookup(&file_ref),
        None,
        "a file key went to the keyring"
    );

    // Keys that cannot travel in a header are refused before anything is stored.
    let (v, r) = (nested.clone(), file_ref.clone());
    let e = blocking(move || v.store(&r, "two\nlines"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("one line"), "{e}");

    // A damaged file says which file and what to do.
    std::fs::write(nested.file_path(), "{not json").unwrap();
    let (v, r) = (nested.clone(), file_ref.clone());
    let e = blocking(move || v.load(&r)).await.unwrap_err();
    assert!(e.to_string().contains("secrets.json"), "{e}");
}
